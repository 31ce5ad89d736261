"""Ground control and the model's statistics: the adjustment to GCPs, the GCP blocks of stats.json, the
reconstruction statistics of ODM's stats.json and the RMS errors the run summary shows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pycolmap

from odm_core.artifacts import write_json
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options import OpensfmOptions
from odm_core.photos.photo import Photo
from odm_core.sfm import gcp_stats
from odm_core.sfm.align import Alignment
from odm_core.sfm.gcp_adjust import GcpAdjustment, adjust_to_gcps
from odm_core.sfm.gps import gps_local_m

Progress = Callable[[float, str], None]


def ground_control(
    tree: ProjectTree,
    rec: pycolmap.Reconstruction,
    photos: list[Photo],
    georef: GeoReference | None,
    opts: OpensfmOptions,
    alignment: Alignment,
    refine_intrinsics: bool,
    progress: Progress,
) -> tuple[Alignment, GcpAdjustment | None]:
    """The model adjusted to the dataset stage's GCPs when there are some; the alignment says how the
    model was georeferenced (GCPs, or the photos' GPS alone)."""
    if georef is None or not tree.gcp_list_utm.is_file():
        if alignment.georeferenced:
            alignment = replace(alignment, notes=alignment.notes + (gps_only_note(photos),))
        return alignment, None
    progress(0.9, "adjusting to the ground control points")
    adjustment = adjust_model_to_gcps(tree, rec, photos, georef, opts, refine_intrinsics)
    alignment = replace(
        alignment, georeferenced=True, frame="gcp", heights="gcp", scale_from="gcp",
        notes=alignment.notes + adjustment.notes,
    )  # fmt: skip
    return alignment, adjustment


def write_gcp_stats(
    tree: ProjectTree, adjustment: GcpAdjustment | None, stats: dict[str, object], outputs: list[Path]
) -> tuple[str, ...]:
    """The GCP blocks of stats.json and OpenSfM's ground_control_points.json; the summary's lines."""
    if adjustment is None:
        tree.gcp_stats.unlink(missing_ok=True)
        return ()
    stats.update(gcp_stats.stats_of(adjustment))
    stats["reconstruction_statistics"]["has_gcp"] = True  # type: ignore[index]
    outputs.append(write_json(tree.gcp_stats, gcp_stats.opensfm_gcp_json(adjustment)))
    return tuple(gcp_stats.summary_lines(adjustment))


def rms_errors(stats: dict[str, object]) -> dict[str, dict[str, float | None]]:
    """RMS error per axis of each kind of reference stats.json measured the model against."""
    kinds = (("GPS", "gps_errors"), ("GCPs", "gcp_errors"), ("check points", "check_errors"))
    out = {}
    for label, key in kinds:
        block = stats.get(key)
        if isinstance(block, dict) and isinstance(block.get("error"), dict):
            out[label] = {axis: block["error"].get(axis) for axis in ("x", "y", "z")}
    return out


def gps_only_note(photos: list[Photo]) -> str:
    accuracy = float(np.median([p.gps_xy_stddev or 3.0 for p in photos if p.has_gps]))
    return (
        f"georeferenced by the photos' GPS alone: the products' absolute position is as good as that GPS "
        f"(given as {accuracy:g} m) and any bias it has is in them; no GCP or check point measured it"
    )


def adjust_model_to_gcps(
    tree: ProjectTree,
    rec: pycolmap.Reconstruction,
    photos: list[Photo],
    georef: GeoReference,
    opts: OpensfmOptions,
    refine_intrinsics: bool,
) -> GcpAdjustment:
    """Place and adjust the model on the dataset stage's GCPs (gcp_list_utm.txt)."""
    gcps = gcp_stats.model_gcps(tree.gcp_list_utm, georef, photos, opts.gcp_checks)
    sigma = {p.filename: (p.gps_xy_stddev or 3.0, p.gps_z_stddev or 3.0) for p in photos}
    return adjust_to_gcps(
        rec, gcps, gps_local_m(photos, georef), sigma, opts.gcp_accuracy, opts.force_gps, refine_intrinsics
    )


def reconstruction_stats(
    rec: pycolmap.Reconstruction, photos: list[Photo], errors: dict[str, object], alignment: Alignment
) -> dict[str, object]:
    """The reconstruction part of ODM's stats.json, and how the model was aligned."""
    return {
        "reconstruction_statistics": {
            "initial_shots_count": len(photos),
            "reconstructed_shots_count": rec.num_reg_images(),
            "reconstructed_points_count": rec.num_points3D(),
            "components": 1,
            "has_gps": alignment.georeferenced,
            "has_gcp": False,
            "reprojection_error_pixels": float(rec.compute_mean_reprojection_error()),
            "average_track_length": float(rec.compute_mean_track_length()),
        },
        "gps_errors": errors,
        "alignment": alignment.to_json(),
        "photos_without_altitude": sorted(p.filename for p in photos if p.has_gps and p.altitude is None),
    }
