"""A run whose worker died is told apart from a slow one (tasks/lost_runs.py), without a server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

from prefect.client.schemas.objects import FlowRun
from prefect.states import Completed, Pending, Running

from tasks.lost_runs import heartbeat_timeout, lost_reason

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class _Events:
    """Stands in for the client: answers read_events with the heartbeats given."""

    def __init__(self, *beats: datetime) -> None:
        self.beats = beats

    def read_events(self, filter: Any, limit: int) -> Any:
        since = filter.occurred.since
        return SimpleNamespace(events=[SimpleNamespace(occurred=b) for b in self.beats if b >= since])


def _run(state: Any, pid: str | None = None) -> FlowRun:
    return FlowRun(id=uuid4(), flow_id=uuid4(), state=state, infrastructure_pid=pid)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_running_run_without_heartbeats_is_lost_and_one_with_them_is_not() -> None:
    timeout = heartbeat_timeout()
    assert timeout == timedelta(seconds=3 * 180)  # Prefect's default heartbeat, three missed
    started = Running(timestamp=NOW - 2 * timeout)
    assert "no heartbeat for 1080 s" in (lost_reason(_Events(), _run(started), NOW) or "")
    recent = _Events(NOW - timeout / 2)
    assert lost_reason(recent, _run(started), NOW) is None
    young = Running(timestamp=NOW - timeout / 3)  # just started: no heartbeat due yet
    assert lost_reason(_Events(), _run(young), NOW) is None


def test_a_run_whose_process_is_gone_is_lost_at_once() -> None:
    host = socket.gethostname()
    pending = _run(Pending(), f"{host}:{_dead_pid()}")
    assert "is gone: its worker was killed" in (lost_reason(_Events(), pending, NOW) or "")
    alive = _run(Running(timestamp=NOW), f"{host}:{os.getpid()}")
    assert lost_reason(_Events(NOW), alive, NOW) is None
    elsewhere = _run(Pending(), f"another-machine:{_dead_pid()}")  # not ours to judge by pid
    assert lost_reason(_Events(), elsewhere, NOW) is None
    assert lost_reason(_Events(), _run(Completed(), f"{host}:{_dead_pid()}"), NOW) is None


def test_an_exited_process_nobody_reaped_counts_as_gone() -> None:
    """A worker's run process that exited but was not reaped yet (a zombie) is gone, as is one reaped."""
    import subprocess
    import sys
    import time

    import psutil

    from tasks.lost_runs import pid_alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid) and pid_alive(os.getpid())
