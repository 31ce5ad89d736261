"""The face graph and the MRF of view selection: unary costs, Potts smoothness, alpha-expansion (gco).

texrecon (`view_selection.cpp`) labels every face with a view: sites are the faces some view sees, edges
join faces that share a mesh edge (both seen), the data cost is `1 - min(1, q / p99.5(q))` and the Potts
cost 1 per edge between different labels; a face may only take a view that sees it. Here both are scaled
by MAX_ENERGY and solved with gco-wrapper's alpha-expansion (texrecon uses mapMAP; GCO in its research
builds). A view that does not see a face costs FORBIDDEN, more than any face's whole Potts penalty plus
MAX_ENERGY, so no expansion move keeps it.

gco-wrapper 3.0.9 traps (measured, /work/shared/reference/mesh-texturing.md 2.3): its int32 path returns
all zeros; its float path divides unary and edge weights by max(|unary|, |w| x max(pairwise)) and then
truncates edge weights x 1000 to int, so edge weights must be large (MAX_ENERGY, not 1) and the pairwise
matrix 0/1.
"""

from __future__ import annotations

import gco
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

MAX_ENERGY = 1000.0  # the data cost of a useless view and the Potts cost of a seam
PERCENTILE = 0.995  # texrecon normalises qualities by this percentile (its 10,000-bin histogram)


def face_edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) int64 pairs i < j of faces sharing a mesh edge (every pair, for edges of 3+ faces)."""
    m = len(faces)
    edge = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    owner = np.repeat(np.arange(m), 3)
    order = np.lexsort((owner, edge[:, 1], edge[:, 0]))
    edge, owner = edge[order], owner[order]
    same = (edge[1:] == edge[:-1]).all(axis=1)
    pairs = [np.column_stack([owner[:-1][same], owner[1:][same]])]
    lag = 2
    while same.any() and lag < len(edge):  # edges of 3+ faces: the farther pairs in the run
        same = same[:-1] & (edge[lag:] == edge[:-lag]).all(axis=1)
        pairs.append(np.column_stack([owner[:-lag][same], owner[lag:][same]]))
        lag += 1
    out = np.sort(np.concatenate(pairs), axis=1)
    out = out[out[:, 0] != out[:, 1]]
    return np.unique(out, axis=0) if len(out) else out.reshape(0, 2)


def unary_costs(face: np.ndarray, view: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """(P,) float64 texrecon's data cost of each (face, view) pair: (1 - min(1, q / p99.5)) * MAX_ENERGY."""
    if len(quality) == 0:
        return np.zeros(0)
    top = float(np.quantile(quality, PERCENTILE))
    if top <= 0:
        top = float(quality.max()) or 1.0
    return (1.0 - np.minimum(1.0, quality / top)) * MAX_ENERGY


EXPANSION_CYCLES = 2  # 400k faces, 11 photos: 11.1 s to convergence, 6.4 s for 2 cycles (the same labels)


def solve_potts(
    n_sites: int, edges: np.ndarray, site: np.ndarray, label: np.ndarray, cost: np.ndarray, n_labels: int
) -> np.ndarray:
    """(n_sites,) int labels minimising the costs + MAX_ENERGY per edge whose ends differ (alpha-expansion).

    site, label, cost: (P,) the allowed (site, label) pairs and their costs; every site needs one."""
    degree = np.bincount(edges.ravel(), minlength=n_sites) if len(edges) else np.zeros(n_sites, int)
    forbidden = MAX_ENERGY * (int(degree.max(initial=0)) + 2)
    unary = np.full((n_sites, n_labels), forbidden)
    unary[site, label] = cost
    start = unary.argmin(axis=1).astype(np.int32)
    if n_labels == 1 or len(edges) == 0:
        return start
    labels = gco.cut_general_graph(
        edges.astype(np.int32),
        np.full(len(edges), MAX_ENERGY),
        unary,
        1.0 - np.eye(n_labels),
        n_iter=EXPANSION_CYCLES,
        algorithm="expansion",
        init_labels=start,
    )
    labels = np.asarray(labels, dtype=np.int64)
    stuck = unary[np.arange(n_sites), labels] >= forbidden  # not expected: an expansion would move it
    labels[stuck] = start[stuck]
    return labels


def patches(labels: np.ndarray, edges: np.ndarray, sites: np.ndarray) -> int:
    """How many connected pieces of equal label the `sites` (bool, faces) make over the face `edges`."""
    n = len(labels)
    keep = sites[edges[:, 0]] & sites[edges[:, 1]] & (labels[edges[:, 0]] == labels[edges[:, 1]])
    e = edges[keep]
    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    return len(np.unique(comp[sites]))
