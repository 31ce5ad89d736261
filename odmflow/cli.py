"""`odmflow`: process ODM project folders from the command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from odm_core.errors import OdmInputError, OdmStageError
from odm_core.options import (
    CameraLens,
    DatasetOptions,
    DemOptions,
    FilterpointsOptions,
    GeoreferencingOptions,
    OpenmvsOptions,
    OpensfmOptions,
    OrthophotoCompression,
    OrthophotoOptions,
    PipelineOptions,
    Quality,
    read_boundary,
)
from odm_core.registry import STAGES, StageName
from odm_core.remote.fs import is_remote, parse_remote
from odmflow import cli_runs
from odmflow.cli_server import server_app
from odmflow.cli_errors import fail

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Drone photos in, OpenDroneMap's products out; every stage a resumable Prefect task.",
)

_SFM, _DS = OpensfmOptions(), DatasetOptions()  # the defaults shown in --help
_MVS, _FP, _DEM, _ORTHO = OpenmvsOptions(), FilterpointsOptions(), DemOptions(), OrthophotoOptions()
_GEO = GeoreferencingOptions()

OPTION_NAMES = {  # pydantic location -> the CLI flag, for error messages
    "feature_quality": "--feature-quality",
    "min_num_features": "--min-num-features",
    "matcher_neighbors": "--matcher-neighbors",
    "camera_lens": "--camera-lens",
    "use_exif": "--use-exif",
    "gps_accuracy": "--gps-accuracy",
    "gps_z_offset": "--gps-z-offset",
    "end_with": "--end-with",
    "rerun_from": "--rerun-from",
    "max_concurrency": "--max-concurrency",
    "pc_quality": "--pc-quality",
    "pc_filter": "--pc-filter",
    "pc_sample": "--pc-sample",
    "boundary": "--boundary",
    "crop": "--crop",
    "auto_boundary_distance": "--auto-boundary-distance",
    "dask_address": "--dask-address",
    "n_cols": "--cols",
    "n_rows": "--rows",
    "n_oblique": "--oblique",
    "flying_height_m": "--flying-height",
    "image_width": "--width",
    "image_height": "--height",
}


def _validation_message(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = next((str(loc) for loc in reversed(e["loc"]) if isinstance(loc, str)), "")
        flag = OPTION_NAMES.get(field, field)
        lines.append(f"{flag}: {e['msg'].removeprefix('Value error, ')}")
    return "invalid options:\n  " + "\n  ".join(lines)


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


@app.command()
def run(
    project: Annotated[
        str,
        typer.Argument(help="ODM project folder holding images/ (or s3://bucket/prefix); outputs go here."),
    ],
    feature_quality: Annotated[
        Quality,
        typer.Option(
            help="Feature extraction size: ultra=full image, high=1/2, medium=1/4, low=1/8, lowest=1/16.",
        ),
    ] = _SFM.feature_quality,
    min_num_features: Annotated[
        int, typer.Option(help="Features to extract per photo.")
    ] = _SFM.min_num_features,
    matcher_neighbors: Annotated[
        int,
        typer.Option(help="Match each photo with its N nearest by GPS; 0 = neighbours in a triangulation."),
    ] = _SFM.matcher_neighbors,
    camera_lens: Annotated[
        CameraLens,
        typer.Option(
            help="Camera model: auto, perspective, brown, fisheye, fisheye_opencv.",
        ),
    ] = _SFM.camera_lens,
    use_exif: Annotated[
        bool, typer.Option("--use-exif", help="Use EXIF GPS even when a gcp_list.txt is present.")
    ] = False,
    gps_accuracy: Annotated[
        float, typer.Option(help="GPS accuracy in metres, for every photo.")
    ] = _DS.gps_accuracy,
    gps_z_offset: Annotated[
        float, typer.Option(help="Metres added to every photo's GPS altitude.")
    ] = _DS.gps_z_offset,
    end_with: Annotated[StageName, typer.Option(help="Stop after this stage.")] = STAGES[-1],
    rerun_from: Annotated[
        StageName | None, typer.Option(help="Re-run this stage and every one after it.")
    ] = None,
    rerun_all: Annotated[
        bool, typer.Option("--rerun-all", help="Re-run every stage, ignoring checkpoints.")
    ] = False,
    pc_quality: Annotated[
        Quality,
        typer.Option(help="Depth-map size: ultra=1/2 photo, high=1/4, medium=1/8, low=1/16, lowest=1/32."),
    ] = _MVS.pc_quality,
    pc_skip_geometric: Annotated[
        bool,
        typer.Option("--pc-skip-geometric", help="Skip the geometric pass over neighbouring depth maps."),
    ] = False,
    pc_filter: Annotated[
        float, typer.Option(help="Remove points N standard deviations from their neighbours (0 = off).")
    ] = _FP.pc_filter,
    pc_sample: Annotated[
        float, typer.Option(help="Thin the cloud to one point per N metres (0 = keep all).")
    ] = _FP.pc_sample,
    boundary: Annotated[
        Path | None, typer.Option(help="GeoJSON polygon file: crop the point cloud to it.")
    ] = None,
    auto_boundary: Annotated[
        bool, typer.Option("--auto-boundary", help="Crop to the cameras' hull plus a margin.")
    ] = False,
    auto_boundary_distance: Annotated[
        float, typer.Option(help="Margin of --auto-boundary, metres (0 = 100 x average GSD).")
    ] = _FP.auto_boundary_distance,
    fast_orthophoto: Annotated[
        bool, typer.Option("--fast-orthophoto", help="Skip dense matching (openmvs); use the sparse cloud.")
    ] = False,
    pc_las: Annotated[bool, typer.Option("--pc-las", help="Also export the cloud as LAS.")] = False,
    pc_csv: Annotated[bool, typer.Option("--pc-csv", help="Also export the cloud as CSV.")] = False,
    crop: Annotated[
        float,
        typer.Option(help="Crop DEMs and orthophoto to the cloud's convex hull shrunk by N m (0 = off)."),
    ] = _GEO.crop,
    dsm: Annotated[bool, typer.Option("--dsm", help="Build the DSM: odm_dem/dsm.tif (COG).")] = False,
    dtm: Annotated[
        bool, typer.Option("--dtm", help="Build the DTM from SMRF ground: odm_dem/dtm.tif.")
    ] = False,
    dem_resolution: Annotated[
        float, typer.Option(help="DEM cell size, cm (no finer than the GSD unless --ignore-gsd).")
    ] = _DEM.dem_resolution,
    dem_gapfill_steps: Annotated[
        int, typer.Option(help="DEM search radii, each x sqrt(2), before holes are filled.")
    ] = _DEM.dem_gapfill_steps,
    smrf_scalar: Annotated[float, typer.Option(help="SMRF elevation scalar.")] = _DEM.smrf_scalar,
    smrf_slope: Annotated[float, typer.Option(help="SMRF slope (rise over run).")] = _DEM.smrf_slope,
    smrf_threshold: Annotated[float, typer.Option(help="SMRF elevation threshold, m.")] = _DEM.smrf_threshold,
    smrf_window: Annotated[float, typer.Option(help="SMRF window radius, m.")] = _DEM.smrf_window,
    dem_euclidean_map: Annotated[
        bool,
        typer.Option(
            "--dem-euclidean-map", help="Also write odm_dem/*.euclideand.tif: cells to the nearest nodata."
        ),
    ] = False,
    skip_orthophoto: Annotated[
        bool, typer.Option("--skip-orthophoto", help="Do not build the orthophoto.")
    ] = False,
    orthophoto_resolution: Annotated[
        float, typer.Option(help="Orthophoto pixel size, cm (no finer than the GSD unless --ignore-gsd).")
    ] = _ORTHO.orthophoto_resolution,
    orthophoto_compression: Annotated[
        OrthophotoCompression, typer.Option(help="Orthophoto GeoTIFF compression.")
    ] = _ORTHO.orthophoto_compression,
    orthophoto_png: Annotated[
        bool, typer.Option("--orthophoto-png", help="Also write odm_orthophoto/odm_orthophoto.png.")
    ] = False,
    orthophoto_kmz: Annotated[
        bool, typer.Option("--orthophoto-kmz", help="Also write odm_orthophoto/odm_orthophoto.kmz.")
    ] = False,
    orthophoto_cutline: Annotated[
        bool,
        typer.Option(
            "--orthophoto-cutline",
            help="Also write odm_orthophoto/cutline.gpkg, a crop polygon cut along feature edges.",
        ),
    ] = False,
    ignore_gsd: Annotated[
        bool, typer.Option("--ignore-gsd", help="Do not cap resolutions by the estimated GSD.")
    ] = False,
    tiles: Annotated[
        bool,
        typer.Option(
            "--tiles", help="Also write XYZ PNG tiles: orthophoto_tiles/, dsm_tiles/, dtm_tiles/ (z/x/y.png)."
        ),
    ] = False,
    cog: Annotated[
        bool,
        typer.Option(
            "--cog/--no-cog",
            help="Cloud-Optimized GeoTIFFs (default, unlike ODM); --no-cog: tiled GeoTIFFs with overviews.",
        ),
    ] = True,
    max_concurrency: Annotated[
        int, typer.Option(help="Threads, and local Dask workers, to use (default: CPU count).")
    ] = os.cpu_count() or 1,
    dask_address: Annotated[
        str | None,
        typer.Option(help="Run per-view work on this Dask scheduler (tcp://HOST:PORT); default: local."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own log lines.")] = False,
) -> None:
    """Process PROJECT/images into ODM's outputs in PROJECT, resuming from finished stages."""
    try:
        boundary_text = read_boundary(boundary) if boundary else None
    except ValueError as err:
        raise fail(str(err)) from None
    try:
        options = PipelineOptions(
            dataset=DatasetOptions(use_exif=use_exif, gps_accuracy=gps_accuracy, gps_z_offset=gps_z_offset),
            opensfm=OpensfmOptions(
                feature_quality=feature_quality,
                min_num_features=min_num_features,
                matcher_neighbors=matcher_neighbors,
                camera_lens=camera_lens,
            ),
            openmvs=OpenmvsOptions(pc_quality=pc_quality, pc_skip_geometric=pc_skip_geometric),
            odm_filterpoints=FilterpointsOptions(
                pc_filter=pc_filter,
                pc_sample=pc_sample,
                boundary=boundary_text,
                auto_boundary=auto_boundary,
                auto_boundary_distance=auto_boundary_distance,
                fast_orthophoto=fast_orthophoto,
            ),
            odm_georeferencing=GeoreferencingOptions(pc_las=pc_las, pc_csv=pc_csv, crop=crop),
            odm_dem=DemOptions(
                dsm=dsm,
                dtm=dtm,
                dem_resolution=dem_resolution,
                dem_gapfill_steps=dem_gapfill_steps,
                smrf_scalar=smrf_scalar,
                smrf_slope=smrf_slope,
                smrf_threshold=smrf_threshold,
                smrf_window=smrf_window,
                ignore_gsd=ignore_gsd,
                tiles=tiles,
                cog=cog,
                dem_euclidean_map=dem_euclidean_map,
            ),
            odm_orthophoto=OrthophotoOptions(
                skip_orthophoto=skip_orthophoto,
                orthophoto_resolution=orthophoto_resolution,
                orthophoto_compression=orthophoto_compression,
                orthophoto_png=orthophoto_png,
                orthophoto_kmz=orthophoto_kmz,
                ignore_gsd=ignore_gsd,
                tiles=tiles,
                cog=cog,
                orthophoto_cutline=orthophoto_cutline,
            ),
            end_with=end_with,
            rerun_from=rerun_from,
            rerun_all=rerun_all,
            max_concurrency=max_concurrency,
            dask_address=dask_address,
        )
    except ValidationError as err:
        raise fail(_validation_message(err)) from None
    try:
        target = parse_remote(project).url if is_remote(project) else _check_project(Path(project))
    except OdmInputError as err:
        raise fail(str(err)) from None
    from odmflow.runner import run_pipeline  # Prefect is slow to import: only once options are valid

    try:
        run_pipeline(target, options, verbose=verbose)
    except (OdmInputError, OdmStageError) as err:
        raise fail(str(err), 2 if isinstance(err, OdmInputError) else 1) from None


for _command in (cli_runs.submit, cli_runs.status, cli_runs.logs, cli_runs.cancel, cli_runs.download):
    app.command()(_command)
app.command("list")(cli_runs.list_)
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
) -> None:
    """Render a synthetic survey with known truth: OUT/images (JPEG + EXIF GPS) and OUT/truth."""
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
        )
    except ValidationError as err:
        raise fail(_validation_message(err)) from None
    truth = generate_synthetic(out, opts)
    typer.echo(
        f"{truth.n_photos} photos in {truth.images_dir}, truth in {truth.truth_json.parent} "
        f"(EPSG:{truth.epsg}, GSD {100 * truth.gsd_m:.1f} cm)\nnext: odmflow run {out}"
    )
