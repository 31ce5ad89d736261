"""Per-view depth maps: photometric (stereo pairs) and geometric (made consistent with the neighbours).

Each function is one unit of work for one view: it reads photos or neighbours' depth maps by path, writes
its own depth map with a checkpoint sidecar, and returns a small summary. A unit whose output carries the
same key is not recomputed, so a dense stage killed half-way redoes only the missing views.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from odm_core.camera.view import ViewCamera, load_mask, load_photo, undistorted, warp_rays
from odm_core.dense.plan import ViewUnit
from odm_core.dense.score import photo_score
from odm_core.dense.stereo import pair_depth
from odm_core.worker import load_arrays, save_arrays

CONSISTENT_REL = 0.01  # depths of one surface point agree within 1% (relative)
MIN_PHOTO_SCORE = 0.5  # mean NCC a chosen depth needs with its best partners


def photometric_depthmap(unit: ViewUnit) -> int:
    """Depth from semi-global matching with each stereo partner; per pixel the candidate the partners'
    photos agree with best (multi-view NCC), averaged with the candidates that agree with it."""
    view = unit.view
    source = load_photo(view)
    gray = warp_rays(view, source, view.pixel_rays(), gray=True).astype(np.float32)
    estimates, partners = [], []
    for nbr in unit.neighbours:
        nbr_source = load_photo(nbr)
        partners.append((nbr, warp_rays(nbr, nbr_source, nbr.pixel_rays(), gray=True).astype(np.float32)))
        depth = pair_depth(view, nbr, source, nbr_source)
        if depth is not None:
            estimates.append(depth)
    shape = (view.dm_height, view.dm_width)
    scores = [photo_score(view, gray, d, partners) for d in estimates]
    depth, support = best_supported(estimates, scores, shape)
    depth[(depth < view.depth_min) | (depth > view.depth_bound())] = 0
    _apply_mask(view, depth)
    save_arrays(Path(unit.out), unit.key, depth=depth, support=support, image=undistorted(view, source))
    return int(np.count_nonzero(depth))


def best_supported(
    estimates: list[np.ndarray], scores: list[np.ndarray], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the best-scored candidate (at least MIN_PHOTO_SCORE), averaged with the candidates
    within CONSISTENT_REL of it; where no candidate could be scored (flat texture), the median consensus.
    """
    if not estimates:
        return np.zeros(shape, np.float32), np.zeros(shape, np.uint8)
    stack = np.stack(estimates).astype(np.float32)
    stack[~(stack > 0)] = np.nan
    score = np.stack(scores)
    score[np.isnan(stack)] = np.nan
    unscored = np.all(np.isnan(score), axis=0)
    best = np.argmax(np.nan_to_num(score, nan=-np.inf), axis=0)
    winner = np.take_along_axis(stack, best[None], axis=0)[0]
    best_score = np.take_along_axis(score, best[None], axis=0)[0]
    with np.errstate(invalid="ignore"):
        agree = np.abs(stack - winner) <= CONSISTENT_REL * winner
    count = agree.sum(axis=0)
    depth = np.where(agree, stack, 0).sum(axis=0) / np.maximum(count, 1)
    depth[~(best_score >= MIN_PHOTO_SCORE)] = 0
    fallback, fallback_count = consensus(estimates, shape, min_support=1)
    depth = np.where(unscored, fallback, depth).astype(np.float32)
    count = np.where(unscored, fallback_count, count)
    count[depth == 0] = 0
    return depth, count.astype(np.uint8)


def consensus(
    estimates: list[np.ndarray], shape: tuple[int, int], min_support: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the mean of the estimates within CONSISTENT_REL of their median, and how many agreed.

    Estimates are depth maps with NaN (or 0) where unknown; pixels with fewer than min_support agreeing
    estimates get depth 0.
    """
    if not estimates:
        return np.zeros(shape, np.float32), np.zeros(shape, np.uint8)
    stack = np.stack(estimates).astype(np.float32)
    stack[~(stack > 0)] = np.nan
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        median = np.nanmedian(stack, axis=0)
        agree = np.abs(stack - median) <= CONSISTENT_REL * median
    count = agree.sum(axis=0)
    total = np.where(agree, stack, 0).sum(axis=0)
    depth = np.where(count >= min_support, total / np.maximum(count, 1), 0).astype(np.float32)
    return depth, count.astype(np.uint8)


def splat(src: ViewCamera, src_depth: np.ndarray, dst: ViewCamera) -> np.ndarray:
    """A neighbour's depth map seen from another view: nearest surface per pixel (z-buffer), NaN if none."""
    valid = src_depth > 0
    world = src.world_points(src_depth)[valid]
    u, v, z = dst.project(world)
    iu, iv = np.floor(u), np.floor(v)
    ok = (z > 0) & (iu >= 0) & (iv >= 0) & (iu < dst.dm_width) & (iv < dst.dm_height)
    flat = iv[ok].astype(np.int64) * dst.dm_width + iu[ok].astype(np.int64)
    buffer = np.full(dst.dm_width * dst.dm_height, np.inf, np.float32)
    np.minimum.at(buffer, flat, z[ok].astype(np.float32))
    buffer[np.isinf(buffer)] = np.nan
    return buffer.reshape(dst.dm_height, dst.dm_width)


def geometric_depthmap(unit: ViewUnit) -> int:
    """Refine a photometric depth map with its neighbours': keep (or fill) depths that 2+ maps agree on."""
    own = load_arrays(unit.sources[0])
    estimates = [own["depth"]]
    for nbr, path in zip(unit.neighbours, unit.sources[1:], strict=True):
        estimates.append(splat(nbr, load_arrays(path)["depth"], unit.view))
    depth, support = consensus(estimates, own["depth"].shape, min_support=2)
    _apply_mask(unit.view, depth)
    save_arrays(Path(unit.out), unit.key, depth=depth, support=support, image=own["image"])
    return int(np.count_nonzero(depth))


def _apply_mask(view: ViewCamera, depth: np.ndarray) -> None:
    """No depth where the photo's mask is black (ODM's image masks): nothing there becomes a point."""
    usable = load_mask(view)
    if usable is not None:
        depth[~usable] = 0
