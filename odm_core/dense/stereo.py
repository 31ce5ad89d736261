"""Two-view stereo: rectify a view with a neighbour, semi-global matching (OpenCV SGBM), depth per pixel.

Both photos are resampled straight from the original JPEG into a common rectified frame (undistortion,
rotation and scaling in one remap). The rectified frame's x axis is the baseline, so matches lie on rows.
The disparity is then carried back to the reference view's own depth-map pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from odm_core.camera.view import SourceImage, ViewCamera, warp_rays

MAX_RECTIFIED_GROWTH = 2.5  # a pair whose rectified image is larger than this (x depth-map size) is skipped
DISPARITY_MARGIN_PX = 8
SGBM_BLOCK_PX = 3
SGBM_UNIQUENESS = 10  # percent margin by which the best match must beat the second
SGBM_MODE = cv2.StereoSGBM_MODE_SGBM


@dataclass(frozen=True)
class RectifiedPair:
    """A shared rectified frame for reference view 1 and neighbour 2 (camera 2 sits at +baseline on x)."""

    rect_from_world: np.ndarray
    focal_px: float
    cx1: float
    cx2: float
    cy: float
    width: int
    height: int
    baseline_m: float

    def rect_from_cam(self, view: ViewCamera) -> np.ndarray:
        return self.rect_from_world @ view.rotation.T

    def rays(self, view: ViewCamera, cx: float) -> np.ndarray:
        """Camera-frame rays of every rectified pixel (for resampling that view's photo)."""
        u, v = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        rect = np.dstack([(u - cx) / self.focal_px, (v - self.cy) / self.focal_px, np.ones_like(u)])
        return rect @ self.rect_from_cam(view)  # row vectors: (R^T r)^T = r^T R


def _rect_frame(ref: ViewCamera, nbr: ViewCamera) -> tuple[np.ndarray, float] | None:
    base = nbr.centre - ref.centre
    baseline = float(np.linalg.norm(base))
    if baseline < 1e-9:
        return None
    x = base / baseline
    z = ref.rotation[2] + nbr.rotation[2]
    z = z - (z @ x) * x
    if np.linalg.norm(z) < 1e-6:
        return None
    z /= np.linalg.norm(z)
    return np.vstack([x, np.cross(z, x), z]), baseline


def _corner_bounds(view: ViewCamera, rect_from_cam: np.ndarray, f: float) -> np.ndarray | None:
    """(umin, vmin, umax, vmax) of a view's depth-map frame in the rectified plane (cx = cy = 0)."""
    w, h = view.dm_width, view.dm_height
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], float)
    rays = corners @ np.linalg.inv(view.K).T @ rect_from_cam.T
    if np.any(rays[:, 2] <= 1e-3):
        return None
    u, v = f * rays[:, 0] / rays[:, 2], f * rays[:, 1] / rays[:, 2]
    return np.array([u.min(), v.min(), u.max(), v.max()])


def rectify(ref: ViewCamera, nbr: ViewCamera) -> RectifiedPair | None:
    """The rectified frame of a pair, or None when the geometry does not allow it (epipole in view, ...)."""
    frame = _rect_frame(ref, nbr)
    if frame is None:
        return None
    rect_from_world, baseline = frame
    f = ref.dm_focal_px
    b1 = _corner_bounds(ref, rect_from_world @ ref.rotation.T, f)
    b2 = _corner_bounds(nbr, rect_from_world @ nbr.rotation.T, f)
    if b1 is None or b2 is None:
        return None
    width = int(np.ceil(max(b1[2] - b1[0], b2[2] - b2[0])))
    height = int(np.ceil(b1[3] - b1[1]))
    limit = MAX_RECTIFIED_GROWTH * max(ref.dm_width, ref.dm_height)
    if width > limit or height > limit:
        return None
    return RectifiedPair(rect_from_world, f, -b1[0], -b2[0], -b1[1], width, height, baseline)


