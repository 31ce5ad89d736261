"""CLI commands for runs on a Prefect server: submit, list, status, logs, cancel, download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from odm_core.errors import OdmInputError
from odm_core.option_specs import pipeline_options_from_odm
from odmflow.cli_errors import fail


def _parse_options(pairs: list[str]) -> dict:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise fail(f"--option {pair!r}: write it as NAME=VALUE, e.g. feature-quality=medium")
        values[name.strip()] = value.strip()
    try:
        return pipeline_options_from_odm(values).model_dump(mode="json", exclude_unset=True)
    except (ValueError, ValidationError) as err:
        raise fail(f"--option: {err}") from None


def submit(
    target: Annotated[str, typer.Argument(help="Project folder (with images/) or s3://bucket/prefix.")],
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="ODM option NAME=VALUE (repeatable).")
    ] = None,
    upload: Annotated[
        str | None, typer.Option(help="Upload a local project's images to s3://bucket/prefix/NAME first.")
    ] = None,
) -> None:
    """Start an odm-process run on the Prefect server (PREFECT_API_URL) and print its address."""
    from odmflow import runs, submission

    options = _parse_options(option or [])
    try:
        project, name = submission.prepare(target, upload)
        run = runs.submit(project, options, name)
    except OdmInputError as err:
        raise fail(str(err)) from None
    typer.echo(f"submitted {project} as run {run.name} ({run.id})\n{runs.run_url(run.id)}")


def list_(limit: Annotated[int, typer.Option(help="How many runs to show.")] = 20) -> None:
    """The newest pipeline runs on the Prefect server."""
    from odmflow import runs

    try:
        found = runs.list_runs(limit)
    except OdmInputError as err:
        raise fail(str(err)) from None
    for r in found:
        state = r.state.name if r.state else "?"
        typer.echo(f"{r.id}  {r.name:<24} {state:<10} {r.parameters.get('project', '')}")


def status(run: Annotated[str, typer.Argument(help="Run id or name.")]) -> None:
    """A run's state, its stages and its progress."""
    from odmflow import runs

    try:
        st = runs.status(run)
    except OdmInputError as err:
        raise fail(str(err)) from None
    progress = f"{st.progress_percent:.0f}%" if st.progress_percent is not None else "-"
    state = st.run.state.name if st.run.state else "?"
    typer.echo(f"{st.run.name} ({st.run.id}): {state}, {progress}\n{runs.run_url(st.run.id)}")
    for stage, stage_state in st.stages:
        typer.echo(f"  {stage:<12} {stage_state}")


def logs(run: Annotated[str, typer.Argument(help="Run id or name.")]) -> None:
    """A run's log lines."""
    from odmflow import runs

    try:
        typer.echo("\n".join(runs.logs(run)))
    except OdmInputError as err:
        raise fail(str(err)) from None


def cancel(run: Annotated[str, typer.Argument(help="Run id or name.")]) -> None:
    """Cancel a scheduled or running run."""
    from odmflow import runs

    try:
        r = runs.cancel(run)
    except OdmInputError as err:
        raise fail(str(err)) from None
    typer.echo(f"cancelling {r.name} ({r.id})")


def download(
    run: Annotated[str, typer.Argument(help="Run id or name.")],
    dest: Annotated[Path, typer.Argument(help="New or empty folder for the outputs.")],
) -> None:
    """Copy a run's outputs (ODM's layout, without images/) into DEST."""
    from odmflow import runs

    try:
        files = runs.download(run, dest)
    except OdmInputError as err:
        raise fail(str(err)) from None
    typer.echo(f"{len(files)} items into {dest}")
