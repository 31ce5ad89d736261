"""Prefect task of the `odm_orthophoto` stage: plan here, surface and photo tiles on Dask, GeoTIFF here."""

from collections.abc import Callable

from prefect import task

from flows.odm_orthophoto_tiles import odm_orthophoto_tiles
from odm_core.artifacts import write_plan
from odm_core.layout import ProjectTree
from odm_core.options import OrthophotoOptions
from odm_core.stages.odm_orthophoto import (
    OrthophotoResult,
    finish_odm_orthophoto,
    plan_odm_orthophoto,
    skipped,
)
from tasks._stage import STAGE_CACHE, run_checkpointed
from tasks.dask_cluster import dask_task_runner


@task(name="odm_orthophoto", cache_policy=STAGE_CACHE, persist_result=True)
def odm_orthophoto(
    project: str, opts: OrthophotoOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> OrthophotoResult:
    """The orthophoto (RGBA COG): the photos rendered onto the surface, tile by tile on Dask workers."""

    def work(tree: ProjectTree, report: Callable[[float, str], None], fp: str) -> OrthophotoResult:
        if opts.skip_orthophoto:
            return skipped(tree)
        plan = plan_odm_orthophoto(tree, opts, fp)
        tiles = odm_orthophoto_tiles.with_options(task_runner=dask_task_runner(dask_address, max_concurrency))
        plan_file = write_plan(tree.plan("odm_orthophoto"), plan)
        return finish_odm_orthophoto(tree, plan, opts, tiles(plan_file, report))

    return run_checkpointed("odm_orthophoto", project, opts, work)