def disparity_range(pair: RectifiedPair, ref: ViewCamera) -> tuple[int, int]:
    """(minDisparity, numDisparities) covering the reference view's depth range, for SGBM."""
    rays = ref.pixel_rays()[:: max(1, ref.dm_height // 8), :: max(1, ref.dm_width // 8)].reshape(-1, 3)
    rect = rays @ pair.rect_from_cam(ref).T
    zr = np.concatenate([rect[:, 2] * ref.depth_min, rect[:, 2] * ref.depth_max])
    d = pair.focal_px * pair.baseline_m / zr + (pair.cx1 - pair.cx2)
    lo = int(np.floor(d.min())) - DISPARITY_MARGIN_PX
    span = int(np.ceil(d.max())) + DISPARITY_MARGIN_PX - lo
    return lo, int(min(512, 16 * int(np.ceil(span / 16))))


def sgbm_disparity(left: np.ndarray, right: np.ndarray, min_disp: int, num_disp: int) -> np.ndarray:
    """Semi-global matching disparity of the left image (pixels, NaN where no reliable match)."""
    block = SGBM_BLOCK_PX
    matcher = cv2.StereoSGBM.create(
        minDisparity=min_disp,
        numDisparities=num_disp,
        blockSize=block,
        P1=8 * block * block,
        P2=32 * block * block,
        disp12MaxDiff=1,
        uniquenessRatio=SGBM_UNIQUENESS,
        speckleWindowSize=50,
        speckleRange=2,
        mode=SGBM_MODE,
    )
    raw = matcher.compute(left, right).astype(np.float32) / 16.0
    raw[raw < min_disp] = np.nan
    raw[(left == 0) | (cv2.erode(left, np.ones((3, 3), np.uint8)) == 0)] = np.nan  # outside the photo
    return raw


def pair_depth(
    ref: ViewCamera, nbr: ViewCamera, ref_src: SourceImage, nbr_src: SourceImage
) -> np.ndarray | None:
    """Depth of every reference depth-map pixel seen in the neighbour (NaN elsewhere), or None."""
    pair = rectify(ref, nbr)
    if pair is None:
        return None
    pair, num_disp = _padded(pair, ref)
    left = warp_rays(ref, ref_src, pair.rays(ref, pair.cx1), gray=True)
    right = warp_rays(nbr, nbr_src, pair.rays(nbr, pair.cx2), gray=True)
    disparity = sgbm_disparity(left, right, 0, num_disp)
    return _to_reference(pair, ref, disparity)


def _padded(pair: RectifiedPair, ref: ViewCamera) -> tuple[RectifiedPair, int]:
    """The pair re-framed so disparities run from 0 and the reference starts num_disp columns in.

    SGBM leaves the first minDisparity + numDisparities columns of the left image without a match, so the
    neighbour is shifted to make the smallest disparity 0 and the reference is padded by the search range.
    """
    lo, num = disparity_range(pair, ref)
    width = int(max(num + pair.width, lo + num + pair.width))
    return replace(pair, cx1=pair.cx1 + num, cx2=pair.cx2 + lo + num, width=width), num


def _to_reference(pair: RectifiedPair, ref: ViewCamera, disparity: np.ndarray) -> np.ndarray:
    """Carry a rectified disparity map back to depth along the reference view's own pixel rays."""
    rect = ref.pixel_rays() @ pair.rect_from_cam(ref).T
    map_x = (pair.focal_px * rect[..., 0] / rect[..., 2] + pair.cx1 - 0.5).astype(np.float32)
    map_y = (pair.focal_px * rect[..., 1] / rect[..., 2] + pair.cy - 0.5).astype(np.float32)
    valid = np.isfinite(disparity).astype(np.float32)
    filled = np.nan_to_num(disparity, nan=0.0)
    d = cv2.remap(filled, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ok = cv2.remap(valid, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    shifted = d - (pair.cx1 - pair.cx2)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = pair.focal_px * pair.baseline_m / shifted / rect[..., 2]
    depth[(ok < 0.999) | (shifted <= 0)] = np.nan
    return depth.astype(np.float32)
