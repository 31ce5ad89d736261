"""Process groups of a node on Linux: which are alive (from /proc), and stopping them."""

from __future__ import annotations

import os
import signal
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Proc:
    """One started process; its pid is also its process group id."""

    name: str
    pid: int
    start_ticks: int | None  # from /proc/PID/stat: tells our process from a later one with the same pid
    log: str

    def running(self) -> list[int]:
        """Live pids of this process's group: [] once they are all gone."""
        stat = proc_stat(self.pid)
        if stat and self.start_ticks is not None and stat[2] != self.start_ticks:
            return []  # pid reused, so our group had emptied: pids are not reused while a group lives
        return _members(self.pid)


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in ticks) of pid, or None if there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2]), int(fields[19])


def _members(pgid: int) -> list[int]:
    """Pids of the non-zombie processes in process group pgid (Linux /proc)."""
    pids = (int(d) for d in os.listdir("/proc") if d.isdigit())
    return [pid for pid in pids if (s := proc_stat(pid)) and s[1] == pgid and s[0] not in "ZX"]


def _reap(pid: int) -> None:
    """Collect pid's exit status if it is our own child (a zombie otherwise counts as a process)."""
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _wait_gone(groups: list[int], timeout_s: float) -> bool:
    """Wait until no live process is left in the groups; reap the leaders that are our children."""
    deadline = time.monotonic() + timeout_s
    while True:
        for pgid in groups:
            _reap(pgid)
        if not any(_members(g) for g in groups):
            for pgid in groups:  # a leader may have exited after the reap above: collect it now
                _reap(pgid)
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def stop_processes(procs: list[Proc], grace_s: float = 15.0) -> list[Proc]:
    """SIGTERM each running process group, SIGKILL what is left after grace_s; return those signalled."""
    live = [p for p in procs if p.running()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in live:
            with suppress(ProcessLookupError):
                os.killpg(p.pid, sig)
        if _wait_gone([p.pid for p in live], grace_s if sig == signal.SIGTERM else 5.0):
            break
    return live
