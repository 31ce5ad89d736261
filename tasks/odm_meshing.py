"""Prefect task of the `odm_meshing` stage."""

from prefect import task

from odm_core.options import MeshingOptions
from odm_core.stages.odm_meshing import MeshingResult
from odm_core.stages.odm_meshing import odm_meshing as run_meshing
from tasks._stage import STAGE_CACHE, run_checkpointed


@task(name="odm_meshing", cache_policy=STAGE_CACHE, persist_result=True)
def odm_meshing(
    project: str, opts: MeshingOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> MeshingResult:
    """The 3D mesh (screened Poisson, trimmed, decimated) and the 2.5D mesh of the filtered cloud."""
    return run_checkpointed(
        project, opts, lambda tree, report, _fp: run_meshing(tree, opts, max_concurrency, report)
    )
