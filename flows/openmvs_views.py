"""The dense stage's per-view work as a nested flow: each phase maps one task per view over Dask."""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow
from prefect.futures import as_completed

from odm_core.mvs_depthmap import UnitResult
from odm_core.openmvs import DensePlan
from tasks.openmvs_view import openmvs_view

PHASE_NAMES = {"depth": "depth maps", "geometric": "geometric pass", "fused": "fusion"}


@flow(name="openmvs-views", validate_parameters=False)
def openmvs_views(plan: DensePlan, progress: Callable[[float, str], None]) -> list[UnitResult]:
    """Run the plan's phases in order (a phase reads the previous one's files); units within a phase in
    parallel on the flow's task runner."""
    results: list[UnitResult] = []
    for phase in plan.phases:
        name = PHASE_NAMES[phase[0].kind]
        for future in as_completed(openmvs_view.map(list(phase))):
            results.append(future.result())
            progress(len(results) / plan.n_units, f"{name} ({len(results)}/{plan.n_units} view units)")
    return results
