"""The dense stage's units as Dask workers run them: a view's depth map, geometric pass or fusion."""

from __future__ import annotations

import time
from pathlib import Path

from odm_core.artifacts import unit_checkpoint_valid
from odm_core.dense.depthmap import geometric_depthmap, photometric_depthmap
from odm_core.dense.fusion import fuse_view
from odm_core.dense.plan import UnitResult, ViewUnit
from odm_core.worker import peak_rss_mb, prepare_unit


def run_unit(unit: ViewUnit) -> UnitResult:
    """Run (or reuse) one view unit; the function Dask workers execute."""
    start = time.perf_counter()
    out = Path(unit.out)
    if unit_checkpoint_valid(out, unit.key):
        return UnitResult(unit.kind, unit.view.name, True, -1, time.perf_counter() - start, peak_rss_mb())
    prepare_unit()
    out.parent.mkdir(parents=True, exist_ok=True)
    if unit.kind == "depth":
        n = photometric_depthmap(unit)
    elif unit.kind == "geometric":
        n = geometric_depthmap(unit)
    else:
        n = fuse_view(unit)
    return UnitResult(unit.kind, unit.view.name, False, n, time.perf_counter() - start, peak_rss_mb())


def run_unit_after(unit: ViewUnit, *inputs: object) -> UnitResult:
    """run_unit once the units writing its inputs are done: Dask hands their results in (UnitResults, or
    the final states of Prefect task runs, which must have completed)."""
    for done in inputs:
        completed = getattr(done, "is_completed", None)
        if completed is not None and not completed():
            raise RuntimeError(f"{unit.kind} of {unit.view.name}: a unit it reads failed ({done})")
    return run_unit(unit)
