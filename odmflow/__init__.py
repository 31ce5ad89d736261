"""odmflow's command line: `odmflow run PROJECT` and friends."""
