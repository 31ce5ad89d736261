"""The dense stage's per-view work as a nested flow on Dask: a Prefect task run per depth map, and the
geometric and fusion units as plain Dask work on the same workers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

from distributed import as_completed
from prefect import flow
from prefect.context import FlowRunContext
from prefect.states import State

from odm_core.artifacts import read_plan
from odm_core.dense.depthmap import UnitResult, run_unit_after
from odm_core.stages.openmvs import DensePlan
from tasks.openmvs_view import openmvs_view

PHASE_NAMES = {"depth": "depth maps", "geometric": "geometric pass", "fused": "fusion"}
RETRIES = 1


@flow(name="openmvs-views", validate_parameters=False)
def openmvs_views(plan_file: str, progress: Callable[[float, str], None]) -> list[UnitResult]:
    """Submit every unit of the plan (the DensePlan in plan_file) at once, each waiting only for the
    units that write the files it reads.

    Depth maps, the heavy units, are Prefect task runs (`openmvs_view`), visible per photo in the UI. The
    geometric and fusion units take about a fifth of a depth map's time each; as Prefect task runs their
    engine's overhead (an API client, settings and state changes per run) cost as much as their work, so
    they go to the same Dask workers as plain futures, with their own checkpoints all the same.
    """
    plan: DensePlan = read_plan(plan_file)
    context = FlowRunContext.get()
    assert context is not None
    client = context.task_runner.client  # type: ignore[attr-defined]
    writers: dict[str, Any] = {}
    for unit in plan.phases[0]:
        writers[unit.out] = openmvs_view.submit(unit).wrapped_future
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
