"""Peak memory of a run's processes, per stage: bench_growth.py samples the run's process tree.

Every SAMPLE_S seconds the resident memory (RSS) of the run's process (the flow, which also meshes and
does SfM's matching and mapping) and of each of its descendants (the Dask workers, Prefect's embedded
server) is read with psutil; after the run the samples are cut into the stages' windows (each stage from
the end of the one before to its own manifest's `finished_at`). Sampled RSS can miss a peak shorter than
the interval; the Dask stages' own figures (Linux's VmHWM, reset per stage) are exact and kept beside.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

SAMPLE_S = 0.2
MIB = 2**20


def role_of(proc: psutil.Process, root_pid: int) -> str:
    """'flow' (the run's process), 'dask-worker', 'prefect-server' or 'other', from its command line."""
    if proc.pid == root_pid:
        return "flow"
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return "other"
    if "resource_tracker" in cmd:
        return "other"
    if "spawn_main" in cmd or "forkserver" in cmd or "distributed" in cmd:
        return "dask-worker"
    if "uvicorn" in cmd or "prefect" in cmd:
        return "prefect-server"
    return "other"


@dataclass
class TreeSampler:
    """Samples the RSS of a process and its descendants in a background thread until stopped."""

    root_pid: int
    samples: list[tuple[float, dict[int, float]]] = field(default_factory=list)
    roles: dict[int, str] = field(default_factory=dict)
    commands: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="growth-rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        try:
            root = psutil.Process(self.root_pid)
        except psutil.Error:
            return
        while not self._stop.wait(SAMPLE_S):
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                return  # the run's process has ended
            rss: dict[int, float] = {}
            for proc in procs:
                try:
                    rss[proc.pid] = proc.memory_info().rss / MIB
                except psutil.Error:
                    continue
                if proc.pid not in self.roles:
                    self.roles[proc.pid] = role_of(proc, self.root_pid)
                    self.commands[proc.pid] = _command(proc)
            self.samples.append((time.time(), rss))

    def window_peaks(self, start: float, end: float) -> dict[str, Any]:
        """Largest sampled RSS in [start, end): the flow's, any one Dask worker's, all processes summed."""
        flow = worker = total = 0.0
        workers: set[int] = set()
        n = 0
        for t, rss in self.samples:
            if not start <= t < end:
                continue
            n += 1
            total = max(total, sum(rss.values()))
            for pid, mib in rss.items():
                role = self.roles.get(pid, "other")
                if role == "flow":
                    flow = max(flow, mib)
                elif role == "dask-worker":
                    worker = max(worker, mib)
                    workers.add(pid)
        return {
            "flow_rss_mib": round(flow, 1),
            "worker_rss_mib": round(worker, 1),
            "total_rss_mib": round(total, 1),
            "workers_seen": len(workers),
            "samples": n,
        }

    def processes(self) -> list[dict[str, Any]]:
        """Every process seen: pid, role, its command's start and its largest sampled RSS."""
        peaks: dict[int, float] = {}
        for _, rss in self.samples:
            for pid, mib in rss.items():
                peaks[pid] = max(peaks.get(pid, 0.0), mib)
        return [
            {"pid": pid, "role": role, "command": self.commands.get(pid, ""), "peak_rss_mib": peaks.get(pid)}
            for pid, role in self.roles.items()
        ]


def _command(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:160]
    except psutil.Error:
        return ""


def stage_windows(record: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Each stage's (start, end) in epoch seconds: stages run one after another, each ending when its
    manifest is written; the first starts its own seconds before it ends."""
    windows: dict[str, tuple[float, float]] = {}
    previous: float | None = None
    for name, stage in record["stages"].items():
        end = stage["finished_at"] or (previous or record["run_started_at"]) + stage["seconds"]
        start = previous if previous is not None else end - stage["seconds"]
        windows[name] = (start, end)
        previous = end
    return windows
