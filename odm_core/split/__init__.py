"""Split-merge: partition a large photo set into submodels and merge their products back into one."""
