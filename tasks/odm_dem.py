"""Prefect task of the `odm_dem` stage: plan here, per-tile units on Dask (nested flow `odm-dem-tiles`),
COGs written here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect import flow, task
from prefect.futures import wait

from odm_core.artifacts import read_plan, write_plan
from odm_core.cloud.pieces import CloudPiece, PieceResult, run_cloud_piece
from odm_core.dem.units import DemUnit, DemUnitResult, run_dem_unit
from odm_core.layout import ProjectTree
from odm_core.options import DemOptions
from odm_core.stages.odm_dem import DemPlan, DemResult, fill_dem_coarse, finish_odm_dem, plan_odm_dem
from tasks._stage import STAGE_CACHE, run_checkpointed
from tasks.dask_cluster import dask_task_runner


@task(name="odm_dem", cache_policy=STAGE_CACHE, persist_result=True)
def odm_dem(
    project: str, opts: DemOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> DemResult:
    """DSM (--dsm) and DTM (--dtm) as Cloud-Optimized GeoTIFFs, gridded tile by tile on Dask workers."""

    def work(tree: ProjectTree, report: Callable[[float, str], None], fp: str) -> DemResult:
        plan = plan_odm_dem(tree, opts, fp)
        if not plan.kinds:
            return finish_odm_dem(tree, plan, [])
        runner = dask_task_runner(dask_address, max_concurrency)
        tiles = odm_dem_tiles.with_options(task_runner=runner)  # type: ignore[arg-type]  # a DaskTaskRunner
        return finish_odm_dem(tree, plan, tiles(project, write_plan(tree.plan("odm_dem"), plan), report))

    return run_checkpointed(project, opts, work)


@task(
    name="odm_dem_tile", task_run_name="{unit.kind}-{unit.phase}-{unit.tile.row}-{unit.tile.col}", retries=1
)
def odm_dem_tile(unit: DemUnit) -> DemUnitResult:
    """One tile of one raster on a Dask worker; reuses its own checkpoint when the key matches."""
    return run_dem_unit(unit)


@task(name="cloud_piece", task_run_name="cloud-{piece.start}", retries=1)
def cloud_piece(piece: CloudPiece) -> PieceResult:
    """One piece of the georeferenced cloud cut into the tile units' boxes, on a Dask worker."""
    return run_cloud_piece(piece)


def cut_cloud(pieces: tuple[CloudPiece, ...]) -> list[PieceResult]:
    """Every piece of the cloud, on the flow's Dask runner; raises a piece's error."""
    futures = [cloud_piece.submit(p) for p in pieces]
    wait(futures)
    return [f.result() for f in futures]


@flow(name="odm-dem-tiles", validate_parameters=False)
def odm_dem_tiles(
    project: str, plan_file: str, progress: Callable[[float, str], None]
) -> list[DemUnitResult | PieceResult]:
    """Cut the cloud into the tiles' boxes, grid every tile, fill each raster's coarse copy, then fill
    and smooth every tile (the DemPlan in plan_file)."""
    plan: DemPlan = read_plan(plan_file)
    results: list[DemUnitResult | PieceResult] = list(cut_cloud(plan.pieces))
    progress(
        0.1, f"cloud cut into {len(plan.raw) // len(plan.kinds)} tiles' boxes in {len(plan.pieces)} pieces"
    )
    raw = [odm_dem_tile.submit(u) for u in plan.raw]
    wait(raw)
    results += [f.result() for f in raw]
    progress(0.45, f"gridded {len(raw)} tiles")
    for kind in plan.kinds:
        fill_dem_coarse(ProjectTree(Path(project)), plan, kind)
    final = [odm_dem_tile.submit(u) for u in plan.final]
    wait(final)
    results += [f.result() for f in final]
    progress(0.9, f"filled and smoothed {len(final)} tiles")
    return results
