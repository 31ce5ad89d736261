"""Flow runs the node cancelled, watched until they are over for good.

Prefect lets a cancelled run leave its Cancelled state: a run cancelled while its worker was submitting it
(Pending) still starts, and its engine moves it Cancelled -> Running and on to the end. So a cancelled
run is watched: whenever it is found active again it is cancelled again (Cancelling: the worker ends its
process group), until it has stayed final for `settle_s`. The folder of a task removed meanwhile is
deleted only then, so nothing the run was still writing is left behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prefect.client.schemas.objects import FlowRun, StateType

if TYPE_CHECKING:
    from odmflow.node.monitor import Runtime

log = logging.getLogger("odmflow.node")
GUARD_MAX_S = 3600.0  # a run still not final after this long is left alone (its worker is gone)


@dataclass
class Guard:
    """One cancelled run of task `uuid`; `purge`: the task was removed, delete its folder at the end."""

    uuid: str
    purge: bool = False
    since: float = field(default_factory=time.monotonic)
    final_since: float | None = None


def watch(rt: Runtime, run_id: str, uuid: str, purge: bool = False) -> None:
    """Keep run_id cancelled until it has settled (and then delete the task's folder if `purge`)."""
    guard = rt.guards.setdefault(run_id, Guard(uuid))
    guard.purge = guard.purge or purge


def purge_when_settled(rt: Runtime, uuid: str) -> bool:
    """Mark the task's watched runs so that its folder goes once they settle; whether there was one."""
    found = [g for g in rt.guards.values() if g.uuid == uuid]
    for guard in found:
        guard.purge = True
    return bool(found)


async def check(rt: Runtime, runs: dict[str, FlowRun]) -> None:
    """One pass over the watched runs (their states in `runs`): cancel again, or let go once settled."""
    now = time.monotonic()
    for run_id, guard in list(rt.guards.items()):
        run = runs.get(run_id)
        state = run.state if run is not None else None
        active = run is not None and (state is None or not state.is_final())
        if active and now - guard.since < GUARD_MAX_S:
            guard.final_since = None
            if state is None or state.type != StateType.CANCELLING:
                kind = state.type.value if state else "without a state"
                log.warning("task %s: cancelled run %s is %s again; cancelling it", guard.uuid, run_id, kind)
                try:
                    await rt.bridge.cancel(run_id)
                except Exception as err:  # the server is busy or away: next pass
                    log.warning("task %s: cancelling flow run %s failed: %s", guard.uuid, run_id, err)
            continue
        guard.final_since = guard.final_since or now
        if run is None or now - guard.final_since >= rt.settings.settle_s or now - guard.since >= GUARD_MAX_S:
            del rt.guards[run_id]
            if guard.purge and not any(g.uuid == guard.uuid for g in rt.guards.values()):
                await asyncio.to_thread(rt.store.purge, guard.uuid)
