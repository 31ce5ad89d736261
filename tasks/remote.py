"""Prefect tasks that move a bucket project to a worker's disk and its finished stages back."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import Task, task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from odm_core.errors import OdmInputError
from odm_core.remote.fs import parse_remote, s3_filesystem
from odm_core.remote.submodels import publish_submodels, pull_submodel_products
from odm_core.remote.sync import pull_project, push_stage


def _io_error(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry network trouble, not a bad address or missing credentials."""
    try:
        state.result()
    except OdmInputError:
        return False
    except Exception:
        return True
    return False


def work_dir(url: str) -> Path:
    """Where a worker keeps its copy of a bucket project: $ODMFLOW_WORK_DIR or ~/.odmflow/work."""
    base = Path(os.environ.get("ODMFLOW_WORK_DIR", Path.home() / ".odmflow" / "work"))
    remote = parse_remote(url)
    return base / remote.bucket / (remote.prefix or "_root")


@task(name="pull_project", retries=2, retry_delay_seconds=[5, 20], retry_condition_fn=_io_error)
def pull(url: str) -> str:
    """Check the bucket project and mirror it (photos and earlier checkpoints) onto this machine."""
    return str(pull_project(parse_remote(url), work_dir(url), s3_filesystem()))


@task(name="push_stage", retries=2, retry_delay_seconds=[5, 20], retry_condition_fn=_io_error)
def push(url: str, local: str, stage: str) -> int:
    """Upload a finished stage's outputs, result and manifest (last) to the bucket project."""
    return len(push_stage(parse_remote(url), Path(local), stage, s3_filesystem()))


@task(name="publish_submodels", retries=2, retry_delay_seconds=[5, 20], retry_condition_fn=_io_error)
def publish(url: str, local: str, names: tuple[str, ...]) -> int:
    """Give each submodel of a split bucket project its photos in the bucket (server-side copies), so
    that a worker on any machine can run it from PREFIX/submodels/NAME."""
    return publish_submodels(parse_remote(url), Path(local), names, s3_filesystem())


@task(name="pull_submodels", retries=2, retry_delay_seconds=[5, 20], retry_condition_fn=_io_error)
def pull_products(url: str, local: str, names: tuple[str, ...]) -> int:
    """Download the submodels' products that the merge reads from the bucket to this machine."""
    return pull_submodel_products(parse_remote(url), Path(local), names, s3_filesystem())
