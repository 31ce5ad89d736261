"""odmflow's algorithms: plain functions from paths and options to paths and results (no Prefect here)."""

__version__ = "0.1.0"
