"""Prefect task of the `merge` stage: the submodels' products merged here, raster blocks on Dask (nested
flows `merge-blocks`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from odm_core.layout import ProjectTree
from odm_core.options_split import MergeOptions
from odm_core.stages.merge import MergeResult
from odm_core.stages.merge import merge as run_merge
from tasks._stage import STAGE_CACHE, run_checkpointed
from tasks.dask_cluster import dask_task_runner


@task(name="merge", cache_policy=STAGE_CACHE, persist_result=True)
def merge(
    project: str, opts: MergeOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> MergeResult:
    """The submodels' point clouds, orthophotos, DEMs, shots and cameras merged into the project's."""

    def work(tree: ProjectTree, report: Callable[[float, str], None], _fp: str) -> MergeResult:
        runner = dask_task_runner(dask_address, max_concurrency)
        blocks = merge_blocks.with_options(task_runner=runner)  # type: ignore[arg-type]  # Dask's

        def map_units(fn: Callable[[Any], Any], units: Iterable[Any]) -> list[Any]:
            listed = list(units)
            return blocks(fn, listed) if listed else []

        return run_merge(tree, opts, report, map_units)

    return run_checkpointed(project, opts, work)


@task(
    name="merge_block",
    task_run_name="block-{k}",
    retries=1,
    cache_policy=NO_CACHE,  # blocks are cheap to redo; the stage's checkpoint decides reuse
    persist_result=False,
)
def merge_block(fn: Callable[[Any], Any], unit: Any, k: int) -> Any:
    """One block of a merged raster on a Dask worker."""
    return fn(unit)


@flow(name="merge-blocks", validate_parameters=False)
def merge_blocks(fn: Callable[[Any], Any], units: list[Any]) -> list[Any]:
    """Every block unit at once; their results in order."""
    futures = [merge_block.submit(fn, unit, k) for k, unit in enumerate(units)]
    return [future.result() for future in futures]
