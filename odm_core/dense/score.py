"""Multi-view photo-consistency: which of a view's candidate depths its neighbours' photos agree with.

Each stereo pair proposes a depth map. Where a pair matched a pixel whose true match lies outside the
partner's frame, semi-global matching still returns a confident, wrong disparity; such candidates can
outnumber the right one. Each candidate is therefore scored against every stereo partner, not only the
one that proposed it: the partner's undistorted photo is warped onto the view through the candidate
depths and compared by windowed normalised cross-correlation (NCC), as PatchMatch MVS does.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np

from odm_core.camera.view import ViewCamera

NCC_WINDOW_PX = 7
MIN_TEXTURE_STD = 2.0  # grey levels: flatter windows give no reliable NCC
TOP_VIEWS = 2  # a candidate scores the mean NCC of the partners that agree best with it


def warp_to_view(view: ViewCamera, depth: np.ndarray, nbr: ViewCamera, nbr_gray: np.ndarray) -> np.ndarray:
    """The neighbour's undistorted grey image seen through the view's depths (NaN where not seen)."""
    world = view.world_points(np.where(depth > 0, depth, np.nan))
    u, v, z = nbr.project(world.reshape(-1, 3))
    inside = (z > 0) & (u >= 0.5) & (v >= 0.5) & (u <= nbr.dm_width - 0.5) & (v <= nbr.dm_height - 0.5)
    map_x = np.where(inside, u - 0.5, -1).astype(np.float32).reshape(depth.shape)
    map_y = np.where(inside, v - 0.5, -1).astype(np.float32).reshape(depth.shape)
    warped = cv2.remap(nbr_gray, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    warped[~inside.reshape(depth.shape)] = np.nan
    return warped


def ncc(ref: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Windowed NCC of two float images; NaN where a window leaves either image or lacks texture."""
    size = (NCC_WINDOW_PX, NCC_WINDOW_PX)
    missing = np.isnan(other) | np.isnan(ref)
    a = np.where(missing, 0, ref).astype(np.float32)
    b = np.where(missing, 0, other).astype(np.float32)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, size, normalize=True, borderType=cv2.BORDER_REFLECT)

    ma, mb = box(a), box(b)
    var_a = box(a * a) - ma * ma
    var_b = box(b * b) - mb * mb
    cov = box(a * b) - ma * mb
    with np.errstate(invalid="ignore", divide="ignore"):
        score = cov / np.sqrt(np.maximum(var_a * var_b, 1e-12))
    flat = (var_a < MIN_TEXTURE_STD**2) | (var_b < MIN_TEXTURE_STD**2)
    score[(box(missing.astype(np.float32)) > 0) | flat] = np.nan
    return score


def photo_score(
    view: ViewCamera, gray: np.ndarray, depth: np.ndarray, nbrs: list[tuple[ViewCamera, np.ndarray]]
) -> np.ndarray:
    """Per pixel, the mean NCC over the TOP_VIEWS partners that agree best with the depths (NaN: none)."""
    scores = np.stack([ncc(gray, warp_to_view(view, depth, nbr, g)) for nbr, g in nbrs])
    ranked = -np.sort(-np.nan_to_num(scores, nan=-np.inf), axis=0)[:TOP_VIEWS]
    ranked[np.isinf(ranked)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels no partner sees
        return np.nanmean(ranked, axis=0)
