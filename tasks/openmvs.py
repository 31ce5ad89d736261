"""Prefect task of the `openmvs` stage: plan here, per-view units on Dask, gather here."""

from collections.abc import Callable

from prefect import task

from flows.openmvs_views import openmvs_views
from odm_core.artifacts import write_plan
from odm_core.layout import ProjectTree
from odm_core.options import OpenmvsOptions
from odm_core.stages.openmvs import OpenmvsResult, finish_openmvs, plan_openmvs
from tasks._stage import STAGE_CACHE, run_checkpointed
from tasks.dask_cluster import dask_task_runner


@task(name="openmvs", cache_policy=STAGE_CACHE, persist_result=True)
def openmvs(
    project: str, opts: OpenmvsOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> OpenmvsResult:
    """Dense point cloud: a depth map per view (on Dask workers), geometric pass, fusion."""

    def work(tree: ProjectTree, report: Callable[[float, str], None], fp: str) -> OpenmvsResult:
        plan = plan_openmvs(tree, opts, fp)
        views = openmvs_views.with_options(task_runner=dask_task_runner(dask_address, max_concurrency))
        return finish_openmvs(tree, plan, views(write_plan(tree.plan("openmvs"), plan), report))

    return run_checkpointed("openmvs", project, opts, work)
