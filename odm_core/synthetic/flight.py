"""The flight plan: a serpentine nadir grid plus obliques looking at the block centre.

Flight lines run east-west (even lines fly east, odd lines west), south to north; every nadir photo has
its image top pointing along the flight direction, so the short image side lies along the track.
"""

from __future__ import annotations

import numpy as np

from odm_core.synthetic.camera import CameraPose, Intrinsics, small_rotation, world_from_cam_rotation
from odm_core.synthetic.options import SyntheticOptions

_OBLIQUE_TILT_STEPS_DEG = (-4.0, 0.0, 4.0)  # obliques alternate around the mean tilt


def photo_name(index: int) -> str:
    return f"IMG_{index + 1:04d}.JPG"


def line_spacing_m(opts: SyntheticOptions) -> tuple[float, float]:
    """(photo spacing along a line, spacing between lines) from the overlaps, over the mean ground."""
    along = opts.image_height * opts.gsd_m * (1.0 - opts.forward_overlap)
    across = opts.image_width * opts.gsd_m * (1.0 - opts.side_overlap)
    return along, across


def _jittered(
    opts: SyntheticOptions, rng: np.random.Generator, heading: float, tilt: float, xy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    jitter = np.radians(opts.attitude_jitter_deg) * rng.standard_normal(3)
    world_from_cam = world_from_cam_rotation(heading, tilt) @ small_rotation(jitter)
    offset = opts.position_jitter_m * rng.standard_normal(3) * np.array([1.0, 1.0, 0.5])
    centre = np.array([xy[0], xy[1], opts.flying_height_m]) + offset
    return world_from_cam, centre


def nadir_plan(opts: SyntheticOptions, rng: np.random.Generator) -> list[CameraPose]:
    """Serpentine grid: n_rows lines of n_cols photos centred on the origin."""
    dx, dy = line_spacing_m(opts)
    poses: list[CameraPose] = []
    for row in range(opts.n_rows):
        y = (row - (opts.n_rows - 1) / 2.0) * dy
        heading = 90.0 if row % 2 == 0 else 270.0
        cols = range(opts.n_cols) if row % 2 == 0 else reversed(range(opts.n_cols))
        for col in cols:
            x = (col - (opts.n_cols - 1) / 2.0) * dx
            rot, centre = _jittered(opts, rng, heading, 0.0, np.array([x, y]))
            poses.append(CameraPose(photo_name(len(poses)), "nadir", heading, 0.0, rot, centre))
    return poses


def oblique_plan(opts: SyntheticOptions, rng: np.random.Generator, first: int) -> list[CameraPose]:
    """Obliques on a ring around the centre, each optical axis aimed at the block centre."""
    poses: list[CameraPose] = []
    for k in range(opts.n_oblique):
        azimuth = 45.0 + 360.0 * k / opts.n_oblique
        tilt = max(0.0, opts.oblique_tilt_deg + _OBLIQUE_TILT_STEPS_DEG[k % 3])
        radius = opts.flying_height_m * np.tan(np.radians(tilt))
        a = np.radians(azimuth)
        xy = radius * np.array([np.sin(a), np.cos(a)])
        heading = (azimuth + 180.0) % 360.0
        rot, centre = _jittered(opts, rng, heading, tilt, xy)
        poses.append(CameraPose(photo_name(first + k), "oblique", heading, tilt, rot, centre))
    return poses


def flight_plan(opts: SyntheticOptions) -> list[CameraPose]:
    """Every photo's exact pose, in capture order (nadir lines, then obliques)."""
    rng = np.random.default_rng([opts.seed, 1])
    nadir = nadir_plan(opts, rng)
    return nadir + oblique_plan(opts, rng, len(nadir))


def image_border_pixels(intr: Intrinsics, n: int = 9) -> np.ndarray:
    """Pixel coordinates along the image border (n per side)."""
    u = np.linspace(0.0, intr.width, n)
    v = np.linspace(0.0, intr.height, n)
    top = np.column_stack([u, np.zeros(n)])
    bottom = np.column_stack([u, np.full(n, intr.height)])
    left = np.column_stack([np.zeros(n), v])
    right = np.column_stack([np.full(n, intr.width), v])
    return np.vstack([top, bottom, left, right])


def ground_bounds(poses: list[CameraPose], intr: Intrinsics, z: float) -> np.ndarray:
    """(xmin, ymin, xmax, ymax) of where the photos' borders meet the plane at height z."""
    cam_rays = intr.pixel_rays(image_border_pixels(intr))
    pts = []
    for pose in poses:
        rays = pose.rays_world(cam_rays)
        dz = np.minimum(rays[:, 2], -0.05)
        t = np.minimum((pose.centre[2] - z) / -dz, 10.0 * (pose.centre[2] - z))
        pts.append(pose.centre[:2] + t[:, None] * rays[:, :2])
    xy = np.vstack(pts)
    return np.concatenate([xy.min(axis=0), xy.max(axis=0)])
