"""The Dask cluster the per-view work runs on: a local one (one single-threaded worker per core) or the
user's scheduler (--dask-address), through prefect-dask's DaskTaskRunner."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from typing import Any
from uuid import uuid4

from distributed import Client, LocalCluster, WorkerPlugin, fire_and_forget
from prefect.client.orchestration import get_client
from prefect_dask import DaskTaskRunner
from prefect_dask.task_runners import PrefectDaskFuture

from odm_core.errors import OdmInputError
from odm_core.worker import reset_peak_rss

MEMORY_FRACTION = 0.8  # of this machine's RAM, shared by the local workers
# What the stages' units import: the first Dask stage's (opensfm's) as a run's shared workers start, while
# the run's first stages work; the rest while opensfm maps in the flow process and the workers idle
# (`warm_workers`). All at start kept opensfm waiting for the cluster: 8.7 s of imports against 4.0 s.
STARTUP_MODULES = ("prefect.task_engine", "odm_core.sfm.extract", "odm_core.sfm.match_units")
LATER_MODULES = (
    "odm_core.dense.units",
    "odm_core.dense.score",
    "odm_core.dense.fusion",
    "odm_core.dem.units",
    "odm_core.stages.odm_orthophoto",
    "odm_core.texturing.data_term",
    "odm_core.texturing.bake",
    "odm_core.split.merge_ortho",
    "odm_core.split.merge_dem",
    "tasks.openmvs",
)
WORKER_MODULES = STARTUP_MODULES + LATER_MODULES
# The run's local workers yield to the flow process (the stages' work done there, mapping above all) and to
# Prefect's server: on Brighton, opensfm's single-threaded mapping shared 2 cores with both workers
# importing the later stages' modules and took 14.7 s instead of about 9.5 s.
WORKER_NICENESS = 10
_run_cluster: Future[LocalCluster] | None = None  # the pipeline run's shared local cluster, while it runs


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


def local_workers(workers: int) -> dict[str, Any]:
    """LocalCluster's arguments for `workers` single-threaded worker processes at a lower priority
    (YieldCpu), sharing 80% of the RAM."""
    return {
        "n_workers": workers,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": ":0",  # a free port: a fixed 8787 warns whenever another cluster holds it
        "memory_limit": int(MEMORY_FRACTION * _total_memory_bytes() / workers),
        "plugins": {YieldCpu()},
    }


def _local_cluster_kwargs(max_concurrency: int) -> dict[str, Any]:
    """One single-threaded worker per core (at most max_concurrency), reporting to this run's Prefect API."""
    workers = max(1, min(os.cpu_count() or 1, max_concurrency))
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    return local_workers(workers) | {
        "env": {
            "PREFECT_API_URL": api_url,
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        },
    }


def _address(address: str | None) -> str | None:
    """--dask-address, else $ODMFLOW_DASK_ADDRESS (set by `odmflow server up --dask-workers`)."""
    return address or os.environ.get("ODMFLOW_DASK_ADDRESS")


def _import_modules(modules: tuple[str, ...] = WORKER_MODULES) -> None:
    for module in modules:
        importlib.import_module(module)


class YieldCpu(WorkerPlugin):
    """Each local worker lowers its priority by WORKER_NICENESS as it starts (Unix; elsewhere nothing),
    so the flow process's own work (mapping's child, the stages between units) is not slowed by the
    units or the workers' imports. Given to every worker at its start, it also holds for a worker that
    its nanny restarts (after a crash or at its memory limit)."""

    name = "odmflow-yield-cpu"

    def setup(self, worker: Any) -> None:
        with suppress(AttributeError, OSError):
            os.nice(WORKER_NICENESS)


def _start_cluster(kwargs: dict[str, Any]) -> LocalCluster:
    cluster = LocalCluster(**kwargs)
    with Client(cluster) as client:
        client.run(_import_modules, STARTUP_MODULES)
    return cluster


