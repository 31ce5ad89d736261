"""The Dask cluster the per-view work runs on: a local one (one single-threaded worker per core) or the
user's scheduler (--dask-address), through prefect-dask's DaskTaskRunner."""

from __future__ import annotations

import os

from prefect.client.orchestration import get_client
from prefect_dask import DaskTaskRunner

MEMORY_FRACTION = 0.8  # of this machine's RAM, shared by the local workers


def _total_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def dask_task_runner(address: str | None, max_concurrency: int) -> DaskTaskRunner:
    """A DaskTaskRunner on `address` (or $ODMFLOW_DASK_ADDRESS), else on a local cluster of
    min(cores, max_concurrency) workers.

    Local workers run one task at a time (threads_per_worker=1; each unit is single-threaded) under a
    memory limit of their share of 80% of the RAM, and report to this run's Prefect API. Workers of an
    external cluster need PREFECT_API_URL set to the same server and the project folder at the same path.
    """
    address = address or os.environ.get("ODMFLOW_DASK_ADDRESS")  # set by `odmflow server up --dask-workers`
    if address:
        return DaskTaskRunner(address=address)
    workers = max(1, min(os.cpu_count() or 1, max_concurrency))
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
            "memory_limit": int(MEMORY_FRACTION * _total_memory_bytes() / workers),
            "env": {
                "PREFECT_API_URL": api_url,
                "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                "DASK_LOGGING__DISTRIBUTED": "warning",
            },
        }
    )
