"""--orthophoto-cutline (ODM's `opendm/cutline.py`): a polygon just inside the crop area whose edge runs
where the orthophoto is smooth, so that mosaics stitched along it do not cut through buildings or trees.

The orthophoto is read at a reduced size (its overviews). The cost of a pixel is its smoothed gradient
magnitude plus a small constant (for length). In a band along the inside of each crop polygon, the
closed path of least cost is found with Dijkstra (scipy.sparse.csgraph): the band is cut open along a ray
from the polygon's deepest point, and the cheapest path from one side of that cut to the other, around
the polygon, closes into the cutline.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import rasterio
import shapely
from rasterio.enums import Resampling
from rasterio.transform import Affine
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from shapely.geometry.base import BaseGeometry

from odm_core.geo.crop import largest_parts, window_mask

MAX_PX = 1500  # longest side of the reduced orthophoto the path is searched in
BAND_SHARE = 0.08  # band width: this share of the polygon's shorter side (reduced pixels)
MIN_BAND_PX = 3
LENGTH_COST = 0.02  # cost of a pixel without any gradient, against 1 for a strong edge
STEPS = ((0, 1), (1, 0), (1, 1), (1, -1))  # 8-connected, each pair once


def orthophoto_cutline(ortho: Path, crop: BaseGeometry, max_px: int = MAX_PX) -> BaseGeometry:
    """The cutline polygon(s) of an RGBA orthophoto inside the crop polygon(s), in the raster's CRS."""
    with rasterio.open(ortho) as src:
        scale = max(1.0, max(src.width, src.height) / max_px)
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        rgba = src.read(out_shape=(src.count, *shape), resampling=Resampling.average)
        transform = src.transform @ Affine.scale(src.width / shape[1], src.height / shape[0])
    gray = rgba[:3].astype(np.float32).mean(axis=0)
    return least_cost_cutline(edge_cost(gray), transform, crop)


def edge_cost(gray: np.ndarray) -> np.ndarray:
    """Per pixel: LENGTH_COST + the smoothed gradient magnitude, scaled so strong edges are about 1."""
    smooth = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 1.0)
    magnitude = np.hypot(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    magnitude = cv2.GaussianBlur(magnitude, (0, 0), 1.5)  # a path keeps clear of an edge, not just off it
    top = float(np.percentile(magnitude, 99)) or 1.0
    return LENGTH_COST + np.clip(magnitude / top, 0.0, 1.0)


def least_cost_cutline(cost: np.ndarray, transform: Affine, crop: BaseGeometry) -> BaseGeometry:
    """The least-cost closed path inside each crop polygon, as polygon(s) within the crop."""
    parts = []
    for polygon in shapely.get_parts(crop):
        inside = window_mask(shapely.Polygon(polygon.exterior), transform, cost.shape)
        band_px = _band_px(inside)
        loop = least_cost_loop(cost, inside, band_px) if band_px else None
        if loop is None:  # too thin for a band around an inner part: the crop polygon itself
            parts.append(polygon)
            continue
        xs, ys = transform @ (loop[:, 1] + 0.5, loop[:, 0] + 0.5)
        ring = shapely.make_valid(shapely.Polygon(np.column_stack([xs, ys])))
        cut = largest_parts(shapely.make_valid(ring.intersection(polygon)), 1.0)
        parts.append(cut if not cut.is_empty else polygon)
    return shapely.union_all(parts)


def _band_px(inside: np.ndarray) -> int:
    rows, cols = np.nonzero(inside)
    if len(rows) == 0:
        return 0
    shorter = min(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    return max(MIN_BAND_PX, round(BAND_SHARE * shorter))


def least_cost_loop(cost: np.ndarray, inside: np.ndarray, band_px: int) -> np.ndarray | None:
    """(row, col) pixels of the cheapest closed path through the band of `inside` pixels within band_px
    of its edge, around its deepest point; None when nothing lies deeper than the band."""
    depth = ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
    band = inside & (depth <= band_px)
    if not (depth > band_px).any():
        return None
    core_row, core_col = (int(v) for v in np.unravel_index(int(np.argmax(depth)), depth.shape))
    run = _cut_run(band, core_row, core_col)
    if run is None:
        return None
    index = np.full(band.shape, -1, np.int64)
    index[band] = np.arange(int(band.sum()))
    tails, heads, weights = [], [], []
    rows, cols = band.shape
    for dr, dc in STEPS:
        r0, r1 = 0, rows - dr
        c0, c1 = max(0, -dc), cols - max(0, dc)
        a = band[r0:r1, c0:c1] & band[r0 + dr : r1 + dr, c0 + dc : c1 + dc]
        ra, ca = np.nonzero(a)
        ra, ca = ra + r0, ca + c0
        rb, cb = ra + dr, ca + dc
        # edges across the ray from the deepest pixel up to the top are cut: the band opens there
        crosses = (np.minimum(ca, cb) == core_col - 1) & (np.maximum(ca, cb) == core_col)
        keep = ~(crosses & (np.maximum(ra, rb) < core_row))
        ra, ca, rb, cb = ra[keep], ca[keep], rb[keep], cb[keep]
        tails.append(index[ra, ca])
        heads.append(index[rb, cb])
        weights.append(0.5 * (cost[ra, ca] + cost[rb, cb]) * float(np.hypot(dr, dc)))
    n = int(band.sum())
    graph = csr_matrix((np.concatenate(weights), (np.concatenate(tails), np.concatenate(heads))), (n, n))
    sources = index[run, core_col]
    targets = index[run, core_col - 1]
    targets = targets[targets >= 0]
    if len(targets) == 0:
        return None
    dist, pred, _ = dijkstra(graph, directed=False, indices=sources, min_only=True, return_predecessors=True)
    end = int(targets[np.argmin(dist[targets])])
    if not np.isfinite(dist[end]):
        return None
    path = [end]
    while pred[path[-1]] >= 0:
        path.append(int(pred[path[-1]]))
    flat = np.flatnonzero(band.ravel())[np.array(path[::-1])]
    return np.column_stack(np.unravel_index(flat, band.shape))


def _cut_run(band: np.ndarray, core_row: int, core_col: int) -> np.ndarray | None:
    """Rows of the first run of band pixels met going up from the deepest pixel in its column."""
    if core_col == 0:
        return None
    above = np.flatnonzero(band[:core_row, core_col])
    if len(above) == 0:
        return None
    bottom = int(above[-1])
    top = bottom
    while top > 0 and band[top - 1, core_col]:
        top -= 1
    return np.arange(top, bottom + 1)
