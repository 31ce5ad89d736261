"""Prefect task of the `odm_filterpoints` stage."""

from prefect import task

from odm_core.options import FilterpointsOptions
from odm_core.stages.odm_filterpoints import FilterpointsResult
from odm_core.stages.odm_filterpoints import odm_filterpoints as run_filterpoints
from tasks._stage import STAGE_CACHE, run_checkpointed


@task(name="odm_filterpoints", cache_policy=STAGE_CACHE, persist_result=True)
def odm_filterpoints(
    project: str, opts: FilterpointsOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> FilterpointsResult:
    """Outlier removal, thinning and cropping of the dense (or, fast-orthophoto, sparse) cloud."""
    return run_checkpointed(project, opts, lambda tree, report, _fp: run_filterpoints(tree, opts))
