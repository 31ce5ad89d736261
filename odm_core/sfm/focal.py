"""Keep the EXIF focal length where the flight's geometry cannot determine it.

Bundle adjustment refines each camera's focal length. Over flat ground seen from one straight line, or
from few photos, focal length and flying height trade off almost freely: the focal can drift by half
(the surface then sits tens of metres off) while the reprojection error barely changes. OpenSfM, ODM's
engine, holds the focal to its EXIF value with a prior (`exif_focal_sd`); COLMAP has none, so after
mapping we test it: where the refined focal left the EXIF value by more than DRIFT_TOLERANCE (EXIF focal
lengths are seldom that far off: Brighton's DJI FC300S refines to 25% above its EXIF value, a collapse on
one flight line to 45% below), the model is adjusted again with the focal fixed at EXIF's, and that one
is kept when it reprojects within ERROR_TOLERANCE of the refined one: the data do not tell the two apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pycolmap

DRIFT_TOLERANCE = 1 / 3  # a refined focal this close to EXIF's is left alone
ERROR_TOLERANCE = 0.01  # fixing the focal costs less than 1% of reprojection error: it is not determined


def exif_focals(db_path: Path) -> dict[int, float]:
    """Camera id -> the focal length (px) the EXIF gave it (cameras whose focal was only guessed: absent)."""
    with pycolmap.Database.open(db_path) as db:
        return {
            c.camera_id: float(c.mean_focal_length())
            for c in db.read_all_cameras()
            if c.has_prior_focal_length
        }


def settle_focal(rec: pycolmap.Reconstruction, db_path: Path) -> tuple[pycolmap.Reconstruction, str | None]:
    """The reconstruction to keep, and a note for the user when the EXIF focal replaced the refined one."""
    priors = exif_focals(db_path)
    drifts = {
        cid: rec.cameras[cid].mean_focal_length() / focal - 1.0
        for cid, focal in priors.items()
        if cid in rec.cameras
    }
    if not drifts or max(abs(d) for d in drifts.values()) <= DRIFT_TOLERANCE:
        return rec, None
    refined_px = float(rec.compute_mean_reprojection_error())
    fixed = pycolmap.Reconstruction(rec)
    for cid in drifts:
        camera = fixed.cameras[cid]
        params = np.array(camera.params)
        params[list(camera.focal_length_idxs())] = priors[cid]
        camera.params = params.tolist()
    options = pycolmap.BundleAdjustmentOptions()
    options.refine_focal_length = False
    options.print_summary = False
    pycolmap.bundle_adjustment(fixed, options)
    fixed_px = float(fixed.compute_mean_reprojection_error())
    cost = fixed_px / refined_px - 1.0 if refined_px > 0 else 0.0
    if cost > ERROR_TOLERANCE:
        return rec, None
    worst = max(drifts.values(), key=abs)
    note = (
        f"bundle adjustment moved the focal length {100 * worst:+.0f}% from the EXIF value, yet fixing it "
        f"there changes the reprojection error by only {100 * cost:+.1f}%: the flight's geometry (one line, "
        "flat ground, few photos) does not determine it, so the EXIF focal length was kept"
    )
    return fixed, note