def warm_workers() -> None:
    """Have the run's local workers import the later stages' modules now, as a task each (their event
    loops stay free); fire and forget. Nothing to do without a started local cluster."""
    if _run_cluster is None or not _run_cluster.done() or _run_cluster.exception() is not None:
        return
    with Client(_run_cluster.result()) as client:
        for worker in client.scheduler_info()["workers"]:
            future = client.submit(
                _import_modules, LATER_MODULES, key=f"warm-{uuid4().hex}", workers=[worker], pure=False
            )
            fire_and_forget(future)


@contextmanager
def run_cluster(address: str | None, max_concurrency: int, needed: bool) -> Iterator[None]:
    """While a pipeline run lasts, one local cluster shared by its Dask stages.

    It starts in the background when the run begins (`needed`: a Dask stage is among the run's stages and
    no cluster address is given), its workers importing the units' modules meanwhile, so the stages find
    it ready instead of each starting its own; it is closed when the run ends.
    """
    global _run_cluster
    external = _address(address)
    if needed and external:
        check_scheduler(external)
    if not needed or external or _run_cluster is not None:
        yield
        return
    future: Future[LocalCluster] = Future()
    kwargs = _local_cluster_kwargs(max_concurrency)

    def start() -> None:
        try:
            future.set_result(_start_cluster(kwargs))
        except BaseException as err:  # noqa: BLE001 - handed to the stage that waits for it
            future.set_exception(err)

    threading.Thread(target=start, name="odmflow-dask-start", daemon=True).start()
    _run_cluster = future
    try:
        yield
    finally:
        _run_cluster = None
        with suppress(Exception):  # a cluster that failed to start has nothing to close
            future.result().close()


def check_scheduler(address: str, timeout_s: float = 15.0) -> None:
    """Raise OdmInputError, before any stage works, when no Dask scheduler answers at `address`."""
    try:
        with Client(address, timeout=timeout_s):
            pass
    except (OSError, TimeoutError) as err:
        raise OdmInputError(
            f"--dask-address {address}: no Dask scheduler answers there ({type(err).__name__}); start one "
            "(`dask scheduler`, or `odmflow server up --dask-workers N`) or leave --dask-address out to "
            "use a local cluster"
        ) from None


def dask_task_runner(address: str | None, max_concurrency: int) -> KeyedDaskTaskRunner:
    """A DaskTaskRunner on `address` (or $ODMFLOW_DASK_ADDRESS), else on the run's shared local cluster
    (`run_cluster`), else on a local cluster of its own of min(cores, max_concurrency) workers.

    Local workers run one task at a time (threads_per_worker=1; each unit is single-threaded) under a
    memory limit of their share of 80% of the RAM, and report to this run's Prefect API. Workers of an
    external cluster need PREFECT_API_URL set to the same server and the project folder at the same path.
    """
    address = _address(address)
    if address:
        return KeyedDaskTaskRunner(address=address)
    if _run_cluster is not None:
        cluster = _run_cluster.result()
        with Client(cluster) as client:
            client.run(reset_peak_rss)  # each stage reports its own workers' peak
        return KeyedDaskTaskRunner(address=cluster.scheduler_address)
    return KeyedDaskTaskRunner(cluster_kwargs=_local_cluster_kwargs(max_concurrency))


def uses_external_cluster(address: str | None) -> bool:
    """Whether the run's units go to a cluster by address (--dask-address, $ODMFLOW_DASK_ADDRESS), whose
    workers may be on other machines, rather than to the run's own local cluster."""
    return _address(address) is not None


def cluster_threads(address: str | None, max_concurrency: int) -> int:
    """How many units the run's cluster works on at once: its workers' threads (an external cluster's as
    its scheduler reports them now), else the local cluster's workers."""
    address = _address(address)
    if address:
        with Client(address) as client:
            return max(1, sum(client.nthreads().values()))
    return max(1, min(os.cpu_count() or 1, max_concurrency))
