"""Prefect task of the `odm_georeferencing` stage."""

from prefect import task

from odm_core.options import GeoreferencingOptions
from odm_core.stages.odm_georeferencing import GeoreferencingResult
from odm_core.stages.odm_georeferencing import odm_georeferencing as run_georeferencing
from tasks._stage import STAGE_CACHE, run_checkpointed


@task(name="odm_georeferencing", cache_policy=STAGE_CACHE, persist_result=True)
def odm_georeferencing(
    project: str, opts: GeoreferencingOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> GeoreferencingResult:
    """The georeferenced point cloud: LAZ with its CRS, colours and view counts; LAS/CSV exports."""
    return run_checkpointed(project, opts, lambda tree, report, _fp: run_georeferencing(tree, opts))
