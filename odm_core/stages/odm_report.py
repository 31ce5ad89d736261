"""The `odm_report` stage: ODM's shots.geojson, stats.json and the quality report report.pdf.

The report gathers the figures the stages wrote (`odm_core.report`); like ODM with --skip-report, the
camera shots and stats are written even when the PDF is skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from odm_core import __version__
from odm_core.artifacts import write_json
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options import ReportOptions
from odm_core.report.gather import gather
from odm_core.report.pdf import write_report
from odm_core.report.shots import shots_geojson
from odm_core.sfm.reconstruction import average_gsd_cm
from odm_core.worker import MapUnits, serial_map


@dataclass(frozen=True)
class ReportResult:
    """Counts and output files of the report stage."""

    n_shots: int
    average_gsd_cm: float | None
    report_pages: int  # 0 with --skip-report
    outputs: tuple[Path, ...]

    def summary(self) -> list[str]:
        """The run summary's lines for this stage."""
        gsd = f"average GSD {self.average_gsd_cm:.2f} cm" if self.average_gsd_cm is not None else ""
        pdf = f"report.pdf, {self.report_pages} pages" if self.report_pages else ""
        parts = [part for part in (gsd, pdf) if part]
        return [f"odm_report: {'; '.join(parts)}"] if parts else []


def odm_report(tree: ProjectTree, opts: ReportOptions) -> ReportResult:
    """Write odm_report/shots.geojson (when georeferenced) and odm_report/stats.json."""
    recon = json.loads(tree.reconstruction_json.read_text())[0]
    georef = GeoReference.read(tree.coords_txt) if "reference_lla" in recon else None
    outputs: list[Path] = []
    if georef is not None:
        outputs.append(write_json(tree.shots_geojson, shots_geojson(recon, georef)))
    elif tree.shots_geojson.exists():
        tree.shots_geojson.unlink()  # shots of an earlier georeferenced run no longer apply
    gsd_cm = average_gsd_cm(recon) if georef is not None else None
    stats = json.loads(tree.opensfm_stats.read_text())
    stats["odm_processing_statistics"] = {"odmflow_version": __version__, "average_gsd": gsd_cm}
    if tree.filtered_point_cloud_stats.exists():
        cloud = json.loads(tree.filtered_point_cloud_stats.read_text())
        stats["point_cloud_statistics"] = {
            "points": cloud["count"],
            "spacing": cloud["spacing"],
            "dense": bool(cloud.get("dense", False)),
        }
    outputs.append(write_json(tree.report_stats, stats))
    pages = 0
    if opts.skip_report:
        tree.report_pdf.unlink(missing_ok=True)
    else:
        pages = write_report(gather(tree, stats, georef.epsg if georef else None), tree.report_pdf)
        outputs.append(tree.report_pdf)
    return ReportResult(len(recon["shots"]), gsd_cm, pages, tuple(outputs))


def run(
    tree: ProjectTree, opts: ReportOptions, key: str = "", map_units: MapUnits = serial_map
) -> ReportResult:
    """The stage in one process (what tests, benchmarks and scripts call; `key` and `map_units` serve
    the stages that fan out units, this one has none)."""
    return odm_report(tree, opts)
