"""Put a reconstruction the right way up and where its GPS says, or say why it cannot be.

After mapping, the model's frame comes from COLMAP's alignment to the GPS priors. That frame is kept when
its vertical agrees with what the photos record about their attitude (`orientation.estimate_down`);
otherwise (positions on a line leave the roll about it free, drifting altitudes tilt the model, no GPS
leaves any frame) the model is levelled from the photos' attitude, then placed horizontally by a robust
similarity to the GPS positions and vertically by the GPS altitudes' robust offset. The levelling follows
OpenSfM's `align_reconstruction_orientation_prior_similarity` (opensfm/align.py, ODM's engine).

Without usable GPS the model stays in a local frame: levelled, centred on the cameras, the ground's median
at height 0, and scaled so the cameras fly at the DJI relative altitude the photos record, or at
NOMINAL_HEIGHT_M when none does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import pycolmap

from odm_core.errors import OdmStageError
from odm_core.geo.georef import GeoReference
from odm_core.photos.photo import Photo
from odm_core.sfm.gps import gps_local_m
from odm_core.sfm.orientation import DownEstimate, estimate_down, levelling_rotation, tilt_deg
from odm_core.sfm.similarity import robust_similarity_2d, weighted_median

log = logging.getLogger(__name__)

MIN_GPS_PHOTOS = 3  # registered photos with a position needed to georeference the model
MIN_GPS_SPAN_M = 1.0  # ... spanning at least this far apart horizontally
AGREEMENT_FLOOR_DEG = 2.0  # GPS and attitude verticals this close agree whatever their uncertainty
NOMINAL_HEIGHT_M = 100.0  # flying height assumed for the scale of a model without GPS or relative altitude
MAX_VIEW_ERROR_DEG = 20.0  # median view direction this far from the recorded/assumed attitude: wrong model


@dataclass(frozen=True)
class Alignment:
    """How the model was placed, for the stage's summary and stats.json."""

    georeferenced: bool
    frame: str  # "gps": COLMAP's GPS frame kept; "levelled": levelled from attitudes, then GPS; "local"
    heights: str  # "gps", "gps-offset" (levelled, GPS altitudes give only the height) or "ground" (0 m)
    scale_from: str  # "gps", "relative-altitude" or "nominal"
    gps_vs_attitude_deg: float | None  # vertical disagreement found before levelling
    n_gps: int  # registered photos placed against their GPS
    view_error_deg: float  # median angle between each camera's down and the recorded/assumed one
    notes: tuple[str, ...]  # what the user must be told (warnings)

    def to_json(self) -> dict[str, object]:
        return {
            "georeferenced": self.georeferenced,
            "frame": self.frame,
            "heights": self.heights,
            "scale_from": self.scale_from,
            "gps_vs_attitude_deg": self.gps_vs_attitude_deg,
            "gps_photos": self.n_gps,
            "view_error_deg": self.view_error_deg,
            "notes": list(self.notes),
        }


def align(
    rec: pycolmap.Reconstruction, photos: list[Photo], georef: GeoReference | None, used_priors: bool
) -> Alignment:
    """Transform `rec` in place (metres, the project's UTM minus coords.txt's offset, or a local frame).

    Raises OdmStageError when the photos' attitudes contradict each other so much that no vertical can be
    trusted, or the result still has cameras looking away from their recorded attitude.
    """
    down = estimate_down(rec, photos)
    if down is None:
        raise OdmStageError("structure from motion registered no photo; nothing to align")
    gps = _registered_gps(rec, photos, georef)
    usable = georef is not None and _usable(gps)
    notes: list[str] = []
    disagreement = tilt_deg(down.direction) if used_priors and usable else None
    if disagreement is not None and disagreement <= max(AGREEMENT_FLOOR_DEG, 3.0 * down.sigma_deg):
        result = Alignment(True, "gps", "gps", "gps", disagreement, len(gps), 0.0, ())
    else:
        if disagreement is not None:
            notes.append(_disagreement_note(disagreement, down))
        rec.transform(
            pycolmap.Sim3d(1.0, pycolmap.Rotation3d(levelling_rotation(down.direction)), np.zeros(3))
        )
        if usable:
            heights = _place_on_gps(rec, gps)
            result = Alignment(True, "levelled", heights, "gps", disagreement, len(gps), 0.0, ())
        else:
            scale_from = _place_locally(rec, photos)
            notes.append(_local_note(georef, len(gps), scale_from))
            result = Alignment(False, "local", "ground", scale_from, None, 0, 0.0, ())
    view_error = _check(rec, photos)
    return replace(result, view_error_deg=view_error, notes=tuple(notes))


# --- GPS ----------------------------------------------------------------------------------------


def _registered_gps(
    rec: pycolmap.Reconstruction, photos: list[Photo], georef: GeoReference | None
) -> dict[str, np.ndarray]:
    """Image name -> GPS position in the model frame (z NaN without altitude), registered photos only."""
    if georef is None:
        return {}
    local = gps_local_m(photos, georef)
    return {im.name: local[im.name] for im in rec.images.values() if im.has_pose and im.name in local}


