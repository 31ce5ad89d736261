"""Prefect task of the `odm_dem` stage: plan here, per-tile units on Dask, COGs written here."""

from collections.abc import Callable

from prefect import task

from flows.odm_dem_tiles import odm_dem_tiles
from odm_core.artifacts import write_plan
from odm_core.layout import ProjectTree
from odm_core.options import DemOptions
from odm_core.stages.odm_dem import DemResult, finish_odm_dem, plan_odm_dem
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
        tiles = odm_dem_tiles.with_options(task_runner=dask_task_runner(dask_address, max_concurrency))
        return finish_odm_dem(tree, plan, tiles(project, write_plan(tree.plan("odm_dem"), plan), report))

    return run_checkpointed("odm_dem", project, opts, work)
