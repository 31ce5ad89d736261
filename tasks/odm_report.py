"""Prefect task of the `odm_report` stage."""

from prefect import task

from odm_core.options import ReportOptions
from odm_core.stages.odm_report import ReportResult
from odm_core.stages.odm_report import odm_report as run_report
from tasks._stage import STAGE_CACHE, run_checkpointed


@task(name="odm_report", cache_policy=STAGE_CACHE, persist_result=True)
def odm_report(
    project: str, opts: ReportOptions, dask_address: str | None = None, max_concurrency: int = 1
) -> ReportResult:
    """Camera shots (shots.geojson) and statistics (stats.json)."""
    return run_checkpointed(project, opts, lambda tree, report, _fp: run_report(tree, opts))
