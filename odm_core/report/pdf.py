"""odm_report/report.pdf with ODM's sections, laid out with fpdf2 (the PDF library OpenSfM's report uses)
from the gathered figures and the plots drawn for them.

Sections (ODM's report, opensfm/report.py): dataset summary; processing summary; GPS and GCP /
check-point errors; features and matches; reconstruction details; camera models with residual heat maps;
survey overlap; orthophoto, DSM and DTM previews.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from fpdf import FPDF

from odm_core import __version__
from odm_core.artifacts import atomic_path
from odm_core.report import plots
from odm_core.report.gather import ReportData

PAGE_W = 190.0  # usable width of an A4 page, mm


class _Report(FPDF):
    def header(self) -> None:
        self.set_font("Helvetica", "I", 8)
        self.cell(0, 6, f"odmflow {__version__} quality report", align="R", new_x="LMARGIN", new_y="NEXT")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", "I", 8)
        self.cell(0, 6, f"page {self.page_no()}", align="C")

    def section(self, title: str, room_mm: float = 90.0) -> None:
        """A heading, on a new page when less than `room_mm` is left on this one."""
        if self.get_y() > self.h - self.b_margin - room_mm:
            self.add_page()
        self.set_font("Helvetica", "B", 14)
        self.cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
        self.set_font("Helvetica", "", 9)

    def grid(
        self, rows: Sequence[Sequence[str]], widths: Sequence[float] | None = None, head: bool = True
    ) -> None:
        """A table; the first row is its heading unless `head` is False (a key-value table)."""
        with self.table(col_widths=widths, text_align="LEFT", first_row_as_headings=head) as grid:
            for row in rows:
                cells = grid.row()
                for value in row:
                    cells.cell(value)
        self.ln(3)

    def note(self, text: str) -> None:
        self.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def figure(self, path: Path, width: float = PAGE_W) -> None:
        self.image(str(path), w=width)
        self.ln(2)


def write_report(data: ReportData, out: Path) -> int:
    """Draw the plots in a temporary folder and write the PDF atomically to `out`; returns its pages."""
    with tempfile.TemporaryDirectory(prefix="odm_report_") as tmp:
        pdf = _Report(format="A4")
        pdf.set_auto_page_break(True, margin=15)
        pdf.add_page()
        for section in (
            _dataset,
            _processing,
            _errors,
            _features,
            _reconstruction,
            _cameras,
            _overlap,
            _previews,
        ):
            section(pdf, data, Path(tmp))
        with atomic_path(out) as staging:
            pdf.output(str(staging))
    return pdf.page_no()


def _fmt(value: Any, digits: int = 3, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def _when(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _dataset(pdf: _Report, data: ReportData, tmp: Path) -> None:
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 12, f"Quality report: {data.project}", new_x="LMARGIN", new_y="NEXT")
    pdf.section("Dataset summary")
    cameras = sorted(
        {f"{p.get('camera_make') or '?'} {p.get('camera_model') or '?'}".strip() for p in data.photos}
    )
    times = sorted(t for p in data.photos if (t := p.get("utc_time")))
    with_gps = sum(1 for p in data.photos if p.get("latitude") is not None)
    rows = [
        ["Photos", str(len(data.photos))],
        ["Cameras", ", ".join(cameras)],
        ["Photos with GPS", f"{with_gps} of {len(data.photos)}"],
        ["Captured (UTC)", f"{_when(times[0])} to {_when(times[-1])}" if times else "-"],
        ["Coordinate system", data.crs or "none: a local frame, not georeferenced"],
    ]
    pdf.grid(rows, (50, 140), head=False)


def _processing(pdf: _Report, data: ReportData, tmp: Path) -> None:
    pdf.section("Processing summary")
    rec, processing = data.reconstruction, data.stats.get("odm_processing_statistics", {})
    overlap = data.stats.get("overlap", {})
    alignment = data.stats.get("alignment", {})
    georef = {"gcp": "ground control points", "gps": "GPS", "levelled": "GPS, levelled from the photos"}
    rows = [
        [
            "Photos registered",
            f"{rec.get('reconstructed_shots_count', 0)} of {rec.get('initial_shots_count', 0)}",
        ],
        ["Average GSD", _fmt(processing.get("average_gsd"), 2, " cm")],
        [
            "Area seen by 2+ photos",
            _fmt(overlap.get("area_2plus_m2", 0.0) / 1e4, 3, " ha") if overlap else "-",
        ],
        ["Georeferenced by", georef.get(alignment.get("frame", ""), "not georeferenced (local frame)")],
        ["Dense points", _fmt(data.stats.get("point_cloud_statistics", {}).get("points"))],
    ]
    pdf.grid(rows, (60, 130), head=False)
    total = sum(data.stage_seconds.values())
    timing = [["Stage", "Run time (s)"], *[[s, f"{t:.1f}"] for s, t in data.stage_seconds.items()]]
    pdf.grid([*timing, ["total", f"{total:.1f}"]], (60, 40))
    for note in alignment.get("notes", []):
        pdf.note(f"Note: {note}")


def _error_rows(block: dict[str, Any]) -> list[list[str]]:
    mean, std, rms = block.get("mean", {}), block.get("std", {}), block.get("error", {})
    rows = [["", "x (m)", "y (m)", "z (m)"]]
    for label, values in (("mean", mean), ("sigma", std), ("RMS error", rms)):
        rows.append([label, *(_fmt(values.get(axis)) for axis in ("x", "y", "z"))])
    return rows


def _errors(pdf: _Report, data: ReportData, tmp: Path) -> None:
    pdf.section("GPS and ground control errors")
    gps = data.stats.get("gps_errors") or {}
    if gps:
        pdf.note("Camera centres against the photos' GPS positions:")
        pdf.grid(_error_rows(gps), (40, 40, 40, 40))
        residuals = {k: v for k, v in data.stats.get("gps_residuals", {}).items() if v[0] is not None}
        if residuals:
            pdf.figure(plots.error_vectors(residuals, "GPS", tmp / "gps.png"))
    if not data.has_gcp:
        pdf.note(
            "No ground control point or check point measured this project: its absolute position is as good "
            "as the photos' GPS, and any bias that GPS has is in every product."
        )
        return
    kinds = (
        ("Ground control points (constraints)", "gcp_errors"),
        ("Check points (never constraints: the products' accuracy)", "check_errors"),
    )
    for label, key in kinds:
        block = data.stats.get(key) or {}
        if not block:
            continue
        ce90, le90 = _fmt(block.get("ce90")), _fmt(block.get("le90"))
        pdf.note(f"{label}: {block.get('count', 0)}; CE90 {ce90} m, LE90 {le90} m")
        pdf.grid(_error_rows(block), (40, 40, 40, 40))
    per_gcp = data.stats["gcp_residuals"]
    rows = [["GCP", "kind", "photos", "x (m)", "y (m)", "z (m)", "reprojection (px)"]]
    for name, r in per_gcp.items():
        err = r["error_m"]
        kind = "check" if r["check"] else "control"
        rows.append(
            [name, kind, str(len(r["photos"])), *(_fmt(e) for e in err), _fmt(r["reprojection_px"], 2)]
        )
    pdf.grid(rows, (30, 22, 18, 26, 26, 26, 42))
    pdf.figure(plots.error_vectors({n: r["error_m"] for n, r in per_gcp.items()}, "GCPs", tmp / "gcp.png"))


def _features(pdf: _Report, data: ReportData, tmp: Path) -> None:
    pdf.section("Features and matches")
    feats = data.stats.get("features_statistics", {})
    rows = [["", "min", "max", "mean", "median"]]
    for label, key in (
        ("detected per photo", "detected_features"),
        ("in the reconstruction", "reconstructed_features"),
    ):
        block = feats.get(key, {})
        rows.append([label, *(_fmt(block.get(k), 0) for k in ("min", "max", "mean", "median"))])
    pdf.grid(rows, (50, 30, 30, 30, 30))
    if data.stats.get("photo_statistics"):
        pdf.figure(plots.per_photo(data.stats["photo_statistics"], tmp / "features.png"))


def _reconstruction(pdf: _Report, data: ReportData, tmp: Path) -> None:
    pdf.section("Reconstruction details")
    rec = data.reconstruction
    rows = [
        ["Tie points", _fmt(rec.get("reconstructed_points_count"))],
        ["Average track length", _fmt(rec.get("average_track_length"), 2, " photos")],
        ["Mean reprojection error", _fmt(rec.get("reprojection_error_pixels"), 3, " px")],
    ]
    pdf.grid(rows, (60, 60), head=False)
    if data.stats.get("track_length_histogram"):
        pdf.figure(plots.track_lengths(data.stats["track_length_histogram"], tmp / "tracks.png"), 150)


def _cameras(pdf: _Report, data: ReportData, tmp: Path) -> None:
    pdf.section("Camera models")
    for camera_id, grid in data.stats.get("camera_residuals", {}).items():
        pdf.note(f"Camera {camera_id}: {grid['camera']}; mean reprojection residual over the image")
        pdf.figure(plots.residual_heatmap(grid, tmp / f"residuals_{camera_id}.png"), 120)


def _overlap(pdf: _Report, data: ReportData, tmp: Path) -> None:
    overlap = data.stats.get("overlap")
    if not overlap:
        return
    pdf.section("Survey overlap")
    pdf.note("Photos seeing each ground cell (footprints at the tie points' median height).")
    pdf.figure(plots.overlap_map(overlap, tmp / "overlap.png"), 150)


def _previews(pdf: _Report, data: ReportData, tmp: Path) -> None:
    for kind, raster in data.rasters.items():
        pdf.add_page()
        pdf.section(
            {"orthophoto": "Orthophoto", "dsm": "Digital surface model", "dtm": "Digital terrain model"}[kind]
        )
        pdf.figure(plots.raster_preview(raster, kind, tmp / f"{kind}.png"), 180)
