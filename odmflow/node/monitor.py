"""The node's runtime and its background loop: flow runs mapped onto NodeODM's status, progress, output.

The API answers from the records in memory; this loop keeps them current (every `poll_s`), so `/info`
and `/task/{uuid}/info` cost no Prefect call. Per flow run state:
- Scheduled, Pending, Paused: 10 when the work pool's concurrency limit is reached, else 20 (about to
  start; ODM's split-merge client reads 10 right after a commit as "node full");
- Running: 20, processingTime from the run's start, progress 0.9 x the run's progress artifact;
- Completed: 20 at 93% while all.zip is written, then 40 at 100% once it can be streamed;
- Failed or Crashed: 30 with the state's message; Cancelling or Cancelled: 50.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prefect.client.schemas.objects import FlowRun, StateType

from odmflow.node import guard
from odmflow.node.config import CANCELED, COMPLETED, FAILED, QUEUED, RUNNING, NodeSettings
from odmflow.node.files import Budget
from odmflow.node.packing import build_zip
from odmflow.node.prefect_io import PrefectBridge, last_timestamp
from odmflow.node.records import TaskRecord
from odmflow.node.store import TaskStore
from odmflow.node.webhook import Webhooks, payload

log = logging.getLogger("odmflow.node")
WAITING = (StateType.SCHEDULED, StateType.PENDING, StateType.PAUSED)
POOL_REFRESH_S = 30.0
STALE_UPLOADS_S = 2880 * 60.0  # NodeODM's cleanup of uploads never committed
LATE_LOGS_S = 3.0  # a run's last log lines reach the server after its final state


@dataclass
class Runtime:
    """What the API and the loop share."""

    settings: NodeSettings
    store: TaskStore
    bridge: PrefectBridge
    hooks: Webhooks = field(default_factory=Webhooks)
    pool_limit: int | None = None
    pool_checked: float = 0.0
    pool_running: int = 0  # the work pool's runs running now, and those due and waiting (any submitter)
    pool_waiting: int = 0
    log_since: dict[str, datetime] = field(default_factory=dict)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    budgets: dict[str, Budget] = field(default_factory=dict)  # upload budgets of uncommitted tasks
    guards: dict[str, guard.Guard] = field(default_factory=dict)  # cancelled runs, by id, until settled

    def queue_count(self) -> int:
        """NodeODM's taskQueueCount: the work pool's running and waiting runs, plus this node's tasks
        that are being initialised or packed (no flow run of theirs is active then)."""
        between = sum(1 for r in self.store.records() if r.active and r.phase in ("init", "packing"))
        return self.pool_running + self.pool_waiting + between

    def max_parallel(self) -> int:
        """The work pool's concurrency limit; an unlimited pool counts as the CPU count."""
        return self.pool_limit or os.cpu_count() or 1

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine in the background, referenced until it ends."""
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


async def pull_logs(rt: Runtime, record: TaskRecord) -> None:
    """Append the run's new log entries to the task's console."""
    if not record.flow_run_id:
        return
    uuid = record.uuid
    lines = await rt.bridge.new_logs(record.flow_run_id, rt.store.seen(uuid), rt.log_since.get(uuid))
    if lines and rt.store.get(uuid) is record:
        rt.store.append(uuid, [text for entry in lines for text in entry.lines], [e.id for e in lines])
        if (since := last_timestamp(lines, rt.log_since.get(uuid))) is not None:
            rt.log_since[uuid] = since


def finished(rt: Runtime, record: TaskRecord) -> None:
    """Save a record; call its webhooks once if it just ended."""
    rt.store.save(record)
    if not record.webhook_due:
        return
    record.webhook_due = False
    rt.store.save(record)
    urls = [u for u in (record.webhook, rt.settings.webhook) if u]
    if urls:
        rt.hooks.fire(urls, payload(record.info(), rt.store.paths(record.uuid).root / "images.json"))


async def _late_logs(rt: Runtime, record: TaskRecord) -> None:
    await asyncio.sleep(LATE_LOGS_S)
    with contextlib.suppress(Exception):
        await pull_logs(rt, record)


async def pack(rt: Runtime, record: TaskRecord) -> None:
    """all.zip of a completed run, then the task is complete (or failed, if the zip cannot be written)."""
    await asyncio.sleep(LATE_LOGS_S)
    with contextlib.suppress(Exception):
        await pull_logs(rt, record)
    paths = rt.store.paths(record.uuid)
    rt.store.append(record.uuid, ["[INFO] odmflow node: compressing all.zip"])
    console = rt.store.console(record.uuid)
    try:
        size = await asyncio.to_thread(
            build_zip, paths.root, paths.zip, record.outputs, console, lambda: record.canceled
        )
    except InterruptedError:
        return
    except OSError as err:
        record.end(FAILED, rt.store.relative(record.uuid, f"Could not write all.zip: {err}"))
        finished(rt, record)
        return
    if record.canceled or rt.store.get(record.uuid) is not record:
        return
    record.raise_progress(97.0)
    rt.store.append(record.uuid, [f"[INFO] odmflow node: all.zip ready ({size} bytes)"])
    record.end(COMPLETED)
    finished(rt, record)


def _error_of(run: FlowRun) -> str:
    """The failed run's message on one line (WebODM shows it as the task's error), at most 1000 chars."""
    message = (run.state.message if run.state else None) or ""
    message = message.removeprefix("Flow run encountered an exception: ")
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    return text[:1000] or "Processing failed"


def apply_run(rt: Runtime, record: TaskRecord, run: FlowRun, progress: float | None, free: list[int]) -> None:
    """Map one flow run's state onto its task. `free` counts the pool's free slots (decremented here)."""
    kind = run.state.type if run.state else StateType.SCHEDULED
    if run.start_time is not None and kind != StateType.SCHEDULED:
        record.started_at = record.started_at or run.start_time.timestamp()
    if kind in WAITING:
        record.status = RUNNING if free[0] > 0 else QUEUED
        free[0] -= 1
    elif kind == StateType.RUNNING:
        record.status = RUNNING
        record.raise_progress(0.9 * (progress or 0.0))
    elif kind == StateType.COMPLETED:
        record.phase, record.status = "packing", RUNNING
        record.raise_progress(93.0)
        rt.spawn(pack(rt, record))
    elif kind in (StateType.FAILED, StateType.CRASHED):
        record.end(FAILED, rt.store.relative(record.uuid, _error_of(run)))
        rt.spawn(_late_logs(rt, record))
    elif kind in (StateType.CANCELLING, StateType.CANCELLED):
        record.canceled = True
        record.end(CANCELED)
        rt.spawn(_late_logs(rt, record))
    finished(rt, record)


async def refresh(rt: Runtime) -> None:
    """One pass: the pool's limit (now and then), then every task whose flow run decides its status."""
    if time.monotonic() - rt.pool_checked > POOL_REFRESH_S:
        rt.pool_limit = await rt.bridge.pool_limit()
        rt.pool_checked = time.monotonic()
        for uuid in await asyncio.to_thread(rt.store.drop_stale_uploads, STALE_UPLOADS_S):
            rt.budgets.pop(uuid, None)
            log.info("deleted the uploads of %s: never committed", uuid)
    rt.pool_running, rt.pool_waiting = await rt.bridge.pool_load()
    records = [r for r in rt.store.records() if r.phase == "run" and r.flow_run_id]
    ids = [r.flow_run_id for r in records if r.flow_run_id]
    if not ids and not rt.guards:
        return
    runs = await rt.bridge.read_runs([*ids, *(i for i in rt.guards if i not in ids)])
    await guard.check(rt, runs)
    if not records:
        return
    progress = await rt.bridge.progress(ids)
    free = [rt.pool_limit - rt.pool_running if rt.pool_limit else len(records)]
    for record in records:
        run_id = record.flow_run_id or ""
        if record.phase != "run" or rt.store.get(record.uuid) is not record:
            continue  # cancelled or removed meanwhile
        await pull_logs(rt, record)
        if record.phase != "run" or record.flow_run_id != run_id:
            continue  # cancelled or restarted while the logs were read
        run = runs.get(run_id)
        if run is None:
            record.end(FAILED, "The task's flow run is gone from the Prefect server")
            finished(rt, record)
            continue
        apply_run(rt, record, run, progress.get(run_id), free)


async def monitor_loop(rt: Runtime) -> None:
    """refresh() every poll_s until cancelled; an error is logged (once while it repeats) and the loop
    goes on, so a Prefect server that is away for a while only delays the tasks' updates."""
    last = ""
    while True:
        try:
            await refresh(rt)
            if last:
                log.info("node monitor: the Prefect server answers again")
            last = ""
        except asyncio.CancelledError:
            raise
        except Exception as err:
            text = f"{type(err).__name__}: {err}"
            if text != last:
                log.warning("node monitor: cannot refresh the tasks from Prefect (%s); retrying", text)
            last = text
        await asyncio.sleep(rt.settings.poll_s)
