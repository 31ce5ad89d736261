"""What every stage task shares: the content-keyed cache policy, checkpoint runs and progress logging."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prefect.cache_policies import CacheKeyFnPolicy
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from odm_core import checkpoint
from odm_core.artifacts import DigestCache
from odm_core.layout import ProjectTree
from odm_core.options import StageOptions
from odm_core.registry import stage_of_options
from tasks.run_artifacts import update_progress

R = TypeVar("R", bound=checkpoint.StageResult)
PROGRESS_LOGGER = "odmflow.progress"


def stage_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """The stage's fingerprint; its cached result is dropped when the outputs on disk are not intact.

    Results live in the project's own store (ProjectTree.results), so a result whose stage outputs were
    deleted, edited or half-written is removed here and the stage runs again under the same key.
    """
    tree = ProjectTree(Path(parameters["project"]))
    stage = stage_of_options(parameters["opts"]).name
    cache = DigestCache(tree.digest_cache)
    fp = checkpoint.fingerprint(stage, tree, parameters["opts"], cache)
    key = f"{stage}-{fp}"
    if not checkpoint.is_complete(stage, tree, fp, cache):
        (tree.results / key).unlink(missing_ok=True)
    cache.save()
    return key


STAGE_CACHE = CacheKeyFnPolicy(cache_key_fn=stage_cache_key)


def run_checkpointed(
    project: str,
    opts: StageOptions,
    work: Callable[[ProjectTree, Callable[[float, str], None], str], R],
) -> R:
    """Run a stage's core function, with progress lines, and record its manifest under this fingerprint.

    The stage is the one whose options model `opts` is (odm_core.registry). `work(tree, report,
    fingerprint)` gets the fingerprint too, to key checkpoints of its own units.
    """
    stage = stage_of_options(opts).name
    tree = ProjectTree(Path(project))
    cache = DigestCache(tree.digest_cache)
    fp = checkpoint.fingerprint(stage, tree, opts, cache)
    cache.save()
    report = progress_reporter(stage, _submodel_of(project))
    result = checkpoint.run_stage(stage, tree, fp, lambda: work(tree, report, fp))
    report(1.0, "done")
    return result


def _submodel_of(project: str) -> str | None:
    """The submodel whose stage this is when its pipeline runs nested in a split run's flow (its folder's
    name, e.g. submodel_0000), else None."""
    ctx = FlowRunContext.get()
    nested = ctx is not None and ctx.flow_run is not None and ctx.flow_run.parent_task_run_id is not None
    return Path(project).name if nested else None


def progress_reporter(
    stage: str, submodel: str | None = None, min_interval_s: float = 1.0
) -> Callable[[float, str], None]:
    """A progress callback that logs 'stage: NN% message' lines (the CLI's display reads them too, with
    the submodel they are for when they come from a submodel's pipeline nested in a split run)."""
    logger = get_run_logger()
    run_id = str(flow_run.get_id())  # the pipeline's run, also when reported from a nested flow
    side = logging.getLogger(PROGRESS_LOGGER)
    last_s, last_message = [0.0], [""]

    def report(fraction: float, message: str) -> None:
        now = time.monotonic()
        side.info(message, extra={"odm_stage": stage, "odm_fraction": fraction, "odm_submodel": submodel})
        update_progress(stage, fraction, run_id)
        if message != last_message[0] and now - last_s[0] >= min_interval_s:
            logger.info("%s: %3.0f%% %s", stage, 100 * fraction, message)
            last_s[0], last_message[0] = now, message

    return report
