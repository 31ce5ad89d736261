"""The pipeline flow: ODM's stages in order, each a checkpointed Prefect task."""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import Task, flow
from prefect.runtime import flow_run
from prefect.states import State

from flows.submodels import run_submodels
from odm_core import checkpoint
from odm_core.layout import ProjectTree
from odm_core.options import PipelineOptions
from odm_core.outputs import key_outputs
from odm_core.registry import SPECS, STAGE_SPECS, STAGES, stages_between
from odm_core.remote.cluster import connect
from odm_core.remote.fs import is_remote
from tasks.dask_cluster import run_cluster
from tasks.lost_runs import exit_with_worker
from tasks.remote import pull, push
from tasks.run_artifacts import publish_summary, start_progress


def _load_task(spec: str) -> Task:
    """The Prefect task a registry entry names ("module:attribute"); fails at import when it is missing."""
    module, _, name = spec.partition(":")
    found = getattr(importlib.import_module(module), name, None)
    if not isinstance(found, Task):
        raise ImportError(f"registry names the task {spec}, which is not a Prefect task")
    return found


STAGE_TASKS: dict[str, Task] = {spec.name: _load_task(spec.task) for spec in STAGE_SPECS}
# In a split survey the merge stage writes the products; the parent then stops, as ODM's does.
SPLIT_REPLACES = frozenset(STAGES[STAGES.index("merge") + 1 :])


@dataclass(frozen=True)
class StageRun:
    """One stage of a run: its result, and whether it came from a checkpoint made before this run."""

    stage: str
    cached: bool
    result: Any
    seconds: float


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
    exit_with_worker()
    if options.split.sm_cluster:  # checked as the run starts, as ODM does, not after hours of opensfm
        connect(options.split.sm_cluster)
    url = project if is_remote(project) else None
    project = pull(url) if url else str(Path(project).resolve())
    tree = ProjectTree(Path(project))
    forced = options.forced_stages()
    started = time.time()
    start_progress(options.end_with)
    runs: dict[str, StageRun] = {}
    stages = stages_between("dataset", options.end_with, options.skipped_stages())
    replaced: frozenset[str] = frozenset()
    with run_cluster(options.dask_address, options.max_concurrency, any(SPECS[s].dask for s in stages)):
        for stage in stages:
            if stage in replaced:
                continue
            task = STAGE_TASKS[stage].with_options(result_storage=tree.results, refresh_cache=stage in forced)
            start = time.perf_counter()
            opts = options.stage_options(stage, tree.image_groups_txt.is_file())  # each its own options
            state = task(project, opts, options.dask_address, options.max_concurrency, return_state=True)
            assert isinstance(state, State)  # a sync task called with return_state gives its final state
            result = state.result()
            if url:
                push(url, project, stage)
            if stage == "split" and result.submodels:  # the submodels make what the later stages would
                run_submodels(
                    odm_pipeline,
                    tree,
                    result.submodels,
                    url,
                    options.split.sm_cluster,
                    options.submodel_rerun(),
                )
                replaced = SPLIT_REPLACES
                forced |= {"merge"} if options.submodel_rerun() else set()  # they made their products again
            cached = checkpoint.finished_at(stage, tree) < started
            runs[stage] = StageRun(stage, cached, result, time.perf_counter() - start)
    links = {name: _link(path, tree, url) for name, path in key_outputs(tree).items()}
    publish_summary(url or project, runs, links)
    return runs
