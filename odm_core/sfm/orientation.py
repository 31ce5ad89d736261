"""Which way is down in a reconstruction, from what the photos record about their attitude.

Each photo says where world-down lies in its camera frame (x right, y down, z forward): from the gimbal
pitch in DJI's XMP (`GimbalPitchDegree`, -90 = nadir) when recorded, otherwise straight along the optical
axis, the near-nadir assumption ODM makes through OpenSfM's `align_orientation_prior: vertical`
(opensfm/align.py). Rotated into the model frame with each camera's `cam_from_world`, the photos vote for
the model's down direction; a robust mean discards photos that disagree (obliques with no recorded pitch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pycolmap

from odm_core.photos.photo import Photo

MIN_INLIER_DEG = 5.0  # photos within this angle of the mean always count (gimbal jitter of a few degrees)
ATTITUDE_FLOOR_DEG = 0.5  # a gimbal's systematic error: the mean is never trusted beyond this


@dataclass(frozen=True)
class DownEstimate:
    """The model frame's down direction as the photos' attitudes give it."""

    direction: np.ndarray  # (3,) unit vector in the model frame
    n_photos: int  # photos that voted
    n_inliers: int  # photos that agree with the mean
    spread_deg: float  # median angle of the inliers to the mean
    sigma_deg: float  # uncertainty of the mean (a floor for gimbal bias included)
    from_gimbal: int  # voters whose pitch was recorded


def down_in_camera(photo: Photo) -> np.ndarray:
    """World-down in the photo's camera frame (x right, y down, z forward), a unit vector.

    With a recorded gimbal pitch p (degrees, -90 = nadir, 0 = horizon; roll taken as 0, as gimbals hold
    it): (0, cos t, sin t) with t = -p clamped to [0, 90], turned for the EXIF orientation of the stored
    pixels. Without one: the optical axis (0, 0, 1).
    """
    if photo.pitch is None:
        return np.array([0.0, 0.0, 1.0])
    tilt = math.radians(min(90.0, max(0.0, -photo.pitch)))
    across, forward = math.cos(tilt), math.sin(tilt)
    down_xy = {3: (0.0, -across), 6: (across, 0.0), 8: (-across, 0.0)}.get(photo.orientation, (0.0, across))
    return np.array([down_xy[0], down_xy[1], forward])


def _angles_deg(vectors: np.ndarray, direction: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(vectors @ direction, -1.0, 1.0)))


def estimate_down(rec: pycolmap.Reconstruction, photos: list[Photo]) -> DownEstimate | None:
    """The robust mean of the registered photos' down directions in the model frame; None without photos."""
    by_name = {p.filename: p for p in photos}
    votes, gimbal = [], 0
    for image in rec.images.values():
        photo = by_name.get(image.name)
        if not image.has_pose or photo is None:
            continue
        rotation = image.cam_from_world().rotation.matrix()
        votes.append(rotation.T @ down_in_camera(photo))
        gimbal += photo.pitch is not None
    if not votes:
        return None
    v = np.array(votes)
    inliers = np.ones(len(v), dtype=bool)
    direction = _unit(v.mean(axis=0))
    for _ in range(5):
        angles = _angles_deg(v, direction)
        limit = max(MIN_INLIER_DEG, 3.0 * float(np.median(angles[inliers])))
        inliers = angles <= limit
        if not inliers.any():
            inliers = angles <= float(np.median(angles))
        direction = _unit(v[inliers].mean(axis=0))
    spread = float(np.median(_angles_deg(v[inliers], direction)))
    sigma = math.hypot(1.4826 * spread / math.sqrt(int(inliers.sum())), ATTITUDE_FLOOR_DEG)
    return DownEstimate(direction, len(v), int(inliers.sum()), spread, sigma, gimbal)


def levelling_rotation(down: np.ndarray) -> np.ndarray:
    """The smallest rotation (3 x 3) taking the unit vector `down` to (0, 0, -1)."""
    target = np.array([0.0, 0.0, -1.0])
    axis = np.cross(down, target)
    s, c = float(np.linalg.norm(axis)), float(down @ target)
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])  # already down, or exactly up
    k = axis / s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * kx @ kx


def tilt_deg(down: np.ndarray) -> float:
    """Angle between a model-frame down direction and the frame's own -z, in degrees."""
    return float(_angles_deg(down[None, :], np.array([0.0, 0.0, -1.0]))[0])


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else np.array([0.0, 0.0, -1.0])
