"""Prefect task of the `split` stage: the survey cut into submodel folders (the flow runs them)."""

from prefect import task

from odm_core.options_split import SplitOptions
from odm_core.stages.split import SplitResult
from odm_core.stages.split import split as run_split
from tasks._stage import STAGE_CACHE, run_checkpointed


@task(name="split", cache_policy=STAGE_CACHE, persist_result=True)
def split(
    project: str, opts: SplitOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> SplitResult:
    """Submodels of a large survey: partition, each one's photos, share of the model and options."""
    return run_checkpointed(project, opts, lambda tree, report, _fp: run_split(tree, opts, report))
