"""Prefect task of the `mvs_texturing` stage: plan here, the per-photo data terms and the per-page bakes
on Dask (nested flow `mvs-texturing-units`), view selection, atlas and files here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect import flow, task
from prefect.futures import as_completed, wait

from odm_core.artifacts import read_plan, write_plan
from odm_core.layout import ProjectTree
from odm_core.options import TexturingOptions
from odm_core.stages.mvs_texturing import (
    ModelFigures,
    TexturingPlan,
    TexturingResult,
    finish_model,
    plan_mvs_texturing,
    select_and_pack,
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
    """The textured 3D and 2.5D models (OBJ/MTL/PNG, and GLB with --gltf), photo and page units on Dask."""

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


@task(name="texturing_bake", task_run_name="bake-page-{unit.page}", retries=1)
def texturing_bake(unit: PageUnit) -> PageResult:
    """One atlas page baked from the photos; reuses its own checkpoint when the key matches."""
    return bake_page(unit)


@flow(name="mvs-texturing-units", validate_parameters=False)
def mvs_texturing_units(
    project: str, plan_file: str, progress: Callable[[float, str], None]
) -> TexturingResult:
    """Every model's data-term units at once; per model, selection and atlas here, then its pages on the
    workers (baking while the next model is selected); then each model's files (the plan in plan_file)."""
    tree = ProjectTree(Path(project))
    plan: TexturingPlan = read_plan(plan_file)
    terms = {job.model: [texturing_data_term.submit(u) for u in job.units] for job in plan.jobs}
    every = [f for futures in terms.values() for f in futures]
    for k, _ in enumerate(as_completed(every), 1):
        progress(0.4 * k / len(every), f"faces each photo sees ({k}/{len(every)})")
    baking = []  # a model's pages bake on the workers while the next model's photos are chosen here
    for i, job in enumerate(plan.jobs):
        wait(terms[job.model])
        done = [f.result() for f in terms[job.model]]
        progress(0.4 + 0.3 * i / len(plan.jobs), f"choosing a photo per face of the {job.model} mesh")
        selection, atlas = select_and_pack(plan, job, [Path(path) for path, _ in done])
        pages = [texturing_bake.submit(u) for u in atlas.units]
        baking.append((job, selection, atlas, pages, max(mb for _, mb in done)))
    figures: list[ModelFigures] = []
    outputs: list[Path] = []
    for job, selection, atlas, pages, term_peak_mb in baking:
        wait(pages)
        progress(0.7 + 0.3 * len(figures) / len(plan.jobs), f"writing the {job.model} model")
        model, files = finish_model(
            tree, plan, job, selection, atlas, [p.result() for p in pages], term_peak_mb
        )
        figures.append(model)
        outputs += files
    return TexturingResult(tuple(figures), tuple(outputs))
