"""The submodels of a split survey, each a pipeline run of its own (wiring only)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.deployments import run_deployment
from prefect.runtime import deployment, flow_run
from prefect.states import Cancelled, Crashed, State

from odm_core.errors import OdmStageError
from odm_core.layout import ProjectTree
from odm_core.options import PipelineOptions
from odm_core.remote.cluster import NodeSubmodel, connect, run_on_node
from odm_core.remote.fs import parse_remote
from odm_core.remote.submodels import submodel_prefix
from tasks.lost_runs import lost_reason
from tasks.remote import publish, pull_products
from tasks.run_artifacts import mark_split_run, update_progress

SUBMODEL_ATTEMPTS = 3  # a submodel's run is tried this many times before the whole run fails
POLL_S = 5.0
# A submodel run that no worker has started after this long is run by the split run itself (every slot
# of the pool's workers may be held, this run's among them: a worker started with --limit 1, or split
# runs waiting on each other); $ODMFLOW_SUBMODEL_START_S sets it.
START_TIMEOUT_S = 300.0
SPLIT_WRITTEN = 0.05  # of the split stage's progress, the submodel folders written; the runs the rest


def run_submodels(
    pipeline: Callable[..., Any],
    tree: ProjectTree,
    names: tuple[str, ...],
    url: str | None,
    cluster: str | None = None,
    rerun: dict[str, Any] | None = None,
) -> None:
    """Every submodel's pipeline with the options the split stage wrote: as tasks of the node at `cluster`
    (--sm-cluster) when given, else as flow runs of this run's deployment when it is one (any worker of
    the pool takes them, all at once), else one after another in this process (on this run's Dask
    cluster). For a bucket project (`url`) on the pool, each submodel is
    a bucket project of its own (PREFIX/submodels/NAME, its photos copied there in the bucket), so its
    worker needs no disk shared with this one; the products the merge reads are downloaded here after.
    Raises OdmStageError naming a submodel that failed SUBMODEL_ATTEMPTS times. A pool limited to one run
    at a time, which this run holds, would never start them: they run here then too. `rerun`: the rerun
    options (PipelineOptions.submodel_rerun) every submodel's run takes on top of its own; on the node,
    submodels whose products came back already are sent again."""
    runs = {name: _parameters(tree, name, rerun or {}) for name in names}
    mark_split_run()
    update_progress("split", SPLIT_WRITTEN, str(flow_run.get_id()))
    if cluster:
        _on_the_node(pipeline, cluster, runs, resend=bool(rerun))
        return
    if deployment.id and _pool_has_room():
        if url:
            publish(url, str(tree.root), names)
            remote = parse_remote(url)
            runs = {name: {**p, "project": remote.address(submodel_prefix(name))} for name, p in runs.items()}
        _on_the_pool(pipeline, str(deployment.id), runs)
        if url:
            pull_products(url, str(tree.root), names)
        return
    for done, (name, parameters) in enumerate(runs.items(), 1):
        _run_here(pipeline, name, parameters, first_attempt=1)
        _progress(done, len(runs))


def _run_here(
    pipeline: Callable[..., Any], name: str, parameters: dict[str, Any], first_attempt: int
) -> None:
    """A submodel's pipeline in this process, tried until it completes or has failed SUBMODEL_ATTEMPTS
    times in all (counting `first_attempt` - 1 earlier tries)."""
    for attempt in range(first_attempt, SUBMODEL_ATTEMPTS + 1):
        state = pipeline(**parameters, return_state=True)
        assert isinstance(state, State)
        if state.is_completed():
            return
        _give_up_after(name, attempt, state.message)


def _pool_has_room() -> bool:
    """False when this run's work pool runs one flow run at a time (this one): its submodels' runs would
    wait for this run, which waits for them."""
    run_id = flow_run.get_id()
    if run_id is None:
        return True
    with get_client(sync_client=True) as client:
        pool = client.read_flow_run(UUID(run_id)).work_pool_name
        limit = client.read_work_pool(pool).concurrency_limit if pool else None
    if limit is not None and limit < 2:
        get_run_logger().warning(
            f"work pool {pool!r} runs {limit} flow run at a time, held by this run: its submodels run "
            "here, one after another (raise the pool's concurrency limit to spread them over its workers)"
        )
        return False
    return True


def _progress(done: int, total: int) -> None:
    """The parent's progress: the split stage's share, rising as submodels finish."""
    update_progress("split", SPLIT_WRITTEN + (1 - SPLIT_WRITTEN) * done / total, str(flow_run.get_id()))


def _parameters(tree: ProjectTree, name: str, rerun: dict[str, Any]) -> dict[str, Any]:
    folder = ProjectTree(tree.submodel(name))
    options = PipelineOptions.model_validate_json(folder.submodel_options_json.read_text())
    return {"project": str(folder.root), "options": options.model_copy(update=rerun)}


def _give_up_after(name: str, attempt: int, message: str | None) -> None:
    if attempt >= SUBMODEL_ATTEMPTS:
        raise OdmStageError(
            f"submodel {name} failed {attempt} times (last: {message or 'no message'}); its log is in "
            f"the Prefect UI under the run named {name}; fix the cause and run the project again "
            "(finished submodels resume from their checkpoints)"
        )


def _on_the_pool(pipeline: Callable[..., Any], deployment_id: str, runs: dict[str, dict[str, Any]]) -> None:
    """Start every submodel's flow run at once, then wait; a failed or crashed one, or one whose worker
    died, is started again; one that no worker starts within the start timeout runs here."""
    pending = {name: _start(deployment_id, parameters) for name, parameters in runs.items()}
    attempts = dict.fromkeys(runs, 1)
    since = dict.fromkeys(runs, time.monotonic())
    timeout_s = _start_timeout_s()
    with get_client(sync_client=True) as client:
        while pending:
            time.sleep(POLL_S)
            for name, run_id in list(pending.items()):
                state = _final_state(client, run_id)
                if state is None:
                    if time.monotonic() - since[name] > timeout_s and _withdrawn(client, run_id, timeout_s):
                        del pending[name]
                        get_run_logger().warning(
                            f"submodel {name}: no worker of the pool started its run within {timeout_s:g} "
                            "s (every slot taken, this run's among them): this run runs it"
                        )
                        _run_here(pipeline, name, runs[name], attempts[name])
                        _progress(len(runs) - len(pending), len(runs))
                    continue
                del pending[name]
                if not state.is_completed():
                    _give_up_after(name, attempts[name], state.message)
                    pending[name] = _start(deployment_id, runs[name])
                    attempts[name] += 1
                    since[name] = time.monotonic()
                else:
                    _progress(len(runs) - len(pending), len(runs))


def _on_the_node(
    pipeline: Callable[..., Any], url: str, runs: dict[str, dict[str, Any]], resend: bool
) -> None:
    """Send every submodel to the node at once (a thread each, see odm_core.remote.cluster; `resend`:
    also those whose products came back already); one the node does not start within the start timeout
    runs here. The first that keeps failing stops the others (their tasks removed from the node) and
    fails the run."""
    node, timeout_s = connect(url), _start_timeout_s()
    stop = threading.Event()
    done = dict.fromkeys(runs, 0.0)
    jobs = {
        name: NodeSubmodel(node, name, Path(p["project"]), SUBMODEL_ATTEMPTS, timeout_s, stop, resend)
        for name, p in runs.items()
    }
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="sm-cluster") as threads:
        futures = {threads.submit(run_on_node, job, done.__setitem__): name for name, job in jobs.items()}
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                for future in finished:
                    if not future.result():
                        name = futures[future]
                        get_run_logger().warning(
                            f"submodel {name}: the node did not start it, this run runs it"
                        )
                        _run_here(pipeline, name, runs[name], first_attempt=1)
                        done[name] = 1.0
                update_progress("split", SPLIT_WRITTEN + (1 - SPLIT_WRITTEN) * sum(done.values()) / len(done))
        finally:
            stop.set()  # nothing left to wait for, or a submodel failed: the others stop too


def _start_timeout_s() -> float:
    return float(os.environ.get("ODMFLOW_SUBMODEL_START_S", START_TIMEOUT_S))


def _withdrawn(client: SyncPrefectClient, run_id: Any, timeout_s: float) -> bool:
    """Cancel a submodel run that is still waiting for a worker; False when a worker took it meanwhile
    (the server refuses to cancel it then, unforced, once it is pending or running)."""
    state = client.read_flow_run(run_id).state
    if state is None or not state.is_scheduled():
        return False
    message = f"no worker started it within {timeout_s:g} s: its split run runs it"
    cancelled: State[Any] = Cancelled(message=message)
    result = client.set_flow_run_state(run_id, cancelled)
    return bool(result.state is not None and result.state.is_cancelled())


def _final_state(client: SyncPrefectClient, run_id: Any) -> State | None:
    """The run's final state; a run whose worker died (see tasks.lost_runs) is marked Crashed first."""
    run = client.read_flow_run(run_id)
    reason = lost_reason(client, run)
    if reason is not None:
        return client.set_flow_run_state(run_id, Crashed(message=f"lost: {reason}"), force=True).state
    return run.state if run.state is not None and run.state.is_final() else None


def _start(deployment_id: str, parameters: dict[str, Any]) -> Any:
    flow_run = run_deployment(
        name=deployment_id,  # an id is accepted
        parameters={**parameters, "options": parameters["options"].model_dump(mode="json")},
        timeout=0,
        as_subflow=True,
    )
    return flow_run.id  # type: ignore[union-attr]
