"""Runs whose worker died: a flow run left Running or Pending with nobody executing it.

A process worker killed with its machine, or by SIGKILL, reports nothing: the server keeps the run
Running. Two signs tell such a run apart from a slow one:
- its process, on this machine, is gone (the worker records `host:pid` as the run's infrastructure pid);
- on any machine, its engine has stopped sending `prefect.flow-run.heartbeat` events, which every flow
  run sends each `PREFECT_FLOWS_HEARTBEAT_FREQUENCY` seconds (180 by default, at least 30): a Running
  run with no heartbeat for HEARTBEATS_MISSED periods is lost. Every machine of a pool must therefore use
  the same heartbeat frequency as the process watching (the node's processes share one environment).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import psutil
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter
from prefect.settings import get_current_settings

HEARTBEATS_MISSED = 3
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
ORPHAN_CHECK_S = 1.0
ORPHAN_EXIT_CODE = 75  # EX_TEMPFAIL: run again
_watching: list[int] = []


def pid_alive(pid: int) -> bool:
    """True when the process exists and is not a zombie (an exited child nobody has reaped)."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:  # no such process (or not ours to see)
        return False


def process_gone(infrastructure_pid: str | None, host: str | None = None) -> bool:
    """True when `pid` or `host:pid` names a process of this host (or `host`) that no longer runs."""
    run_host, _, pid = (infrastructure_pid or "").rpartition(":")
    if run_host not in ("", host or socket.gethostname()) or not pid.isdigit():
        return False
    return not pid_alive(int(pid))


def heartbeat_timeout() -> timedelta:
    """How long a Running run may go without a heartbeat before it counts as lost."""
    frequency = get_current_settings().flows.heartbeat_frequency or 180
    return timedelta(seconds=HEARTBEATS_MISSED * frequency)


def lost_reason(client: SyncPrefectClient, run: FlowRun, now: datetime | None = None) -> str | None:
    """Why `run` counts as lost (its worker died), or None while it may still be working.

    Only Running and Pending runs can be lost; a Pending one only by its process being gone."""
    state = run.state
    if state is None or state.type.value not in ("RUNNING", "PENDING"):
        return None
    if process_gone(run.infrastructure_pid):
        return f"its process ({run.infrastructure_pid}) is gone: its worker was killed"
    if state.type.value != "RUNNING":
        return None
    now = now or datetime.now(UTC)
    timeout = heartbeat_timeout()
    if now - state.timestamp <= timeout:  # Running for less: no heartbeat was due yet, nothing to ask
        return None
    silent = now - max([state.timestamp, *_heartbeats(client, run, now - timeout)])
    if silent <= timeout:
        return None
    return f"no heartbeat for {silent.total_seconds():.0f} s (at most {timeout.total_seconds():.0f} s)"


def _heartbeats(client: SyncPrefectClient, run: FlowRun, since: datetime) -> list[datetime]:
    """When `run` sent heartbeats since `since` (the newest page)."""
    page = client.read_events(
        EventFilter(
            occurred=EventOccurredFilter(since=since, until=datetime.now(UTC) + timedelta(minutes=1)),
            event=EventNameFilter(name=[HEARTBEAT_EVENT]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run.id}"]),
        ),
        limit=10,
    )
    return [event.occurred for event in page.events]


def exit_with_worker() -> None:
    """In a flow run that a worker started (PREFECT__FLOW_RUN_ID set), end the process soon after that
    worker dies, as it would with the worker's machine.

    An orphaned run does not survive anyway: its stderr is a pipe to the dead worker, and the first write
    to it broke the thread of its Dask cluster's event loop, so the run waited for that cluster forever
    while its heartbeats went on (seen with a killed worker). Ended, its process is gone: the split run
    that started it starts it again (`lost_reason`), and `odmflow server up` queues a top-level run again.
    Nothing to do in `odmflow run` (no worker) or when already watching."""
    if "PREFECT__FLOW_RUN_ID" not in os.environ or _watching:
        return
    worker = os.getppid()
    _watching.append(worker)
    threading.Thread(target=_watch_parent, args=(worker,), name="odmflow-worker-watch", daemon=True).start()


def _watch_parent(worker: int) -> None:
    while os.getppid() == worker:
        time.sleep(ORPHAN_CHECK_S)
    try:  # logging may itself fail on the broken stderr
        logging.getLogger(__name__).error("worker %d died: ending this run's process to run again", worker)
    finally:
        os._exit(ORPHAN_EXIT_CODE)
