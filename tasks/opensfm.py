"""Prefect task of the `opensfm` stage."""

from prefect import task

from odm_core.options import OpensfmOptions
from odm_core.stages.opensfm import OpensfmResult
from odm_core.stages.opensfm import opensfm as run_opensfm
from tasks._stage import STAGE_CACHE, run_checkpointed


@task(name="opensfm", cache_policy=STAGE_CACHE, persist_result=True)
def opensfm(
    project: str, opts: OpensfmOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> OpensfmResult:
    """Structure from motion, georeferenced by GPS priors; ODM's and COLMAP's model files."""
    return run_checkpointed(
        project, opts, lambda tree, report, _fp: run_opensfm(tree, opts, max_concurrency, report)
    )
