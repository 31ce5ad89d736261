"""Seam levelling: additive colour offsets per wedge (a patch's copy of a vertex), interpolated over faces.

Global (mvs-texturing `global_seam_leveling.cpp`, Waechter et al. 2014 sec. 5.1): unknown g per wedge and
channel; at every seam (an edge between patches) the two sides' colours, sampled along the seam edges in
their photos, become equal: (f_a + g_a) - (f_b + g_b) = 0 (weight 1); within a patch neighbouring offsets
stay alike: sqrt(LAMBDA) (g_i - g_j) = 0; solved as sparse least squares (normal equations, SuperLU).

Local (instead of mvs-texturing's Poisson editing of 20 px strips, `local_seam_leveling.cpp`): each seam
wedge gets the rest of the difference to the mean of all sides at its vertex, h = mean(f + g) - (f_a + g_a);
h is 0 at every other wedge, so it fades linearly over the faces along the seam. Both sides then show the
same colour along the seam and the correction stays within one face of it; like the Poisson step it
changes colour, not the texture's detail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix, csc_matrix, identity
from scipy.sparse.linalg import splu

from odm_core.texturing.charts import Charts, edge_face_pairs
from odm_core.texturing.raster import read_photo, sample_bilinear

LAMBDA = 0.1  # smoothness weight within a patch (mvs-texturing)
RIDGE = 1e-4  # keeps the system definite (offsets of a whole component are otherwise free)
SAMPLES_PER_EDGE = 8


@dataclass(frozen=True)
class Levelling:
    """offsets: (W, 3) float32 BGR offsets per wedge (0-255 scale); seam figures: mean colour distance
    (RGB, 0-255) between the two sides of the seams' wedge pairs before, after the global step, after
    both; pairs: seam wedge pairs levelled."""

    offsets: np.ndarray
    before: float
    after_global: float
    after_local: float
    pairs: int


def seam_wedge_pairs(charts: Charts) -> np.ndarray:
    """Wedges facing each other across the S seam edges between seen patches: (S, 2, 2) int64 wedge ids
    [edge end, side]."""
    pairs, _ = edge_face_pairs(charts.faces)
    fa, fb = pairs[:, 0], pairs[:, 1]
    seam = (charts.patch[fa] != charts.patch[fb]) & (charts.labels[fa] >= 0) & (charts.labels[fb] >= 0)
    fa, fb = fa[seam], fb[seam]
    # the shared edge's two ends, as corners of face a, and the matching corners of face b
    in_b = charts.faces[fa][:, :, None] == charts.faces[fb][:, None, :]  # (S, 3 corners a, 3 corners b)
    ends_a = np.argsort(~in_b.any(axis=2), axis=1, kind="stable")[:, :2]
    rows = np.arange(len(fa))[:, None]
    ends_b = in_b[rows, ends_a].argmax(axis=2)
    wa = charts.wedge[fa[:, None], ends_a]
    wb = charts.wedge[fb[:, None], ends_b]
    return np.stack([wa, wb], axis=2)


def seam_colours(charts: Charts, photos: tuple[str, ...], ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour of each seam wedge, sampled along its seam edges in its photo: weighted by closeness to the
    wedge's end (mvs-texturing samples edges the same way). ends (S, 2, 2) from seam_wedge_pairs.
    Returns (wedge ids (U,), colours (U, 3) float64 BGR)."""
    t = (np.arange(SAMPLES_PER_EDGE) + 0.5) / SAMPLES_PER_EDGE
    acc = np.zeros((len(charts.wedge_vertex), 3))
    weight = np.zeros(len(charts.wedge_vertex))
    label = charts.wedge_label
    sides = [(ends[:, 0, side], ends[:, 1, side]) for side in (0, 1)]
    for view in np.unique(np.concatenate([label[w0] for w0, _ in sides])):
        photo = read_photo(photos[view])  # decoded once for both sides of its seams
        for w0, w1 in sides:
            sel = label[w0] == view
            uv0, uv1 = charts.wedge_uv[w0[sel]], charts.wedge_uv[w1[sel]]
            xy = uv0[:, None] + (uv1 - uv0)[:, None] * t[None, :, None].astype(np.float32)
            colour = sample_bilinear(photo, xy.reshape(-1, 2)).reshape(-1, len(t), 3)
            for wedges, wt in ((w0[sel], 1 - t), (w1[sel], t)):
                np.add.at(acc, wedges, (colour * wt[None, :, None]).sum(axis=1))
                np.add.at(weight, wedges, wt.sum())
    used = np.nonzero(weight > 0)[0]
    return used, acc[used] / weight[used, None]


