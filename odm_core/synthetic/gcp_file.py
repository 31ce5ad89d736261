"""The synthetic survey's gcp_list.txt (ODM's format) and truth/gcps.json: each target's true position
and its marks in the photos that see it whole (true projection plus Gaussian noise)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pyproj import Transformer

from odm_core.artifacts import write_json, write_text
from odm_core.geo.georef import GeoReference
from odm_core.synthetic.raycast import visible
from odm_core.synthetic.targets import Target
from odm_core.synthetic.world import SyntheticWorld

EDGE_PX = 4.0  # a mark needs the whole target at least this far inside the frame


def target_marks(world: SyntheticWorld, target: Target) -> list[tuple[str, np.ndarray]]:
    """(photo name, true pixel in COLMAP's convention: top-left pixel centre at (0.5, 0.5)) for every
    photo that sees the target's centre unoccluded and its whole square inside the frame."""
    h = target.half_m
    corners = target.centre + np.array([[-h, -h, 0], [h, -h, 0], [h, h, 0], [-h, h, 0]])
    intr = world.intrinsics
    marks = []
    for pose in world.poses:
        if not visible(world.scene, pose, intr, target.centre[None, :])[0]:
            continue
        pix = intr.project(pose.cam_from_world(np.vstack([target.centre, corners])))
        inside = (pix >= EDGE_PX).all() and (pix[:, 0] <= intr.width - EDGE_PX).all()
        if inside and (pix[:, 1] <= intr.height - EDGE_PX).all():
            marks.append((pose.name, pix[0]))
    return marks


def write_gcp_files(world: SyntheticWorld, gcp_list: Path, truth_json: Path) -> Path:
    """gcp_list.txt in ODM's pixel convention (top-left pixel centre at (0, 0), as OpenSfM reads it) and
    the CRS of `gcp_crs` (default: the survey's UTM zone by name), and the truth beside it."""
    opts = world.opts
    rng = np.random.default_rng([opts.seed, 9])
    zone_name = GeoReference(world.epsg, 0.0, 0.0).zone_name
    crs = opts.gcp_crs or zone_name
    to_crs = Transformer.from_crs(world.epsg, opts.gcp_crs, always_xy=True) if opts.gcp_crs else None
    rows, records = [crs], []
    for target in world.scene.targets:
        utm = world.utm_from_local(target.centre)[0]
        xyz = to_crs.transform(*utm) if to_crs else tuple(utm)
        record: dict[str, Any] = {"name": target.name, "check": target.check, "centre_utm": utm.tolist()}
        record["marks"] = []
        for photo, true_px in target_marks(world, target):
            mark = true_px + rng.normal(0.0, opts.gcp_sigma_px, 2)
            odm_px = mark - 0.5
            coords = f"{xyz[0]:.8f} {xyz[1]:.8f} {xyz[2]:.4f}"
            rows.append(f"{coords} {odm_px[0]:.2f} {odm_px[1]:.2f} {photo} {target.name}")
            record["marks"].append({"photo": photo, "true_px": true_px.tolist(), "marked_px": mark.tolist()})
        records.append(record)
    write_json(
        truth_json, {"crs": crs, "epsg_utm": world.epsg, "pixel_sigma": opts.gcp_sigma_px, "targets": records}
    )
    return write_text(gcp_list, "\n".join(rows) + "\n")
