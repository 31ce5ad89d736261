"""View selection's MRF solved tile by tile, so its memory does not grow with the survey.

`mrf.solve_potts` holds a dense (sites x labels) cost table, and gco copies it twice: on a 300-photo survey's
2.5D mesh (400,000 faces, 300 photos) that was 4.3 GiB. Here the faces are cut into square tiles of about
TILE_SITES faces (by their centres); each tile is solved with only the photos that see its faces as labels,
plus, as sites held to the label they already have, its neighbours in the tiles solved before it, so the
Potts cost of a seam across a tile border is paid as inside a tile. Memory: one tile's faces times the
photos seeing that tile, whatever the survey's size. A mesh of at most TILE_SITES faces is one tile: the
same solve as before.
"""

from __future__ import annotations

import math

import numpy as np

from odm_core.texturing.mrf import solve_potts

TILE_SITES = 60_000


def solve_potts_tiled(
    centres: np.ndarray, edges: np.ndarray, site: np.ndarray, label: np.ndarray, cost: np.ndarray
) -> np.ndarray:
    """(n_sites,) int64 labels as `solve_potts` gives them, solved in tiles of about TILE_SITES sites.

    centres: (n_sites, 2) site positions (metres); edges: (E, 2) site pairs; site, label, cost: (P,) the
    allowed (site, label) pairs and their costs (every site needs one)."""
    tiles = _tile_of(centres)
    labels = np.full(len(centres), -1, np.int64)
    for tile in np.unique(tiles):
        _solve_tile(np.flatnonzero(tiles == tile), edges, (site, label, cost), labels)
    return labels


def _tile_of(centres: np.ndarray) -> np.ndarray:
    """Each site's tile number, tiles in row-major order (a square grid over the sites' extent)."""
    n_tiles = max(1, math.ceil(len(centres) / TILE_SITES))
    if n_tiles == 1:
        return np.zeros(len(centres), np.int64)
    low = centres.min(axis=0)
    extent = np.maximum(centres.max(axis=0) - low, 1e-9)
    side = float(np.sqrt(np.prod(extent) / n_tiles))
    counts = np.maximum(1, np.round(extent / side)).astype(np.int64)  # tiles along x and y
    cell = np.minimum(np.floor((centres - low) / extent * counts), counts - 1).astype(np.int64)
    return cell[:, 1] * counts[0] + cell[:, 0]


def _solve_tile(
    members: np.ndarray,
    edges: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    labels: np.ndarray,
) -> None:
    """Solve one tile's sites in place of `labels`, its solved neighbours held at their labels."""
    site, label, cost = pairs
    inside = np.zeros(len(labels), bool)
    inside[members] = True
    touching = edges[inside[edges[:, 0]] | inside[edges[:, 1]]]
    held = np.unique(touching[labels[touching] >= 0])  # solved, so in an earlier tile
    local = np.full(len(labels), -1, np.int64)
    local[members] = np.arange(len(members))
    local[held] = len(members) + np.arange(len(held))
    keep = touching[(local[touching] >= 0).all(axis=1)]
    rows = np.flatnonzero(inside[site])
    tile_site = np.concatenate([local[site[rows]], local[held]])
    tile_label = np.concatenate([label[rows], labels[held]])
    tile_cost = np.concatenate([cost[rows], np.zeros(len(held))])
    used, renumbered = np.unique(tile_label, return_inverse=True)
    solved = solve_potts(len(members) + len(held), local[keep], tile_site, renumbered, tile_cost, len(used))
    labels[members] = used[solved[: len(members)]]
