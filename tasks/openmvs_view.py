"""Prefect task of one view's unit of dense work (a depth map, its geometric pass, or its fusion)."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from odm_core.dense.depthmap import UnitResult, ViewUnit, run_unit


@task(
    name="openmvs_view",
    task_run_name="{unit.kind}-{unit.view.name}",
    retries=1,
    cache_policy=NO_CACHE,  # the unit's own checkpoint decides reuse; hashing its inputs cost engine time
    persist_result=False,
)
def openmvs_view(unit: ViewUnit) -> UnitResult:
    """Run one view's unit on a Dask worker; it reuses its own checkpoint when the key matches."""
    return run_unit(unit)
