"""Prefect task of the `opensfm` stage: plan here (the COLMAP database), one feature unit per photo on
Dask (nested flow `opensfm-features`), then matching, mapping and the model files here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from odm_core.artifacts import read_plan, write_plan
from odm_core.layout import ProjectTree
from odm_core.options import OpensfmOptions
from odm_core.sfm.extract import FeatureUnit, extract_features
from odm_core.stages.opensfm import OpensfmResult, finish_opensfm, plan_opensfm
from tasks._stage import STAGE_CACHE, run_checkpointed
from tasks.dask_cluster import dask_task_runner

EXTRACTION_SHARE = 0.4  # of the stage's progress


@task(name="opensfm", cache_policy=STAGE_CACHE, persist_result=True)
def opensfm(
    project: str, opts: OpensfmOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> OpensfmResult:
    """Structure from motion, georeferenced by GPS priors; ODM's and COLMAP's model files."""

    def work(tree: ProjectTree, report: Callable[[float, str], None], fp: str) -> OpensfmResult:
        units = plan_opensfm(tree, opts, fp)
        runner = dask_task_runner(dask_address, max_concurrency)
        features = opensfm_features.with_options(task_runner=runner)  # type: ignore[arg-type]  # Dask's
        files = features(write_plan(tree.plan("opensfm"), units), report)
        return finish_opensfm(tree, opts, files, max_concurrency, report)

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


@flow(name="opensfm-features", validate_parameters=False)
def opensfm_features(plan_file: str, progress: Callable[[float, str], None]) -> dict[str, Path]:
    """Every photo's feature unit at once (the units in plan_file); photo name -> its features file."""
    units: list[FeatureUnit] = read_plan(plan_file)
    futures = {unit.name: opensfm_feature.submit(unit) for unit in units}
    progress(0.0, f"extracting features (0/{len(units)} photos)")
    for k, _ in enumerate(as_completed(list(futures.values())), 1):
        progress(EXTRACTION_SHARE * k / len(units), f"extracting features ({k}/{len(units)} photos)")
    return {name: Path(future.result()) for name, future in futures.items()}
