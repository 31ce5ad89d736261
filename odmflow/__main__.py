"""`python -m odmflow` runs the CLI."""

from odmflow.cli import main

main()