def _difference_rows(i: np.ndarray, j: np.ndarray, w: float, n: int) -> csc_matrix:
    """The normal-equation matrix of w * (x_i - x_j) = ... over the pairs (i, j), n unknowns."""
    rows = np.concatenate([i, j, i, j])
    cols = np.concatenate([i, j, j, i])
    vals = np.concatenate([np.full(len(i) * 2, w * w), np.full(len(i) * 2, -w * w)])
    return coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsc()


def _solve_global(charts: Charts, a: np.ndarray, b: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Offsets (W, 3) minimising sum |f_a + g_a - f_b - g_b|^2 + LAMBDA sum |g_i - g_j|^2 (+ ridge), the
    wedge pairs (a, b) with f the wedges' colours (W, 3); unknowns only in patches with a seam."""
    n_w = len(charts.wedge_vertex)
    involved = np.isin(charts.wedge_patch, np.unique(charts.wedge_patch[np.concatenate([a, b])]))
    local = np.full(n_w, -1, np.int64)
    local[involved] = np.arange(involved.sum())
    n = int(involved.sum())
    e = np.concatenate([charts.wedge[:, [0, 1]], charts.wedge[:, [1, 2]], charts.wedge[:, [2, 0]]])
    e = e[involved[e[:, 0]]]
    la, lb = local[a], local[b]
    matrix = _difference_rows(la, lb, 1.0, n) + _difference_rows(
        local[e[:, 0]], local[e[:, 1]], LAMBDA**0.5, n
    )
    matrix = matrix + RIDGE * identity(n, format="csc")
    d = f[b] - f[a]  # (P, 3): g_a - g_b should equal this
    rhs = np.zeros((n, 3))
    np.add.at(rhs, la, d)
    np.add.at(rhs, lb, -d)
    # symmetric positive definite: a symmetric ordering (Brighton's 206k unknowns: 1.2 s, COLAMD 1.6-2.3 s)
    lu = splu(matrix.tocsc(), permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
    g = np.zeros((n_w, 3))
    g[involved] = lu.solve(rhs)
    return g


def level_seams(charts: Charts, photos: tuple[str, ...], global_step: bool) -> Levelling:
    """Seam levelling offsets for `charts` (photos: the views' photo paths, by label); the global step
    unless `global_step` is False (--texturing-skip-global-seam-leveling), the local one always."""
    ends = seam_wedge_pairs(charts)
    n_w = len(charts.wedge_vertex)
    if len(ends) == 0:
        return Levelling(np.zeros((n_w, 3), np.float32), 0.0, 0.0, 0.0, 0)
    pair = np.unique(np.sort(ends.reshape(-1, 2), axis=1), axis=0)
    used, colours = seam_colours(charts, photos, ends)
    f = np.zeros((n_w, 3))
    f[used] = colours
    a, b = pair[:, 0], pair[:, 1]
    g = _solve_global(charts, a, b, f) if global_step else np.zeros((n_w, 3))
    h = _local_offsets(charts, f + g, used)
    offsets = g + h

    def gap(x: np.ndarray) -> float:
        return float(np.linalg.norm(x[a] - x[b], axis=1).mean())

    return Levelling(offsets.astype(np.float32), gap(f), gap(f + g), gap(f + offsets), len(pair))


def _local_offsets(charts: Charts, levelled: np.ndarray, seam_wedges: np.ndarray) -> np.ndarray:
    """h (W, 3): for seam wedges the difference to the mean levelled colour of all seam wedges at their
    vertex; 0 elsewhere."""
    vertex = charts.wedge_vertex[seam_wedges]
    n_v = int(charts.wedge_vertex.max()) + 1
    total = np.zeros((n_v, 3))
    count = np.zeros(n_v)
    np.add.at(total, vertex, levelled[seam_wedges])
    np.add.at(count, vertex, 1)
    h = np.zeros_like(levelled)
    h[seam_wedges] = total[vertex] / count[vertex, None] - levelled[seam_wedges]
    return h
