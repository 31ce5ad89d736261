"""Prefect tasks of the bucket watcher: find datasets not processed yet, start each one's run once."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.client.orchestration import get_client
from prefect.logging import get_run_logger

from odm_core.artifacts import sha256_text
from odm_core.remote.fs import is_photo, list_files, s3_filesystem
from odm_core.remote.sync import is_processed, list_datasets


@task(name="find_new_datasets", retries=2, retry_delay_seconds=[5, 15])
def find_new_datasets(bucket_prefix: str) -> list[tuple[str, str]]:
    """(s3 address, digest of its photos) of every dataset under bucket_prefix without finished outputs."""
    fs = s3_filesystem()
    found = []
    for dataset in list_datasets(bucket_prefix, fs):
        if is_processed(dataset, fs):
            continue
        photos = [f for f in list_files(fs, dataset, "images").values() if is_photo(f.rel)]
        found.append((dataset.url, sha256_text(*sorted(f"{f.rel}:{f.size}:{f.etag}" for f in photos))))
    return found


@task(name="start_processing", retries=2, retry_delay_seconds=[5, 15])
def start_processing(url: str, photos_digest: str, options: dict[str, Any], deployment: str) -> str:
    """Start one run of `deployment` for a dataset, exactly once for a given set of photos.

    The idempotency key names the dataset and its photos, so watcher runs that overlap (or a watcher
    that runs again before the first run finished) get the same flow run back instead of a new one.
    """
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(deployment)
        run = client.create_flow_run_from_deployment(
            dep.id,
            parameters={"project": url, "options": options},
            name=url.rstrip("/").rsplit("/", 1)[-1],
            idempotency_key=f"odm-process:{url}:{photos_digest}",
        )
    get_run_logger().info("dataset %s: run %s (%s)", url, run.name, run.id)
    return str(run.id)
