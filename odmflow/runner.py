"""Runs the pipeline flow for the CLI: Prefect set-up, the live display and the closing summary."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from odm_core.errors import OdmInputError, OdmStageError
from odm_core.options import PipelineOptions
from odmflow.display import ProgressDisplay
from odmflow.interrupt import stop_on_interrupt

if TYPE_CHECKING:
    from flows.odm_pipeline import StageRun


class _TerminalFilter(logging.Filter):
    """Drops Prefect's INFO lines and its tracebacks of errors the CLI reports itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("prefect") and record.levelno < logging.WARNING:
            return False
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, OdmInputError | OdmStageError):
            return False
        text = record.getMessage()
        ours = "OdmInputError" in text or "OdmStageError" in text
        return not (record.name.startswith("prefect") and ours)


# Prefect's logging config reads this in every process it configures: the local Dask workers, spawned by
# this one, inherit it and print only Prefect's warnings and errors (per-task-run lines still reach the API).
CHILD_CONSOLE_LEVEL_ENV = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"
# Dask's config reads this when a spawned worker imports distributed, before a Nanny's `env` reaches it:
# a worker whose heartbeat meets the scheduler already closing at the end of a run prints a traceback.
CHILD_DASK_LEVEL_ENV = "DASK_LOGGING__DISTRIBUTED"
# The start of prefect.server.api.server.SubprocessASGIServer's error when its server does not answer.
EPHEMERAL_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"


def _quiet_prefect_console(verbose: bool) -> None:
    """Keep the terminal to odmflow's own lines, here and in child processes (Prefect's reach its API)."""
    if verbose:
        return
    os.environ.setdefault(CHILD_CONSOLE_LEVEL_ENV, "WARNING")  # before the run starts its Dask workers
    os.environ.setdefault(CHILD_DASK_LEVEL_ENV, "critical")  # a unit's failure still reaches the stage
    import pycolmap
    from prefect.logging.handlers import PrefectConsoleHandler

    pycolmap.logging.minloglevel = int(pycolmap.logging.WARNING)  # COLMAP's INFO lines: per image and pair
    logging.getLogger("distributed").setLevel(logging.WARNING)  # Dask's cluster start/stop lines
    logging.getLogger("distributed.nanny").setLevel(logging.ERROR)  # "still alive ... killing" at close

    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.addFilter(_TerminalFilter())


def run_pipeline(project: Path | str, options: PipelineOptions, verbose: bool = False) -> dict[str, StageRun]:
    """Run (or resume) the pipeline on a project and print what it made."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.settings import PREFECT_API_URL

    from flows.odm_pipeline import odm_pipeline

    _quiet_prefect_console(verbose)
    api = PREFECT_API_URL.value()
    where = f"Prefect server {api}" if api else "Prefect's embedded server (set PREFECT_API_URL to keep runs)"
    typer.echo(f"odmflow: processing {project} with {where}", err=True)
    project = str(project)
    start = time.monotonic()
    with stop_on_interrupt(), ProgressDisplay(options.end_with):
        try:
            state = odm_pipeline(project, options, return_state=True)
        except RuntimeError as err:
            if EPHEMERAL_TIMEOUT not in str(err):
                raise
            raise OdmStageError(_ephemeral_hint()) from None
    runs: dict[str, StageRun] = state.result(raise_on_failure=True)  # re-raises the stage's own error
    _summary(runs, time.monotonic() - start)
    return runs


def _ephemeral_hint() -> str:
    """What to do when Prefect's embedded server did not answer in time (a busy machine, or several runs
    each starting one at once)."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as TIMEOUT

    return (
        f"Prefect's embedded server did not start within {TIMEOUT.value()} s (a busy machine, or other "
        "odmflow runs starting theirs at the same time): run the command again; for several runs at once, "
        "start one server with `odmflow server up` and set PREFECT_API_URL to the address it prints, or "
        f"allow it longer with {TIMEOUT.name}=60"
    )


def _summary(runs: dict[str, StageRun], elapsed_s: float) -> None:
    """The closing lines: each stage's state and time, then each stage result's own summary lines."""
    done = ", ".join(f"{r.stage} ({'checkpoint' if r.cached else 'ran'})" for r in runs.values())
    lines = [f"finished in {elapsed_s:.1f} s: {done}"]
    lines.append("stage seconds: " + ", ".join(f"{r.stage} {r.seconds:.1f}" for r in runs.values()))
    for run in runs.values():
        lines += run.result.summary()
    typer.echo("\n".join(lines))
