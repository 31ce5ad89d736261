"""Keep the EXIF focal length where the flight's geometry cannot determine it.

Bundle adjustment refines each camera's focal length. Over flat ground seen from one straight line, or
from few photos, focal length and flying height trade off almost freely: the focal can drift by half
(the surface then sits tens of metres off) while the reprojection error barely changes. OpenSfM, ODM's
engine, holds the focal to its EXIF value with a prior (`exif_focal_sd`); COLMAP has none. So when every
camera has an EXIF focal, mapping holds it there (`hold_focal`), and afterwards one bundle adjustment frees
it (`settle_focal`): where the refined focal left EXIF's by more than DRIFT_TOLERANCE and reprojects no
better than ERROR_TOLERANCE, the data do not tell the two apart and EXIF's is kept.

Measured: the 8-photo strip of ../shared/cases reprojects within 0.2% anywhere from 0.8x to 1.5x EXIF;
mapped with the focal free, the mapper's random start decided it (+25% in 6 of 8 runs, +52% with
k1 -0.075 and the ground 20 m lower in 2 of 8, from the same database); held, then freed under the GPS
priors, it goes to +25% for 0.0% less error, so EXIF's is kept (ground 162.3 m; ODM's cloud: 162.3 m).
Brighton's 18 photos: the DJI FC300S refines to 30% above EXIF and fixing it costs 3.6% (the refined one
is kept), the same 18 photos and points as mapping with it free, 0.7347 against 0.7350 px.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pycolmap

from odm_core.sfm.focal_thin import MAX_OBSERVATIONS, adopt, observations, thinned

DRIFT_TOLERANCE = 0.1  # a refined focal this close to EXIF's is kept
MIN_PRIORS = 3  # GPS positions that fix the model's frame in the freeing adjustment
ERROR_TOLERANCE = 0.01  # refining the focal gains less than 1% of reprojection error: it is not determined


def exif_focals(db_path: Path) -> dict[int, float]:
    """Camera id -> the focal length (px) the EXIF gave it (cameras whose focal was only guessed: absent)."""
    with pycolmap.Database.open(db_path) as db:
        return {
            c.camera_id: float(c.mean_focal_length())
            for c in db.read_all_cameras()
            if c.has_prior_focal_length
        }


def hold_focal(db_path: Path) -> bool:
    """Whether mapping should hold the focal lengths at EXIF's: every camera has one (a guessed focal
    must be refined from the start)."""
    with pycolmap.Database.open(db_path) as db:
        cameras = db.read_all_cameras()
    return bool(cameras) and all(c.has_prior_focal_length for c in cameras)


def free_focal(rec: pycolmap.Reconstruction, db_path: Path) -> None:
    """Adjust the model once more, in place, with the focal lengths free, under the database's GPS
    position priors when it has three or more (without them a bundle adjustment moves the whole model:
    3.3 m from the GPS on the synthetic survey, against 0.43 m with them)."""
    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    with pycolmap.Database.open(db_path) as db:
        pose_priors = db.read_all_pose_priors()
    if len(pose_priors) < MIN_PRIORS:
        pycolmap.bundle_adjustment(rec, options)
        return
    config = pycolmap.BundleAdjustmentConfig()
    for image_id in rec.reg_image_ids():
        config.add_image(image_id)
    prior_options = pycolmap.PosePriorBundleAdjustmentOptions()
    adjuster = pycolmap.create_pose_prior_bundle_adjuster(options, prior_options, config, pose_priors, rec)
    adjuster.solve()
    rec.update_point_3d_errors()


def settle_focal(
    held: pycolmap.Reconstruction, db_path: Path, max_observations: int = MAX_OBSERVATIONS
) -> tuple[pycolmap.Reconstruction, str | None]:
    """From a model mapped with the focal held at EXIF's: the model to keep (the focal refined by one
    bundle adjustment, or the held one) and a note for the user when EXIF's focal was kept against a
    drift the reprojection error does not support. `held` is adjusted in place; while the adjustment runs
    its held state waits on disk (beside the database), not as a second copy in memory (135 MiB at 300
    photos). A model of more than `max_observations` is decided on a thinned copy (focal_thin.py)."""
    priors = exif_focals(db_path)
    if observations(held) > max_observations:
        copy = thinned(held)
        held_px = float(copy.compute_mean_reprojection_error())
        free_focal(copy, db_path)
        note = _exif_note(priors, copy, held_px)
        if note is None:
            adopt(held, copy)
        return held, note
    held_px = float(held.compute_mean_reprojection_error())
    with tempfile.TemporaryDirectory(prefix=".held-", suffix=".part", dir=db_path.parent) as saved:
        held.write(saved)
        free_focal(held, db_path)
        note = _exif_note(priors, held, held_px)
        return (held, None) if note is None else (pycolmap.Reconstruction(saved), note)


def _exif_note(priors: dict[int, float], refined: pycolmap.Reconstruction, held_px: float) -> str | None:
    """None when the refined focal is to be kept (near EXIF's, or reprojecting clearly better than the
    held model's `held_px`); else the note saying EXIF's was kept."""
    drifts = {
        cid: refined.cameras[cid].mean_focal_length() / focal - 1.0
        for cid, focal in priors.items()
        if cid in refined.cameras
    }
    if not drifts or max(abs(d) for d in drifts.values()) <= DRIFT_TOLERANCE:
        return None
    refined_px = float(refined.compute_mean_reprojection_error())
    cost = held_px / refined_px - 1.0 if refined_px > 0 else 0.0
    if cost > ERROR_TOLERANCE:
        return None
    worst = max(drifts.values(), key=abs)
    return (
        f"bundle adjustment would move the focal length {100 * worst:+.0f}% from the EXIF value, yet "
        f"keeping it there raises the reprojection error by only {100 * max(cost, 0.0):.1f}%: the flight's "
        "geometry (one line, flat ground, few photos) does not determine it, so the EXIF focal length "
        "was kept"
    )
