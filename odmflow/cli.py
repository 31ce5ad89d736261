"""`odmflow`: process ODM project folders from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from odm_core.errors import OdmInputError, OdmStageError
from odm_core.remote.fs import is_remote, parse_remote
from odmflow import cli_runs
from odmflow.cli_errors import fail
from odmflow.cli_node import node
from odmflow.cli_options import options_from_flags, validation_message, with_option_flags
from odmflow.cli_server import server_app

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Drone photos in, OpenDroneMap's products out; every stage a resumable Prefect task.",
)

SYNTHETIC_FLAGS = {  # SyntheticOptions' fields -> the `synthetic` command's flags, for error messages
    "n_cols": "--cols",
    "n_rows": "--rows",
    "n_oblique": "--oblique",
    "flying_height_m": "--flying-height",
    "image_width": "--width",
    "image_height": "--height",
    "seed": "--seed",
    "gps_tags": "--gps/--no-gps",
    "n_gcps": "--gcps",
    "n_check_points": "--check-points",
    "gps_bias_m": "--gps-bias",
    "gps_sigma_h_m": "--gps-noise",
    "gps_sigma_v_m": "--gps-noise",
}


def _check_project(project: Path) -> Path:
    if not project.exists():
        raise fail(f"project folder {project} does not exist; create it and put your photos in images/")
    if not project.is_dir():
        raise fail(f"{project} is a file; give the project folder that holds images/")
    if not (project / "images").is_dir():
        raise fail(f"no images/ folder in {project}: put your photos in {project / 'images'}/")
    return project.resolve()


@app.callback()
def _main() -> None:
    """Drone photos in, OpenDroneMap's products out; every stage a resumable Prefect task."""


def _target(project: str) -> str | Path:
    """The project's URL (s3://...) or its checked local folder."""
    try:
        return parse_remote(project).url if is_remote(project) else _check_project(Path(project))
    except OdmInputError as err:
        raise fail(str(err)) from None


@app.command()
@with_option_flags
def run(
    project: Annotated[
        str,
        typer.Argument(help="ODM project folder holding images/ (or s3://bucket/prefix); outputs go here."),
    ],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own log lines.")] = False,
    **flags: Any,
) -> None:
    """Process PROJECT/images into ODM's outputs in PROJECT, resuming from finished stages."""
    options = options_from_flags(flags)
    target = _target(project)
    from odmflow.runner import run_pipeline  # Prefect is slow to import: only once options are valid

    try:
        run_pipeline(target, options, verbose=verbose)
    except (OdmInputError, OdmStageError) as err:
        raise fail(str(err), 2 if isinstance(err, OdmInputError) else 1) from None


for _command in (cli_runs.submit, cli_runs.status, cli_runs.logs, cli_runs.cancel, cli_runs.download):
    app.command()(_command)
app.command("list")(cli_runs.list_)
app.command()(node)
app.add_typer(server_app, name="server")


def main() -> None:
    app()


@app.command()
def synthetic(
    out: Annotated[Path, typer.Argument(help="New project folder to create (must not exist or be empty).")],
    cols: Annotated[int, typer.Option(help="Nadir photos per flight line.")] = 5,
    rows: Annotated[int, typer.Option(help="Flight lines.")] = 4,
    oblique: Annotated[int, typer.Option(help="Extra oblique photos around the block.")] = 4,
    flying_height: Annotated[float, typer.Option(help="Flying height above ground, metres.")] = 60.0,
    width: Annotated[int, typer.Option(help="Photo width, pixels.")] = 1200,
    height: Annotated[int, typer.Option(help="Photo height, pixels.")] = 900,
    seed: Annotated[int, typer.Option(help="Random seed of the scene and the flight.")] = 0,
    gps: Annotated[
        bool, typer.Option("--gps/--no-gps", help="Write GPS positions into the photos' EXIF.")
    ] = True,
    gcps: Annotated[int, typer.Option(help="Ground targets written to OUT/gcp_list.txt as GCPs.")] = 0,
    check_points: Annotated[int, typer.Option(help="Ground targets written as check points (CHK01...).")] = 0,
    gps_bias: Annotated[float, typer.Option(help="A constant GPS error of this many metres.")] = 0.0,
    gps_noise: Annotated[
        float | None, typer.Option(help="GPS noise sigma, metres [default: 1 horizontally, 2 vertically].")
    ] = None,
) -> None:
    """Render a synthetic survey with known truth: OUT/images (JPEG + EXIF, GPS unless --no-gps), OUT/truth
    and, with --gcps or --check-points, OUT/gcp_list.txt."""
    from odm_core.synthetic import SyntheticOptions, generate_synthetic

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise fail(f"{out} already exists and is not an empty folder; choose a new folder")
    try:
        opts = SyntheticOptions(
            n_cols=cols,
            n_rows=rows,
            n_oblique=oblique,
            flying_height_m=flying_height,
            image_width=width,
            image_height=height,
            seed=seed,
            gps_tags=gps,
            n_gcps=gcps,
            n_check_points=check_points,
            gps_bias_m=gps_bias,
            **({} if gps_noise is None else {"gps_sigma_h_m": gps_noise, "gps_sigma_v_m": gps_noise}),
        )
    except ValidationError as err:
        raise fail(validation_message(err, SYNTHETIC_FLAGS.get)) from None
    truth = generate_synthetic(out, opts)
    typer.echo(
        f"{truth.n_photos} photos in {truth.images_dir}, truth in {truth.truth_json.parent} "
        f"(EPSG:{truth.epsg}, GSD {100 * truth.gsd_m:.1f} cm)"
        + (f", GCPs in {truth.gcp_list}" if truth.gcp_list else "")
        + f"\nnext: odmflow run {out}"
    )
