"""The orthophoto's per-tile work as a nested flow: the surface's raw tiles, its coarse fill, then render."""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow, task
from prefect.futures import wait

from flows.odm_dem_tiles import odm_dem_tile
from odm_core.artifacts import read_plan
from odm_core.stages.odm_orthophoto import OrthoPlan, OrthoUnit, OrthoUnitResult, fill_surface, render_tile


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
    """Grid the surface per tile, fill its coarse copy here, then render every tile from the photos (the
    OrthoPlan in plan_file)."""
    plan: OrthoPlan = read_plan(plan_file)
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
