"""Prefect task of the `opensfm` stage: plan here (the COLMAP database), one feature unit per photo on
Dask (nested flow `opensfm-features`), the matching units' pairs planned here and matched on Dask (nested
flow `opensfm-matching`), then mapping and the model files here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from odm_core.artifacts import read_plan, unit_checkpoint_valid, write_plan
from odm_core.layout import ProjectTree
from odm_core.options import OpensfmOptions
from odm_core.sfm.extract import FeatureUnit, extract_features
from odm_core.sfm.match_units import MatchUnit, match_pairs
from odm_core.stages.opensfm import (
    EXTRACTION_SHARE,
    MATCHING_SHARE,
    OpensfmResult,
    finish_opensfm,
    plan_opensfm,
    plan_opensfm_matching,
    seeded_opensfm,
)
from tasks._stage import STAGE_CACHE, run_checkpointed
from tasks.dask_cluster import cluster_threads, dask_task_runner, uses_external_cluster, warm_workers

Progress = Callable[[float, str], None]


@task(name="opensfm", cache_policy=STAGE_CACHE, persist_result=True)
def opensfm(
    project: str, opts: OpensfmOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> OpensfmResult:
    """Structure from motion, georeferenced by GPS priors; ODM's and COLMAP's model files."""

    def work(tree: ProjectTree, report: Progress, fp: str) -> OpensfmResult:
        if opts.model_seed is not None:  # a split-merge submodel: its parent's model
            return seeded_opensfm(tree, opts, opts.model_seed)
        units = plan_opensfm(tree, opts, reuse=True)  # while the run's local cluster may still be starting
        runner = dask_task_runner(dask_address, max_concurrency)
        features = opensfm_features.with_options(task_runner=runner)  # type: ignore[arg-type]  # Dask's
        files = features(write_plan(tree.plan("opensfm"), units), report)
        threads = cluster_threads(dask_address, max_concurrency)
        local = 0 if uses_external_cluster(dask_address) else threads
        pairs = plan_opensfm_matching(tree, opts, files, True, 1, threads, local)  # a unit per thread or more
        matching = opensfm_matching.with_options(task_runner=runner)  # type: ignore[arg-type]  # Dask's
        matches = matching(write_plan(tree.plan("opensfm-matching"), pairs), report)
        warm_workers()  # the later stages' imports, while mapping runs here
        return finish_opensfm(tree, opts, pairs, matches, report)

    return run_checkpointed(project, opts, work)


@task(
    name="opensfm_feature",
    task_run_name="features-{unit.name}",
    retries=1,
    cache_policy=NO_CACHE,  # the unit's own checkpoint decides reuse
    persist_result=False,
)
def opensfm_feature(unit: FeatureUnit) -> str:
    """One photo's SIFT features on a Dask worker; reuses its own checkpoint when the key matches."""
    return str(extract_features(unit))


@task(
    name="opensfm_match",
    task_run_name="matches-{unit.name}",
    retries=1,
    cache_policy=NO_CACHE,  # the unit's own checkpoint decides reuse
    persist_result=False,
)
def opensfm_match(unit: MatchUnit) -> str:
    """One batch of photo pairs matched and verified on a Dask worker; reuses its own checkpoint."""
    return str(match_pairs(unit))


def _gather(futures: list[Any], progress: Progress, start: float, share: float, what: str) -> list[str]:
    """The futures' results in their order, progress reported as each finishes."""
    progress(start, f"{what} (0/{len(futures)})")
    for k, _ in enumerate(as_completed(futures), 1):
        progress(start + share * k / len(futures), f"{what} ({k}/{len(futures)})")
    return [future.result() for future in futures]


def _to_run(units: list[Any], progress: Progress, start: float, what: str) -> list[Any]:
    """The units whose checkpoint is not valid: only those become task runs on the cluster (a rerun for
    a change only the mapping reads sends none); the others are reported as kept."""
    todo = [unit for unit in units if not unit_checkpoint_valid(Path(unit.out), unit.key)]
    if len(todo) < len(units):
        progress(start, f"{what}: {len(units) - len(todo)} of {len(units)} kept from an earlier run")
    return todo


@flow(name="opensfm-features", validate_parameters=False)
def opensfm_features(plan_file: str, progress: Progress) -> dict[str, Path]:
    """Every photo's feature unit at once (the units in plan_file) but those already done; photo name ->
    its features file."""
    units: list[FeatureUnit] = read_plan(plan_file)
    todo = _to_run(units, progress, 0.0, "extracting features")
    futures = [opensfm_feature.submit(unit) for unit in todo]
    _gather(futures, progress, 0.0, EXTRACTION_SHARE, "extracting features, photos")
    return {unit.name: Path(unit.out) for unit in units}


@flow(name="opensfm-matching", validate_parameters=False)
def opensfm_matching(plan_file: str, progress: Progress) -> list[Path]:
    """Every matching unit at once (the units in plan_file) but those already done; their files in the
    same order."""
    units: list[MatchUnit] = read_plan(plan_file)
    todo = _to_run(units, progress, EXTRACTION_SHARE, "matching features")
    futures = [opensfm_match.submit(unit) for unit in todo]
    _gather(futures, progress, EXTRACTION_SHARE, MATCHING_SHARE, "matching features, pair batches")
    return [Path(unit.out) for unit in units]
