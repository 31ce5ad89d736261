"""The bucket watcher flow: one odm-process run for each dataset that arrives under a bucket prefix."""

from __future__ import annotations

from prefect import flow

from odm_core.options import PipelineOptions
from tasks.watch import find_new_datasets, start_processing


@flow(name="odm-watch-bucket")
def odm_watch_bucket(
    bucket_prefix: str,
    options: PipelineOptions | None = None,
    deployment: str = "odm-pipeline/odm-process",
) -> list[str]:
    """Find datasets (PREFIX/NAME/images/) without finished outputs and start a run for each, once."""
    opts = (options or PipelineOptions()).model_dump(mode="json", exclude_unset=True)
    new = find_new_datasets(bucket_prefix)
    return [start_processing(url, digest, opts, deployment) for url, digest in new]
