"""Split-merge: partitioning a survey into submodels and merging their products."""
