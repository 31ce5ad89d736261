"""Prefect task of the `mvs_texturing` stage: plan here; the per-photo data terms, each model's view
selection and atlas, the per-page bakes and each model's files on Dask (nested flow
`mvs-texturing-units`), so the two models' serial steps run side by side."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import zip_longest
from pathlib import Path
from typing import TypeVar, cast

from prefect import flow, task
from prefect.futures import PrefectFuture, as_completed, wait

from odm_core.artifacts import read_plan, write_plan
from odm_core.layout import ProjectTree
from odm_core.options import TexturingOptions
from odm_core.stages.mvs_texturing import (
    ModelAtlas,
    ModelFiles,
    ModelJob,
    TexturingPlan,
    TexturingResult,
    finish_model,
    plan_mvs_texturing,
    select_and_pack,
    texturing_result,
)
from odm_core.texturing.bake import PageResult, PageUnit, bake_page
from odm_core.texturing.data_term import DataTermUnit, data_term
from odm_core.worker import peak_rss_mb
from tasks._stage import STAGE_CACHE, run_checkpointed
from tasks.dask_cluster import dask_task_runner


@task(name="mvs_texturing", cache_policy=STAGE_CACHE, persist_result=True)
def mvs_texturing(
    project: str, opts: TexturingOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> TexturingResult:
    """The textured 3D and 2.5D models (OBJ/MTL/PNG, and GLB with --gltf), their units on Dask."""

    def work(tree: ProjectTree, report: Callable[[float, str], None], fp: str) -> TexturingResult:
        plan = plan_mvs_texturing(tree, opts, fp)
        runner = dask_task_runner(dask_address, max_concurrency)
        units = mvs_texturing_units.with_options(task_runner=runner)  # type: ignore[arg-type]  # Dask's
        return units(project, write_plan(tree.plan("mvs_texturing"), plan), report)

    return run_checkpointed(project, opts, work)


@task(name="texturing_data_term", task_run_name="data-term-{unit.view.name}", retries=1)
def texturing_data_term(unit: DataTermUnit) -> tuple[str, float]:
    """One photo's visible faces and their quality; (the unit's file, the worker's peak MiB)."""
    return str(data_term(unit)), peak_rss_mb()


@task(name="texturing_atlas", task_run_name="atlas-{job.model}")
def texturing_atlas(plan: TexturingPlan, job: ModelJob, terms: list[tuple[str, float]]) -> ModelAtlas:
    """One model's view selection and atlas from its data-term files (the page units' files written)."""
    return select_and_pack(plan, job, [Path(path) for path, _ in terms])


@task(name="texturing_bake", task_run_name="bake-page-{unit.page}", retries=1)
def texturing_bake(unit: PageUnit) -> PageResult:
    """One atlas page baked from the photos; reuses its own checkpoint when the key matches."""
    return bake_page(unit)


@task(name="texturing_write", task_run_name="write-{job.model}")
def texturing_write(
    project: str, plan: TexturingPlan, job: ModelJob, packed: ModelAtlas, pages: list[PageResult],
    terms: list[tuple[str, float]],
) -> ModelFiles:  # fmt: skip
    """One model's OBJ/MTL/PNG files (and GLB) from its baked pages."""
    return finish_model(project, plan, job, packed, pages, max(mb for _, mb in terms))


@flow(name="mvs-texturing-units", validate_parameters=False)
def mvs_texturing_units(
    project: str, plan_file: str, progress: Callable[[float, str], None]
) -> TexturingResult:
    """Every model's data-term units at once, each model's selection unit as soon as its data terms are
    done, its pages as soon as its atlas is, then its files (the plan in plan_file)."""
    plan: TexturingPlan = read_plan(plan_file)
    jobs = {job.model: job for job in plan.jobs}
    terms: dict[str, list[PrefectFuture[tuple[str, float]]]] = {job.model: [] for job in plan.jobs}
    for model, unit in _interleaved(plan.jobs):  # the models' data terms end together, so do their atlases
        terms[model].append(texturing_data_term.submit(unit))
    atlases = {m: texturing_atlas.submit(plan, jobs[m], _upstream(f)) for m, f in terms.items()}
    every = [f for futures in terms.values() for f in futures]
    for k, _ in enumerate(as_completed(every), 1):
        progress(0.4 * k / len(every), f"faces each photo sees ({k}/{len(every)})")
    models = {future.task_run_id: model for model, future in atlases.items()}
    writing: dict[str, PrefectFuture[ModelFiles]] = {}
    for k, done in enumerate(as_completed(list(atlases.values()))):
        model = models[done.task_run_id]
        progress(
            0.4 + 0.3 * k / len(atlases), f"photos chosen for the {model} mesh's faces; baking its pages"
        )
        packed: ModelAtlas = done.result()
        pages = [texturing_bake.submit(u) for u in packed.atlas.units]
        writing[model] = texturing_write.submit(
            project, plan, jobs[model], packed, _upstream(pages), _upstream(terms[model])
        )
    for k, _ in enumerate(as_completed(list(writing.values())), 1):
        progress(0.7 + 0.3 * k / len(writing), f"textured models written ({k}/{len(writing)})")
    wait(list(writing.values()))
    return texturing_result([writing[job.model].result() for job in plan.jobs])


T = TypeVar("T")


def _interleaved(jobs: Sequence[ModelJob]) -> list[tuple[str, DataTermUnit]]:
    """(model, unit) of every job's data-term units, taking one of each model's in turn."""
    rounds = zip_longest(*[[(job.model, unit) for unit in job.units] for job in jobs])
    return [pair for batch in rounds for pair in batch if pair is not None]


def _upstream(futures: Sequence[PrefectFuture[T]]) -> list[T]:
    """Futures passed on as a task's argument: Prefect waits for them and passes their results (on Dask
    the dependency stays on the cluster)."""
    return cast(list[T], list(futures))
