"""What a run shows in Prefect's UI besides its task runs: progress, a summary and stage timings."""

from __future__ import annotations

import threading
import time
from typing import Any, cast
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.runtime import flow_run

from odm_core.registry import overall_percent

# The progress artifact of each flow run in this process: flow run id -> (artifact id, last stage).
_PROGRESS: dict[str, tuple[UUID, str]] = {}
_SPLIT_RUNS: set[str] = set()  # runs whose survey was split (odm_core.registry.overall_percent)
_LAST_UPDATE: dict[str, float] = {}
_LOCK = threading.Lock()
MIN_UPDATE_INTERVAL_S = 2.0


def start_progress(end_with: str) -> None:
    """Create the run's progress artifact (0%), updated by the stage tasks as they report."""
    # Prefect's async_dispatch types the result "UUID or coroutine"; called from sync code it is the UUID.
    artifact_id = cast(
        UUID, create_progress_artifact(0.0, description="odmflow: progress of the whole run (%)")
    )
    with _LOCK:
        _PROGRESS[str(flow_run.get_id())] = (artifact_id, end_with)


def update_progress(stage: str, fraction: float, run_id: str | None = None) -> None:
    """Move the progress artifact of the run (this one unless named; throttled; always at a stage's end)."""
    run_id = run_id or str(flow_run.get_id())
    with _LOCK:
        entry = _PROGRESS.get(run_id)
        now = time.monotonic()
        if entry is None or (fraction < 1.0 and now - _LAST_UPDATE.get(run_id, 0.0) < MIN_UPDATE_INTERVAL_S):
            return
        _LAST_UPDATE[run_id] = now
    artifact_id, end_with = entry
    update_progress_artifact(artifact_id, overall_percent(stage, fraction, end_with, run_id in _SPLIT_RUNS))


def mark_split_run() -> None:
    """From now on this run's progress counts the submodels' work inside its split stage."""
    with _LOCK:
        _SPLIT_RUNS.add(str(flow_run.get_id()))


def publish_summary(project: str, runs: dict[str, Any], links: dict[str, str]) -> None:
    """A markdown summary (photos, accuracy, GSD, outputs) and a table of stage timings."""
    create_markdown_artifact(
        summary_markdown(project, runs, links), key="odm-summary", description=f"odmflow summary of {project}"
    )
    create_table_artifact(
        [
            {
                "stage": stage,
                "state": "checkpoint" if run.cached else "ran",
                "seconds": round(run.seconds, 1),
            }
            for stage, run in runs.items()
        ],
        key="odm-stage-timings",
        description="Wall time of each stage in this run",
    )
    if (sfm := _result(runs, "opensfm")) and sfm.rms_errors:
        create_table_artifact(
            [
                {"against": kind, **{f"rms_{k}_m": v for k, v in rms.items()}}
                for kind, rms in sfm.rms_errors.items()
            ],
            key="odm-accuracy",
            description="RMS errors of the model against the photos' GPS, the GCPs and the check points (m)",
        )
    with _LOCK:
        _PROGRESS.pop(str(flow_run.get_id()), None)


def summary_markdown(project: str, runs: dict[str, Any], links: dict[str, str]) -> str:
    """The summary's markdown: what was used, how well it registered, where the outputs are."""
    lines = [f"# odmflow: {project}", ""]
    if ds := _result(runs, "dataset"):
        lines.append(f"- **Photos used**: {ds.n_photos} ({len(ds.skipped)} skipped)")
        lines += [f"  - skipped `{s.filename}`: {s.reason}" for s in ds.skipped]
    if sfm := _result(runs, "opensfm"):
        lines.append(
            f"- **Registered**: {sfm.n_registered} of {sfm.n_photos} photos, {sfm.n_points} sparse points"
        )
        lines.append(f"- **Mean reprojection error**: {sfm.mean_reprojection_error_px:.3f} px")
        if sfm.gps_rms_horizontal_m is not None:
            lines.append(f"- **Camera centres vs GPS**: {sfm.gps_rms_horizontal_m:.2f} m RMS (horizontal)")
        if sfm.unregistered:
            lines.append(f"- **Not registered**: {', '.join(sfm.unregistered)}")
        lines += [f"- {line}" for line in (*sfm.gcp_lines, *sfm.notes)]
    if mvs := _result(runs, "openmvs"):
        lines.append(
            f"- **Dense cloud**: {mvs.n_points} points from {mvs.n_views} depth maps "
            f"({mvs.depthmap_width}x{mvs.depthmap_height} px); worker peak memory "
            f"{mvs.worker_peak_rss_mb:.0f} MiB"
        )
    if mesh := _result(runs, "odm_meshing"):
        lines += [f"- **Mesh**: {line.partition(': ')[2]}" for line in mesh.summary()]
    if tex := _result(runs, "mvs_texturing"):
        lines += [f"- **Textured model**: {m.line().partition(': ')[2]}" for m in tex.models]
    if geo := _result(runs, "odm_georeferencing"):
        lines.append(f"- **Georeferenced cloud**: {geo.n_points} points (EPSG:{geo.epsg})")
    if (report := _result(runs, "odm_report")) and report.average_gsd_cm is not None:
        lines.append(f"- **Average GSD**: {report.average_gsd_cm:.2f} cm/px")
    if report and report.report_pages:
        lines.append(f"- **Quality report**: odm_report/report.pdf, {report.report_pages} pages")
    if links:
        lines += ["", "## Outputs", ""] + [f"- [{name}]({url})" for name, url in links.items()]
    return "\n".join(lines) + "\n"


def _result(runs: dict[str, Any], stage: str) -> Any:
    run = runs.get(stage)
    return run.result if run is not None else None
