"""The Dask cluster the per-view work runs on: a local one (one single-threaded worker per core) or the
user's scheduler (--dask-address), through prefect-dask's DaskTaskRunner."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any
from uuid import uuid4

from prefect.client.orchestration import get_client
from prefect_dask import DaskTaskRunner
from prefect_dask.task_runners import PrefectDaskFuture

MEMORY_FRACTION = 0.8  # of this machine's RAM, shared by the local workers


def _total_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class KeyedDaskTaskRunner(DaskTaskRunner):
    """prefect-dask's runner, submitting each task run under its own Dask key.

    Without a key, distributed's Client.submit tokenizes every argument, Prefect's serialized run
    context included: about 0.3 s of the flow process's CPU per task run here (PrefectHQ/prefect#18191),
    which on a small machine starved the workers. Task runs are never deduplicated by Dask anyway:
    each has its own task-run id.
    """

    def submit(  # type: ignore[override]
        self,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectDaskFuture[Any]] | None = None,
        dependencies: dict[str, Any] | None = None,
    ) -> PrefectDaskFuture[Any]:
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        future = self.client.submit(
            task,
            key=f"{task.name}-{uuid4().hex}",
            parameters=self._optimize_futures(parameters),
            wait_for=self._optimize_futures(wait_for) if wait_for else None,
            dependencies=dependencies,
            return_type="state",
        )
        return PrefectDaskFuture(wrapped_future=future, task_run_id=future.task_run_id)


def dask_task_runner(address: str | None, max_concurrency: int) -> KeyedDaskTaskRunner:
    """A DaskTaskRunner on `address` (or $ODMFLOW_DASK_ADDRESS), else on a local cluster of
    min(cores, max_concurrency) workers.

    Local workers run one task at a time (threads_per_worker=1; each unit is single-threaded) under a
    memory limit of their share of 80% of the RAM, and report to this run's Prefect API. Workers of an
    external cluster need PREFECT_API_URL set to the same server and the project folder at the same path.
    """
    address = address or os.environ.get("ODMFLOW_DASK_ADDRESS")  # set by `odmflow server up --dask-workers`
    if address:
        return KeyedDaskTaskRunner(address=address)
    workers = max(1, min(os.cpu_count() or 1, max_concurrency))
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    return KeyedDaskTaskRunner(
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