def _usable(gps: dict[str, np.ndarray]) -> bool:
    if len(gps) < MIN_GPS_PHOTOS:
        return False
    xy = np.array([g[:2] for g in gps.values()])
    return float(np.max(np.linalg.norm(xy - xy.mean(axis=0), axis=1))) * 2 >= MIN_GPS_SPAN_M


def _place_on_gps(rec: pycolmap.Reconstruction, gps: dict[str, np.ndarray]) -> str:
    """Yaw, scale and horizontal position from a robust 2D similarity, height from the GPS altitudes'
    robust offset (or the ground's median at 0 without altitudes); returns how the heights were set."""
    names = list(gps)
    centres = np.array([_centre(rec, n) for n in names])
    target = np.array([gps[n] for n in names])
    fit = robust_similarity_2d(centres[:, :2], target[:, :2])
    rotation = np.eye(3)
    rotation[:2, :2] = fit.rotation
    scaled_z = fit.scale * centres[:, 2]
    has_alt = np.isfinite(target[:, 2])
    if has_alt.any():
        tz, heights = (
            weighted_median(target[has_alt, 2] - scaled_z[has_alt], fit.weights[has_alt]),
            "gps-offset",
        )
    else:
        tz, heights = -fit.scale * _ground_z(rec), "ground"
    translation = np.array([fit.translation[0], fit.translation[1], tz])
    rec.transform(pycolmap.Sim3d(fit.scale, pycolmap.Rotation3d(rotation), translation))
    return heights


# --- local frame --------------------------------------------------------------------------------


def _place_locally(rec: pycolmap.Reconstruction, photos: list[Photo]) -> str:
    """Centre the cameras at (0, 0), the ground at 0 m, and scale by the photos' relative altitude."""
    names = [im.name for im in rec.images.values() if im.has_pose]
    centres = np.array([_centre(rec, n) for n in names])
    ground = _ground_z(rec)
    height = float(np.median(centres[:, 2])) - ground
    relative = [p.relative_altitude for p in photos if p.filename in set(names) and p.relative_altitude]
    target, scale_from = (
        (float(np.median(relative)), "relative-altitude") if relative else (NOMINAL_HEIGHT_M, "nominal")
    )
    scale = target / height if height > 0 else 1.0
    mid = centres.mean(axis=0)
    translation = -scale * np.array([mid[0], mid[1], ground])
    rec.transform(pycolmap.Sim3d(scale, pycolmap.Rotation3d(np.eye(3)), translation))
    return scale_from


# --- checks and helpers -------------------------------------------------------------------------


def _check(rec: pycolmap.Reconstruction, photos: list[Photo]) -> float:
    """Median angle of the cameras' down to their recorded/assumed one; raise when the model is wrong."""
    down = estimate_down(rec, photos)
    assert down is not None
    view_error = tilt_deg(down.direction)
    centres_z = np.array([im.projection_center()[2] for im in rec.images.values() if im.has_pose])
    ground_below = rec.num_points3D() == 0 or _ground_z(rec) < float(np.median(centres_z))
    if view_error > MAX_VIEW_ERROR_DEG or not ground_below or down.n_inliers * 2 < down.n_photos:
        raise OdmStageError(
            f"the reconstruction cannot be put the right way up: the cameras' median view direction is "
            f"{view_error:.0f} deg from what the photos record, {down.n_inliers}/{down.n_photos} photos "
            f"agree on where down is, the ground is {'below' if ground_below else 'ABOVE'} the cameras. "
            "Nothing georeferenced was written. Check that the photos overlap as one block (more photos, "
            "a second flight line), or give positions with --geo / a gcp_list.txt"
        )
    return view_error


def _centre(rec: pycolmap.Reconstruction, name: str) -> np.ndarray:
    image = rec.find_image_with_name(name)
    assert image is not None
    return np.asarray(image.projection_center())


def _ground_z(rec: pycolmap.Reconstruction) -> float:
    """Median height of the sparse points (the ground of a survey, whatever stands on it)."""
    if rec.num_points3D() == 0:
        return 0.0
    return float(np.median([p.xyz[2] for p in rec.points3D.values()]))


def _disagreement_note(disagreement: float, down: DownEstimate) -> str:
    source = "their recorded gimbal pitch" if down.from_gimbal else "looking near-nadir (ODM's assumption)"
    return (
        f"the GPS positions tilt the model {disagreement:.1f} deg from the photos' attitude ({source}); "
        "the model was levelled from the photos, and the GPS gave its horizontal position, scale and "
        "heading and, from the altitudes' median, its height"
    )


def _local_note(georef: GeoReference | None, n_gps: int, scale_from: str) -> str:
    why = (
        "no photo has GPS"
        if georef is None
        else f"{n_gps} registered photo(s) with distinct GPS positions, {MIN_GPS_PHOTOS} needed"
    )
    scale = (
        "scaled by the photos' relative altitude"
        if scale_from == "relative-altitude"
        else f"scaled for an assumed {NOMINAL_HEIGHT_M:.0f} m flying height (true scale unknown)"
    )
    return f"not georeferenced ({why}): every product is in a local frame, {scale}, ground at 0 m"
