"""Prefect task of the `odm_orthophoto` stage: plan here, surface and photo tiles on Dask (nested flow
`odm-orthophoto-tiles`), GeoTIFF here."""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow, task
from prefect.futures import wait

from odm_core.artifacts import read_plan, write_plan
from odm_core.layout import ProjectTree
from odm_core.options import OrthophotoOptions
from odm_core.stages.odm_orthophoto import (
    OrthophotoResult,
    OrthoPlan,
    OrthoUnit,
    OrthoUnitResult,
    fill_surface,
    finish_odm_orthophoto,
    plan_odm_orthophoto,
    render_tile,
    skipped,
)
from tasks._stage import STAGE_CACHE, run_checkpointed
from tasks.dask_cluster import dask_task_runner
from tasks.odm_dem import cut_cloud, odm_dem_tile  # the surface is gridded as a DSM's raw tiles


@task(name="odm_orthophoto", cache_policy=STAGE_CACHE, persist_result=True)
def odm_orthophoto(
    project: str, opts: OrthophotoOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> OrthophotoResult:
    """The orthophoto (RGBA COG): the photos rendered onto the surface, tile by tile on Dask workers."""

    def work(tree: ProjectTree, report: Callable[[float, str], None], fp: str) -> OrthophotoResult:
        if opts.skip_orthophoto:
            return skipped(tree)
        plan = plan_odm_orthophoto(tree, opts, fp)
        runner = dask_task_runner(dask_address, max_concurrency)
        tiles = odm_orthophoto_tiles.with_options(task_runner=runner)  # type: ignore[arg-type]  # a DaskTaskRunner
        plan_file = write_plan(tree.plan("odm_orthophoto"), plan)
        return finish_odm_orthophoto(tree, plan, opts, tiles(plan_file, report))

    return run_checkpointed(project, opts, work)


@task(
    name="odm_orthophoto_tile",
    task_run_name="ortho-{unit.surface.tile.row}-{unit.surface.tile.col}",
    retries=1,
)
def odm_orthophoto_tile(unit: OrthoUnit) -> OrthoUnitResult:
    """Render one tile of the orthophoto on a Dask worker; reuses its own checkpoint when the key matches."""
    return render_tile(unit)


@flow(name="odm-orthophoto-tiles", validate_parameters=False)
def odm_orthophoto_tiles(plan_file: str, progress: Callable[[float, str], None]) -> list[OrthoUnitResult]:
    """Grid the surface per tile, fill its coarse copy, then render every tile from the photos (the
    OrthoPlan in plan_file)."""
    plan: OrthoPlan = read_plan(plan_file)
    cut_cloud(plan.pieces)
    surface = [odm_dem_tile.submit(u) for u in plan.surface]
    wait(surface)
    for future in surface:
        future.result()  # raises a tile's error here
    progress(0.3, f"surface gridded in {len(surface)} tiles")
    fill_surface(plan)
    tiles = [odm_orthophoto_tile.submit(u) for u in plan.tiles]
    wait(tiles)
    results = [f.result() for f in tiles]
    progress(0.95, f"rendered {len(tiles)} tiles")
    return results
