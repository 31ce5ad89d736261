"""The pipeline flow: ODM's stages in order, each a checkpointed Prefect task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from odm_core.layout import ProjectTree
from odm_core.options import PipelineOptions
from odm_core.stages import stages_between
from tasks.dataset import dataset
from tasks.odm_report import odm_report
from tasks.opensfm import opensfm


@flow(name="odm-pipeline")
def odm_pipeline(project: str, options: PipelineOptions | None = None) -> dict[str, Any]:
    """Process an ODM project folder (PROJECT/images) up to options.end_with."""
    options = options or PipelineOptions()
    project = str(Path(project).resolve())
    store = ProjectTree(Path(project)).results
    forced = options.forced_stages()
    tasks = {
        "dataset": lambda t: t(project, options.dataset),
        "opensfm": lambda t: t(project, options.opensfm, options.max_concurrency),
        "odm_report": lambda t: t(project, options.odm_report),
    }
    stage_tasks = {"dataset": dataset, "opensfm": opensfm, "odm_report": odm_report}
    results: dict[str, Any] = {}
    for stage in stages_between("dataset", options.end_with):
        task = stage_tasks[stage].with_options(result_storage=store, refresh_cache=stage in forced)
        results[stage] = tasks[stage](task)
    return results
