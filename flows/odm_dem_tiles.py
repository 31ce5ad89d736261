"""The DEM's per-tile work as a nested flow: raw gridding per tile, the coarse fill, then per-tile finish."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect import flow, task
from prefect.futures import wait

from odm_core.artifacts import read_plan
from odm_core.dem.units import DemUnit, DemUnitResult, run_dem_unit
from odm_core.layout import ProjectTree
from odm_core.stages.odm_dem import DemPlan, fill_dem_coarse


@task(
    name="odm_dem_tile", task_run_name="{unit.kind}-{unit.phase}-{unit.tile.row}-{unit.tile.col}", retries=1
)
def odm_dem_tile(unit: DemUnit) -> DemUnitResult:
    """One tile of one raster on a Dask worker; reuses its own checkpoint when the key matches."""
    return run_dem_unit(unit)


@flow(name="odm-dem-tiles", validate_parameters=False)
def odm_dem_tiles(
    project: str, plan_file: str, progress: Callable[[float, str], None]
) -> list[DemUnitResult]:
    """Grid every tile, fill each raster's coarse copy here, then fill and smooth every tile (the
    DemPlan in plan_file)."""
    plan: DemPlan = read_plan(plan_file)
    raw = [odm_dem_tile.submit(u) for u in plan.raw]
    wait(raw)
    results = [f.result() for f in raw]
    progress(0.45, f"gridded {len(raw)} tiles")
    for kind in plan.kinds:
        fill_dem_coarse(ProjectTree(Path(project)), plan, kind)
    final = [odm_dem_tile.submit(u) for u in plan.final]
    wait(final)
    results += [f.result() for f in final]
    progress(0.9, f"filled and smoothed {len(final)} tiles")
    return results
