"""Runs on a Prefect server, for the CLI: submit, list, status, logs, cancel, download."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterName,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.client.schemas.sorting import FlowRunSort, LogSort
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL
from prefect.states import Cancelling

from odm_core.errors import OdmInputError

FLOW_NAME = "odm-pipeline"
DEPLOYMENT = f"{FLOW_NAME}/odm-process"
NOT_OUTPUTS = {"images", ".odmflow"}  # what `download` leaves behind


def require_server() -> str:
    """The Prefect API address, or a clear error when none is configured."""
    api = PREFECT_API_URL.value()
    if not api:
        raise OdmInputError(
            "no Prefect server configured: start one with `odmflow server up` and "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    return str(api)


def run_url(run_id: UUID) -> str:
    ui = PREFECT_UI_URL.value() or require_server().removesuffix("/api")
    return f"{ui}/runs/flow-run/{run_id}"


def _client() -> SyncPrefectClient:
    require_server()
    return get_client(sync_client=True)


def submit(project: str, options: dict[str, Any], name: str, deployment: str = DEPLOYMENT) -> FlowRun:
    """Start a run of the odm-process deployment on a project path or s3:// address."""
    with _client() as client:
        try:
            dep = client.read_deployment_by_name(deployment)
        except Exception as err:  # ObjectNotFound, or an unreachable server
            raise OdmInputError(
                f"deployment {deployment} not found on {require_server()} ({type(err).__name__}): "
                "run `odmflow server up`, or `prefect deploy --all` in the odmflow folder"
            ) from None
        return client.create_flow_run_from_deployment(
            dep.id, parameters={"project": project, "options": options}, name=name
        )


def find_run(ref: str) -> FlowRun:
    """A flow run by id, or the newest one with that name."""
    with _client() as client:
        try:
            return client.read_flow_run(UUID(ref))
        except ValueError:
            pass
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[ref])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    if not runs:
        raise OdmInputError(f"no run with id or name {ref!r} on {require_server()} (see `odmflow list`)")
    return runs[0]


def list_runs(limit: int = 20) -> list[FlowRun]:
    """The newest pipeline runs."""
    with _client() as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=limit,
        )


@dataclass(frozen=True)
class RunStatus:
    run: FlowRun
    stages: list[tuple[str, str]]  # (stage, state name) in start order
    progress_percent: float | None


def status(ref: str) -> RunStatus:
    """A run's state, its stage task runs and its progress artifact."""
    run = find_run(ref)
    with _client() as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run.id]}))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    ordered = sorted(tasks, key=_started)
    stages = [(t.name.rsplit("-", 1)[0], (t.state.name if t.state else None) or "?") for t in ordered]
    progress = next((_percent(a.data) for a in artifacts if a.type == "progress"), None)
    return RunStatus(run, stages, progress)


def _started(task: TaskRun) -> datetime:
    """When a task run started (or was due to, or was created): the order `status` lists stages in."""
    return task.start_time or task.expected_start_time or task.created or datetime.min.replace(tzinfo=UTC)


def _percent(data: object) -> float | None:
    """A progress artifact's figure (Prefect stores it as a number), None when it holds none."""
    return float(data) if isinstance(data, int | float | str) else None


def logs(ref: str) -> list[str]:
    """A run's log lines, oldest first."""
    run = find_run(ref)
    with _client() as client:
        entries = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])), sort=LogSort.TIMESTAMP_ASC
        )
    return [f"{e.timestamp:%H:%M:%S} {e.message}" for e in entries]


def cancel(ref: str) -> FlowRun:
    """Ask the run's worker to stop it."""
    run = find_run(ref)
    if run.state and run.state.is_final():
        raise OdmInputError(f"run {run.name} ({run.id}) has already ended: {run.state.name}")
    with _client() as client:
        client.set_flow_run_state(run.id, Cancelling())
    return run


def download(ref: str, dest: Path) -> list[Path]:
    """Copy a finished run's outputs (all but images/ and odmflow's state) into dest."""
    run = find_run(ref)
    project = str(run.parameters.get("project", ""))
    if dest.exists() and any(dest.iterdir()):
        raise OdmInputError(f"{dest} is not empty; give a new or empty folder")
    if project.startswith("s3://"):
        from odm_core.remote.sync import parse_remote, s3_filesystem
        from odm_core.remote.transfer import download_outputs

        return download_outputs(parse_remote(project), dest, s3_filesystem(), exclude=NOT_OUTPUTS)
    src = Path(project)
    if not src.is_dir():
        raise OdmInputError(f"run {run.name} processed {project}, which this machine cannot read")
    copied = []
    for item in sorted(src.iterdir()):
        if item.name in NOT_OUTPUTS:
            continue
        target = dest / item.name
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item, target)
        copied.append(target)
    return copied
