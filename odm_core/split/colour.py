"""Colour balance between the submodels' orthophotos: one gain per source and channel.

ODM merges the submodels' orthophotos with no colour or histogram matching (a TODO in
`opendm/orthophoto.py`, ODM #989), so a submodel flown under other light shows as a patch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from odm_core.split.grid import GridSource, merged_grid

MAX_PX = 1024
PRIOR = 0.1  # weight of each log gain's pull to 0, against 1 for each overlap's equation
MIN_PAIR_PX = 64  # decimated pixels two sources must share for their means to count
GAIN_RANGE = (0.5, 2.0)


def read_decimated(source: GridSource, factor: int) -> tuple[int, int, np.ndarray] | None:
    """(row, col, (4, h, w) uint8) of the source on the merged grid decimated `factor` times: the
    decimated cells its bounds hold whole, nearest-sampled (GDAL may read an overview); None if none."""
    r0, c0 = -(-source.row // factor), -(-source.col // factor)
    r1 = (source.row + source.height) // factor
    c1 = (source.col + source.width) // factor
    if r1 <= r0 or c1 <= c0:
        return None
    window = Window(
        c0 * factor - source.col, r0 * factor - source.row, (c1 - c0) * factor, (r1 - r0) * factor
    )
    with rasterio.open(source.path) as src:
        data = src.read(window=window, out_shape=(4, r1 - r0, c1 - c0), resampling=Resampling.nearest)
    return r0, c0, data


def pair_means(
    a: tuple[int, int, np.ndarray], b: tuple[int, int, np.ndarray]
) -> tuple[np.ndarray, np.ndarray] | None:
    """(3,) mean red, green, blue of each of two decimated sources over the cells both cover fully
    (alpha 255: an overview's edge cells, averaged with transparent ones, are left out); None when
    they share fewer than MIN_PAIR_PX."""
    (ra, ca, da), (rb, cb, db) = a, b
    r0, c0 = max(ra, rb), max(ca, cb)
    r1, c1 = min(ra + da.shape[1], rb + db.shape[1]), min(ca + da.shape[2], cb + db.shape[2])
    if r1 <= r0 or c1 <= c0:
        return None
    sa = da[:, r0 - ra : r1 - ra, c0 - ca : c1 - ca]
    sb = db[:, r0 - rb : r1 - rb, c0 - cb : c1 - cb]
    both = (sa[3] == 255) & (sb[3] == 255)
    if both.sum() < MIN_PAIR_PX:
        return None
    return sa[:3, both].mean(axis=1), sb[:3, both].mean(axis=1)


def colour_gains(sources: Sequence[Path], max_px: int = MAX_PX) -> np.ndarray:
    """(K, 3) float gains, per source and red, green, blue channel, that even out the orthophotos'
    brightness where they overlap (1 for a source with no overlap). ODM has none (ODM #989).

    Each RGBA orthophoto (uint8, alpha band 4) is read decimated so the merged grid (merged_grid: it
    raises OdmStageError for mismatched grids) is at most max_px pixels across. For every pair of
    sources sharing at least MIN_PAIR_PX fully opaque decimated cells, the per-channel means m_i, m_j
    there give one equation log g_i - log g_j = log m_j - log m_i (log(m_i g_i) = log(m_j g_j)); a weak
    prior PRIOR * log g_i = 0 per source keeps the average brightness and a lone source at gain 1.
    Solved per channel by least squares, then clipped to [0.5, 2]. A photometric balance by gains
    only: no histogram matching, no vignetting or gradient correction.
    """
    grid = merged_grid(sources)
    factor = max(1, math.ceil(max(grid.width, grid.height) / max_px))
    coarse = [read_decimated(s, factor) for s in grid.sources]
    k = len(sources)
    rows: list[np.ndarray] = []
    rhs: list[np.ndarray] = []
    for i in range(k):
        for j in range(i + 1, k):
            a, b = coarse[i], coarse[j]
            means = pair_means(a, b) if a is not None and b is not None else None
            if means is None:
                continue
            row = np.zeros(k)
            row[i], row[j] = 1.0, -1.0
            rows.append(row)
            rhs.append(np.log(np.maximum(means[1], 1.0)) - np.log(np.maximum(means[0], 1.0)))
    a_mat = np.vstack([*rows, PRIOR * np.eye(k)])
    b_mat = np.vstack([*rhs, np.zeros((k, 3))])
    log_gains = np.linalg.lstsq(a_mat, b_mat, rcond=None)[0]
    return np.asarray(np.clip(np.exp(log_gains), *GAIN_RANGE), float)
