"""Prefect task of the `dataset` stage."""

from prefect import task

from odm_core.options import DatasetOptions
from odm_core.stages.dataset import DatasetResult
from odm_core.stages.dataset import dataset as run_dataset
from tasks._stage import STAGE_CACHE, run_checkpointed


@task(name="dataset", cache_policy=STAGE_CACHE, persist_result=True)
def dataset(
    project: str, opts: DatasetOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> DatasetResult:
    """Read the photos' EXIF/XMP; write images.json and the georeference files."""
    return run_checkpointed(project, opts, lambda tree, report, _fp: run_dataset(tree, opts, report))
