"""The pipeline flow: ODM's stages in order, each a checkpointed Prefect task."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import Task, flow
from prefect.runtime import flow_run
from prefect.states import State

from odm_core import checkpoint
from odm_core.layout import ProjectTree
from odm_core.options import PipelineOptions
from odm_core.registry import stages_between
from odm_core.remote.fs import is_remote
from tasks.dask_cluster import run_cluster
from tasks.dataset import dataset
from tasks.odm_dem import odm_dem
from tasks.odm_filterpoints import odm_filterpoints
from tasks.odm_georeferencing import odm_georeferencing
from tasks.odm_orthophoto import odm_orthophoto
from tasks.odm_report import odm_report
from tasks.openmvs import openmvs
from tasks.opensfm import opensfm
from tasks.remote import pull, push
from tasks.run_artifacts import publish_summary, start_progress


@dataclass(frozen=True)
class StageRun:
    """One stage of a run: its result, and whether it came from a checkpoint made before this run."""

    stage: str
    cached: bool
    result: Any
    seconds: float


def _calls(project: str, options: PipelineOptions) -> dict[str, Callable[[Task], State]]:
    """How each stage's task is called: the project and only that stage's options."""
    return {
        "dataset": lambda t: t(project, options.dataset, return_state=True),
        "opensfm": lambda t: t(project, options.opensfm, options.max_concurrency, return_state=True),
        "openmvs": lambda t: t(
            project, options.openmvs, options.dask_address, options.max_concurrency, return_state=True
        ),
        "odm_filterpoints": lambda t: t(project, options.odm_filterpoints, return_state=True),
        "odm_georeferencing": lambda t: t(project, options.odm_georeferencing, return_state=True),
        "odm_dem": lambda t: t(
            project, options.odm_dem, options.dask_address, options.max_concurrency, return_state=True
        ),
        "odm_orthophoto": lambda t: t(
            project, options.odm_orthophoto, options.dask_address, options.max_concurrency, return_state=True
        ),
        "odm_report": lambda t: t(project, options.odm_report, return_state=True),
    }


DASK_STAGES = ("openmvs", "odm_dem", "odm_orthophoto")

STAGE_TASKS: dict[str, Task] = {
    "dataset": dataset,
    "opensfm": opensfm,
    "openmvs": openmvs,
    "odm_filterpoints": odm_filterpoints,
    "odm_georeferencing": odm_georeferencing,
    "odm_dem": odm_dem,
    "odm_orthophoto": odm_orthophoto,
    "odm_report": odm_report,
}


def _link(path: Path, tree: ProjectTree, url: str | None) -> str:
    """Where a user finds an output: its s3:// address for bucket projects, else a file:// URI."""
    return f"{url}/{path.relative_to(tree.root).as_posix()}" if url else path.as_uri()


def _run_name() -> str:
    """Runs are named after the project folder (or bucket prefix) they process."""
    project = str(flow_run.parameters.get("project", "project")).rstrip("/")
    return project.rsplit("/", 1)[-1] or project


@flow(name="odm-pipeline", flow_run_name=_run_name)
def odm_pipeline(project: str, options: PipelineOptions | None = None) -> dict[str, StageRun]:
    """Process an ODM project (a folder with images/, or s3://bucket/prefix) up to options.end_with.

    A bucket project is mirrored onto this machine first and each finished stage is uploaded back,
    checkpoints included, so a run resumed by a worker on another machine continues from there.
    """
    options = options or PipelineOptions()
    url = project if is_remote(project) else None
    project = pull(url) if url else str(Path(project).resolve())
    tree = ProjectTree(Path(project))
    forced = options.forced_stages()
    calls = _calls(project, options)
    started = time.time()
    start_progress(options.end_with)
    runs: dict[str, StageRun] = {}
    stages = stages_between("dataset", options.end_with, options.skipped_stages())
    needs_dask = any(stage in DASK_STAGES for stage in stages)
    with run_cluster(options.dask_address, options.max_concurrency, needs_dask):
        for stage in stages:
            task = STAGE_TASKS[stage].with_options(result_storage=tree.results, refresh_cache=stage in forced)
            start = time.perf_counter()
            state = calls[stage](task)
            result = state.result()
            if url:
                push(url, project, stage)
            cached = checkpoint.finished_at(stage, tree) < started
            runs[stage] = StageRun(stage, cached, result, time.perf_counter() - start)
    links = {name: _link(path, tree, url) for name, path in tree.key_outputs().items()}
    publish_summary(url or project, runs, links)
    return runs
