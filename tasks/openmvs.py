"""Prefect task of the `openmvs` stage: plan here, per-view units on Dask (nested flow `openmvs-views`),
gather here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

from distributed import as_completed
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.states import State

from odm_core.artifacts import read_plan, write_plan
from odm_core.dense.plan import UnitResult, ViewUnit
from odm_core.dense.units import run_unit, run_unit_after
from odm_core.layout import ProjectTree
from odm_core.options import OpenmvsOptions
from odm_core.stages.openmvs import DensePlan, OpenmvsResult, finish_openmvs, plan_openmvs
from tasks._stage import STAGE_CACHE, run_checkpointed
from tasks.dask_cluster import dask_task_runner

PHASE_NAMES = {"depth": "depth maps", "geometric": "geometric pass", "fused": "fusion"}
RETRIES = 1


@task(name="openmvs", cache_policy=STAGE_CACHE, persist_result=True)
def openmvs(
    project: str, opts: OpenmvsOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> OpenmvsResult:
    """Dense point cloud: a depth map per view (on Dask workers), geometric pass, fusion."""

    def work(tree: ProjectTree, report: Callable[[float, str], None], fp: str) -> OpenmvsResult:
        plan = plan_openmvs(tree, opts, fp)
        runner = dask_task_runner(dask_address, max_concurrency)
        views = openmvs_views.with_options(task_runner=runner)  # type: ignore[arg-type]  # a DaskTaskRunner
        return finish_openmvs(tree, plan, views(write_plan(tree.plan("openmvs"), plan), report))

    return run_checkpointed(project, opts, work)


@task(
    name="openmvs_view",
    task_run_name="{unit.kind}-{unit.view.name}",
    retries=RETRIES,
    cache_policy=NO_CACHE,  # the unit's own checkpoint decides reuse; hashing its inputs cost engine time
    persist_result=False,
)
def openmvs_view(unit: ViewUnit) -> UnitResult:
    """Run one view's unit on a Dask worker; it reuses its own checkpoint when the key matches."""
    return run_unit(unit)


@flow(name="openmvs-views", validate_parameters=False)
def openmvs_views(plan_file: str, progress: Callable[[float, str], None]) -> list[UnitResult]:
    """Submit every unit of the plan (the DensePlan in plan_file) at once, each waiting only for the
    units that write the files it reads.

    Depth maps, the heavy units, are Prefect task runs (`openmvs_view`), visible per photo in the UI. The
    geometric and fusion units take about a fifth of a depth map's time each; as Prefect task runs their
    engine's overhead (an API client, settings and state changes per run) would cost as much as their
    work, so they go to the same Dask workers as plain futures, with their own checkpoints all the same.
    """
    plan: DensePlan = read_plan(plan_file)
    context = FlowRunContext.get()
    assert context is not None
    client = context.task_runner.client  # type: ignore[attr-defined]
    writers: dict[str, Any] = {}
    for unit in plan.phases[0]:
        writers[unit.out] = openmvs_view.submit(unit).wrapped_future  # type: ignore[attr-defined]
    for phase in plan.phases[1:]:
        for unit in phase:
            inputs = [writers[path] for path in unit.sources if path in writers]
            key = f"openmvs-{unit.kind}-{unit.view.name}-{uuid4().hex}"
            writers[unit.out] = client.submit(
                run_unit_after, unit, *inputs, key=key, pure=False, retries=RETRIES
            )
    results: list[UnitResult] = []
    for future in as_completed(list(writers.values()), loop=client.loop):
        done = future.result()
        result = done.result() if isinstance(done, State) else done
        results.append(result)
        kind = PHASE_NAMES[result.kind]
        progress(len(results) / plan.n_units, f"{kind} of {result.view} ({len(results)}/{plan.n_units})")
    return results
