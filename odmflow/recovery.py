"""`odmflow server up`'s recovery of the runs a dead worker of this machine left behind."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed, Scheduled

from odmflow.runs import FLOW_NAME
from tasks.lost_runs import process_gone

BUSY = {"type": {"any_": ["RUNNING", "PENDING"]}}
STUCK_PENDING = timedelta(seconds=10)  # claimed by a worker that never started it (a start takes < 1 s)
LOST = "its worker died (process gone); the run that started it starts it again"
LOST_OTHER = "its worker died (process gone)"
LOST_NESTED = "the worker of the run it belongs to died; the resumed run does its work again"


def recover_orphaned_runs(pool: str) -> list[FlowRun]:
    """Put back in the queue the pool's pipeline runs whose process on this machine is gone (a killed
    worker), and end as Crashed what else the dead worker left Running or Pending, so that nothing holds
    a slot of the pool, or shows as running, for ever. Returns the runs queued again.

    A process worker records each run's process id (`pid`, or `host:pid`); a run it claimed but never
    started has none and stays Pending (counted lost after STUCK_PENDING). A queued pipeline run is
    resumed from its stage checkpoints (local disk, or the bucket for s3:// projects) by the worker that
    takes it. A bare pid names no machine, so this assumes the pool's runs execute on this machine: give
    each machine's workers their own pool. Crashed instead of queued: a submodel's run (the split run that
    started it starts it again, or, if that run is queued again too, starts all of them), a run of another
    flow (the bucket watcher: its next scheduled run takes over), and the nested flow runs of every lost run
    (the Dask units' flows, which belong to no pool)."""
    host = socket.gethostname()
    recovered = []
    with get_client(sync_client=True) as client:
        try:
            pipeline_id: UUID | None = client.read_flow_by_name(FLOW_NAME).id
        except ObjectNotFound:  # no pipeline run yet
            pipeline_id = None
        lost = [
            r
            for r in client.read_flow_runs(flow_run_filter=FlowRunFilter(state=BUSY))
            if _lost(r, pool, host)
        ]
        for run in lost:
            if run.flow_id == pipeline_id and run.parent_task_run_id is None:
                client.set_flow_run_state(run.id, Scheduled(), force=True)
                recovered.append(run)
            else:
                message = LOST if run.flow_id == pipeline_id else LOST_OTHER
                client.set_flow_run_state(run.id, Crashed(message=message), force=True)
        _crash_nested(client, [r.id for r in lost])
    return recovered


def _lost(run: FlowRun, pool: str, host: str) -> bool:
    if run.work_pool_name != pool or run.state is None:
        return False
    if run.infrastructure_pid is None:
        since = run.state.timestamp or datetime.now(UTC)
        return run.state.type.value == "PENDING" and datetime.now(UTC) - since > STUCK_PENDING
    return process_gone(run.infrastructure_pid, host)


def _crash_nested(client: SyncPrefectClient, parents: list[UUID]) -> None:
    """Mark Crashed the Running or Pending flow runs nested in `parents`, and theirs in turn."""
    while parents:
        nested = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=BUSY, parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=parents)
            )
        )
        for run in nested:
            client.set_flow_run_state(run.id, Crashed(message=LOST_NESTED), force=True)
        parents = [run.id for run in nested]
