"""The node's calls to the Prefect server: one long-lived async client shared by the API and the monitor."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterTimestamp,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import LogSort
from prefect.states import Cancelled, Cancelling

LOG_PAGE = 200
LOG_OVERLAP = timedelta(seconds=60)  # log batches may reach the server late: look back this far, dedupe
LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


@dataclass(frozen=True)
class LogLine:
    """A Prefect log entry as console lines (one per line of its message)."""

    id: str
    timestamp: datetime
    lines: list[str]


class PrefectBridge:
    """Flow runs of the odm-process deployment, their state, progress, logs; the work pool's limit."""

    def __init__(self, api_url: str, deployment: str) -> None:
        self.client = PrefectClient(api_url)
        self.deployment = deployment
        self._deployment: tuple[UUID, str | None] | None = None

    async def __aenter__(self) -> PrefectBridge:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(*exc)

    async def _deployment_ids(self) -> tuple[UUID, str | None]:
        if self._deployment is None:
            dep = await self.client.read_deployment_by_name(self.deployment)
            self._deployment = (dep.id, dep.work_pool_name)
        return self._deployment

    async def pool_name(self) -> str | None:
        return (await self._deployment_ids())[1]

    async def create_run(self, project: str, options: dict[str, Any], uuid: str, name: str) -> str:
        """A new odm-process flow run on the project; its id."""
        dep_id, _ = await self._deployment_ids()
        run = await self.client.create_flow_run_from_deployment(
            dep_id,
            parameters={"project": project, "options": options},
            name=uuid,
            tags=["nodeodm", f"task:{name}"[:100]],
        )
        return str(run.id)

    async def read_runs(self, ids: list[str]) -> dict[str, FlowRun]:
        if not ids:
            return {}
        found = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(i) for i in ids])), limit=len(ids)
        )
        return {str(run.id): run for run in found}

    async def progress(self, ids: list[str]) -> dict[str, float]:
        """The progress artifact (0-100) of each run that has one."""
        if not ids:
            return {}
        artifacts = await self.client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(i) for i in ids]),
                type=ArtifactFilterType(any_=["progress"]),
            )
        )
        found = {}
        for art in artifacts:
            if art.flow_run_id is not None and isinstance(art.data, int | float | str):
                try:
                    found[str(art.flow_run_id)] = float(art.data)
                except ValueError:
                    continue
        return found

    async def new_logs(self, run_id: str, seen: set[str], since: datetime | None) -> list[LogLine]:
        """The run's log entries not in `seen`, oldest first, from a little before `since` on."""
        after = LogFilterTimestamp(after_=since - LOG_OVERLAP) if since else None
        log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run_id)]), timestamp=after)
        out: list[LogLine] = []
        offset = 0
        while True:
            page = await self.client.read_logs(
                log_filter=log_filter, limit=LOG_PAGE, offset=offset, sort=LogSort.TIMESTAMP_ASC
            )
            for entry in page:
                if str(entry.id) not in seen:
                    level = LEVELS.get(entry.level, str(entry.level))
                    lines = [f"[{level}] {line}".rstrip() for line in entry.message.splitlines() or [""]]
                    out.append(LogLine(str(entry.id), entry.timestamp, lines))
            if len(page) < LOG_PAGE:
                return out
            offset += LOG_PAGE

    async def cancel(self, run_id: str) -> None:
        """Stop a run. One no worker has taken yet (Scheduled, Paused, without a process) is Cancelled at
        once; any other goes to Cancelling, which its worker acts on: a run it is still submitting
        (Pending) is not started, or its process group is ended (the flow and its local Dask workers).
        A run forced straight to Cancelled while Pending would still be started by its worker."""
        run = await self.client.read_flow_run(UUID(run_id))
        if run.state is None or run.state.is_final():
            return
        waiting = run.state.is_scheduled() or run.state.is_paused()
        kind = Cancelled if waiting and not run.infrastructure_pid else Cancelling
        await self.client.set_flow_run_state(run.id, kind(message="cancelled by NodeODM"), force=True)

    async def pool_load(self) -> tuple[int, int]:
        """(runs the work pool is running, runs due and waiting in it): its queue, whoever submitted."""
        name = await self.pool_name()
        if not name:
            return 0, 0
        pool = WorkPoolFilter(name=WorkPoolFilterName(any_=[name]))

        async def count(kinds: list[StateType], due: bool = False) -> int:
            state = FlowRunFilterState(type=FlowRunFilterStateType(any_=kinds))
            start = FlowRunFilterExpectedStartTime(before_=datetime.now(UTC)) if due else None
            runs = FlowRunFilter(state=state, expected_start_time=start)
            return await self.client.count_flow_runs(work_pool_filter=pool, flow_run_filter=runs)

        running = await count([StateType.RUNNING, StateType.PENDING, StateType.CANCELLING])
        return running, await count([StateType.SCHEDULED, StateType.PAUSED], due=True)

    async def pool_limit(self) -> int | None:
        """The work pool's concurrency limit (None: unlimited)."""
        name = await self.pool_name()
        if not name:
            return None
        return (await self.client.read_work_pool(name)).concurrency_limit


def last_timestamp(lines: list[LogLine], current: datetime | None) -> datetime | None:
    stamps = [line.timestamp for line in lines]
    if current is not None:
        stamps.append(current)
    return max(stamps) if stamps else None


logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prefect call otherwise
