"""Pinhole camera with COLMAP RADIAL distortion, and camera poses (COLMAP axes: x right, y down, z forward).

Pixel coordinates follow COLMAP: the top-left pixel's centre is (0.5, 0.5), so pixel (row i, col j)
is sampled at (j + 0.5, i + 0.5) and the principal point of a centred lens is (width/2, height/2).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from odm_core.synthetic.options import SyntheticOptions


@dataclass(frozen=True)
class Intrinsics:
    """COLMAP RADIAL camera: x_d = x_u * (1 + k1 r^2 + k2 r^4) in normalised coordinates."""

    width: int
    height: int
    focal_px: float
    cx: float
    cy: float
    k1: float
    k2: float

    @classmethod
    def from_options(cls, opts: SyntheticOptions) -> Intrinsics:
        w, h = opts.image_width, opts.image_height
        return cls(w, h, opts.focal_px, w / 2.0, h / 2.0, opts.k1, opts.k2)

    @property
    def colmap_params(self) -> list[float]:
        """Parameters of COLMAP's RADIAL model: f, cx, cy, k1, k2."""
        return [self.focal_px, self.cx, self.cy, self.k1, self.k2]

    def distort(self, xy_u: np.ndarray) -> np.ndarray:
        """Undistorted to distorted normalised coordinates (N x 2)."""
        r2 = np.sum(xy_u**2, axis=1, keepdims=True)
        return xy_u * (1.0 + self.k1 * r2 + self.k2 * r2 * r2)

    def undistort(self, xy_d: np.ndarray) -> np.ndarray:
        """Distorted to undistorted normalised coordinates: Newton on the radius (exact to ~1e-12)."""
        rd = np.hypot(xy_d[:, 0], xy_d[:, 1])
        ru = rd.copy()
        for _ in range(30):
            g = ru * (1.0 + self.k1 * ru**2 + self.k2 * ru**4) - rd
            ru -= g / (1.0 + 3.0 * self.k1 * ru**2 + 5.0 * self.k2 * ru**4)
            if np.max(np.abs(g)) < 1e-13:
                break
        scale = np.divide(ru, rd, out=np.ones_like(rd), where=rd > 0)
        return xy_d * scale[:, None]

    def project(self, cam_pts: np.ndarray) -> np.ndarray:
        """Points in the camera frame (N x 3, z forward) to pixel coordinates (N x 2)."""
        xy = cam_pts[:, :2] / cam_pts[:, 2:3]
        return self.distort(xy) * self.focal_px + np.array([self.cx, self.cy])

    def pixel_rays(self, pixels: np.ndarray) -> np.ndarray:
        """Pixel coordinates (N x 2) to unit ray directions in the camera frame (N x 3)."""
        xy = self.undistort((pixels - np.array([self.cx, self.cy])) / self.focal_px)
        rays = np.column_stack([xy, np.ones(len(xy))])
        return rays / np.linalg.norm(rays, axis=1, keepdims=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": "RADIAL",
            "width": self.width,
            "height": self.height,
            "focal_px": self.focal_px,
            "cx": self.cx,
            "cy": self.cy,
            "k1": self.k1,
            "k2": self.k2,
            "colmap_params": self.colmap_params,
        }


@lru_cache(maxsize=4)
def image_rays(intr: Intrinsics) -> np.ndarray:
    """Unit camera-frame rays of every pixel centre, row-major (H*W x 3); cached per camera."""
    jj, ii = np.meshgrid(np.arange(intr.width) + 0.5, np.arange(intr.height) + 0.5)
    rays = intr.pixel_rays(np.column_stack([jj.ravel(), ii.ravel()]))
    rays.setflags(write=False)
    return rays


@dataclass(frozen=True, eq=False)
class CameraPose:
    """One photo's pose in the scene's local frame (x east, y north, z up; metres)."""

    name: str
    kind: str  # "nadir" or "oblique"
    heading_deg: float  # compass azimuth the image top points to (0 north, 90 east)
    tilt_deg: float  # nominal angle of the optical axis from nadir
    world_from_cam: np.ndarray  # 3 x 3 rotation, columns = camera x, y, z axes in the world
    centre: np.ndarray  # camera centre (3,)

    def cam_from_world(self, pts: np.ndarray) -> np.ndarray:
        """World points (N x 3) in the camera frame."""
        return (pts - self.centre) @ self.world_from_cam

    def rays_world(self, cam_rays: np.ndarray) -> np.ndarray:
        """Camera-frame directions (N x 3) as world directions."""
        return cam_rays @ self.world_from_cam.T


def world_from_cam_rotation(heading_deg: float, tilt_deg: float) -> np.ndarray:
    """Camera looking down, image top toward `heading_deg`, then pitched forward by `tilt_deg`."""
    psi, th = np.radians(heading_deg), np.radians(tilt_deg)
    fwd = np.array([np.sin(psi), np.cos(psi), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    z = np.cos(th) * down + np.sin(th) * fwd
    y = -np.cos(th) * fwd + np.sin(th) * down
    x = np.cross(y, z)
    return np.column_stack([x, y, z])


def small_rotation(angles_rad: np.ndarray) -> np.ndarray:
    """Rotation of the rotation vector `angles_rad` (Rodrigues)."""
    theta = float(np.linalg.norm(angles_rad))
    if theta < 1e-15:
        return np.eye(3)
    k = angles_rad / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx
