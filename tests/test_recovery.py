"""`odmflow server up`'s recovery of what a dead worker left behind (odmflow.recovery), on a Prefect test
server: lost pipeline runs queued again, everything else it left Running or Pending ended as Crashed, so
nothing holds a slot of the pool for ever (a watcher run left Pending once kept a pool limited to one run
from ever starting another)."""

from __future__ import annotations

import os
import subprocess
import uuid
from datetime import timedelta
from typing import Any

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.states import Cancelled, Pending, Running


@flow(name="odm-pipeline")
def _pipeline() -> None: ...


@flow(name="odm-watch-bucket")
def _watcher() -> None: ...


@flow(name="opensfm-features")
def _units() -> None: ...


@task
def _stage() -> None: ...


def test_recovery_queues_lost_pipeline_runs_and_ends_the_rest(
    prefect_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from odmflow import recovery

    monkeypatch.setattr(recovery, "STUCK_PENDING", timedelta(0))
    dead = subprocess.Popen(["true"])
    dead.wait()
    pool = f"recovery-{uuid.uuid4().hex[:6]}"
    with get_client(sync_client=True) as client:
        for name in (pool, f"{pool}-other"):
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))

        made_ids: list[Any] = []

        def run(fn: Any, state: Any, pid: int | None, in_pool: str | None = pool, parent: Any = None) -> Any:
            made = client.create_flow_run(fn, work_pool_name=in_pool, parent_task_run_id=parent)
            made_ids.append(made.id)
            client.set_flow_run_state(made.id, state, force=True)
            if pid is not None:
                client.update_flow_run(made.id, infrastructure_pid=f"{pid}")
            return made.id

        try:
            lost = run(_pipeline, Running(), dead.pid)
            alive = run(_pipeline, Running(), os.getpid())
            elsewhere = run(_pipeline, Running(), dead.pid, in_pool=f"{pool}-other")
            claimed = run(_watcher, Pending(), None)  # taken by the worker, which died before starting it
            stage = client.create_task_run(_stage, flow_run_id=lost, dynamic_key="0")
            nested = run(_units, Running(), None, in_pool=None, parent=stage.id)
            split = run(_pipeline, Running(), os.getpid())
            split_stage = client.create_task_run(_stage, flow_run_id=split, dynamic_key="0")
            submodel = run(_pipeline, Running(), dead.pid, parent=split_stage.id)

            recovered = recovery.recover_orphaned_runs(pool)

            assert [r.id for r in recovered] == [lost]

            def state(run_id: Any) -> tuple[str, str | None]:
                s = client.read_flow_run(run_id).state
                assert s is not None
                return s.name, s.message

            assert state(lost)[0] == "Scheduled"
            assert state(alive)[0] == state(elsewhere)[0] == state(split)[0] == "Running"
            assert state(claimed) == ("Crashed", recovery.LOST_OTHER)
            assert state(nested) == ("Crashed", recovery.LOST_NESTED)
            assert state(submodel) == ("Crashed", recovery.LOST)
        finally:  # nothing left running on the session's Prefect server
            for run_id in made_ids:
                client.set_flow_run_state(run_id, Cancelled(), force=True)
