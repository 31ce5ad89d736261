"""The dense stage's per-view work as a nested flow: one task per view and phase, spread over Dask."""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow
from prefect.futures import PrefectFuture, as_completed

from odm_core.mvs_depthmap import UnitResult
from odm_core.openmvs import DensePlan
from tasks.openmvs_view import openmvs_view

PHASE_NAMES = {"depth": "depth maps", "geometric": "geometric pass", "fused": "fusion"}


@flow(name="openmvs-views", validate_parameters=False)
def openmvs_views(plan: DensePlan, progress: Callable[[float, str], None]) -> list[UnitResult]:
    """Submit every unit at once, each waiting only for the units that write the files it reads (its own
    and its neighbours' depth maps), so no phase waits for the slowest view of the one before."""
    writers: dict[str, PrefectFuture[UnitResult]] = {}
    for phase in plan.phases:
        for unit in phase:
            waits = [writers[path] for path in unit.sources if path in writers]
            writers[unit.out] = openmvs_view.submit(unit, wait_for=waits)
    results: list[UnitResult] = []
    for future in as_completed(list(writers.values())):
        results.append(future.result())
        kind = PHASE_NAMES[results[-1].kind]
        progress(len(results) / plan.n_units, f"{kind} of {results[-1].view} ({len(results)}/{plan.n_units})")
    return results
