"""The GCPs of the opensfm stage: read from the dataset stage's gcp_list_utm.txt into the model frame,
and what the adjustment found as ODM's figures (stats.json `gcp_errors`, OpenSfM's
stats/ground_control_points.json) plus odmflow's check-point accuracy and the run summary's lines."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from odm_core.geo.gcp import GroundControlPoint, read_gcp_text
from odm_core.geo.georef import GeoReference
from odm_core.photos.photo import Photo
from odm_core.sfm.gcp_adjust import GcpAdjustment, GcpResidual
from odm_core.sfm.gps import gps_errors


def model_gcps(
    gcp_list_utm: Path, georef: GeoReference, photos: list[Photo], checks: str
) -> list[GroundControlPoint]:
    """The GCPs in the model frame (UTM minus coords.txt's offset); `checks`: comma-separated names of
    GCPs used as check points (besides names starting with CHK)."""
    sizes = {p.filename: (p.width, p.height) for p in photos}
    names = frozenset(n.strip() for n in checks.split(",") if n.strip())
    gcps = read_gcp_text(gcp_list_utm.read_text(encoding="utf-8"), gcp_list_utm, sizes, names)
    offset = georef.offset
    return [replace(g, xyz=(g.xyz[0] - offset[0], g.xyz[1] - offset[1], g.xyz[2])) for g in gcps.points]


def errors_of(residuals: list[GcpResidual]) -> dict[str, object]:
    """ODM's error block (mean, std, RMS per axis, their norm) with CE90/LE90, for the given GCPs."""
    if not residuals:
        return {}
    errors = np.array([r.error_m for r in residuals])
    block = gps_errors(errors)
    horizontal, vertical = np.hypot(errors[:, 0], errors[:, 1]), np.abs(errors[:, 2])
    block["ce90"] = float(np.percentile(horizontal, 90))
    block["le90"] = float(np.percentile(vertical, 90))
    block["count"] = len(residuals)
    return block


def stats_of(adjustment: GcpAdjustment) -> dict[str, Any]:
    """stats.json's GCP blocks: `gcp_errors` (controls, ODM), `check_errors` (check points) and each
    GCP's residuals."""
    controls = [r for r in adjustment.residuals if not r.check]
    checks = [r for r in adjustment.residuals if r.check]
    return {
        "gcp_errors": errors_of(controls),
        "check_errors": errors_of(checks),
        "gcp_residuals": {
            r.name: {
                "check": r.check,
                "error_m": list(r.error_m),
                "horizontal_m": float(np.hypot(*r.error_m[:2])),
                "reprojection_px": r.reprojection_px,
                "photos": list(r.photos),
            }
            for r in adjustment.residuals
        },
        "gcp_unused": list(adjustment.unused),
        "gcp_with_gps": adjustment.with_gps,
    }


def opensfm_gcp_json(adjustment: GcpAdjustment) -> list[dict[str, Any]]:
    """OpenSfM's stats/ground_control_points.json: id, measured coordinates (model frame), observations
    and error (measured minus surveyed, metres); plus odmflow's `check` and reprojection."""
    return [
        {
            "id": r.name,
            "coordinates": [s + e for s, e in zip(r.surveyed, r.error_m, strict=True)],
            "observations": [{"shot_id": name} for name in r.photos],
            "error": list(r.error_m),
            "check": r.check,
            "reprojection_px": r.reprojection_px,
        }
        for r in adjustment.residuals
    ]


def summary_lines(adjustment: GcpAdjustment) -> list[str]:
    """The run summary's GCP lines: the controls' fit and the check points' accuracy."""
    lines = []
    for label, check in (("GCPs", False), ("check points", True)):
        block = errors_of([r for r in adjustment.residuals if r.check == check])
        if block:
            rms = block["error"]
            assert isinstance(rms, dict)
            lines.append(
                f"{label}: {block['count']}, RMSE x {rms['x']:.3f} m, y {rms['y']:.3f} m, z {rms['z']:.3f} m"
                + (" (the products' accuracy, measured independently)" if check else "")
            )
    if adjustment.unused:
        lines.append(f"GCPs marked in fewer than 2 registered photos, unused: {', '.join(adjustment.unused)}")
    return lines
