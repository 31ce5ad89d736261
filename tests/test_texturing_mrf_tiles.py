"""View selection's MRF in tiles (texturing/mrf_tiles.py): the same labels as one solve where the answer
is clear, seams across tile borders paid for, and each tile given only the labels its sites allow."""

from __future__ import annotations

import numpy as np
import pytest

from odm_core.texturing import mrf, mrf_tiles


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sites on an n x n grid (centres in metres) and their 4-neighbour edges."""
    idx = np.arange(n * n).reshape(n, n)
    edges = np.concatenate(
        [
            np.column_stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()]),
            np.column_stack([idx[:-1].ravel(), idx[1:].ravel()]),
        ]
    )
    yy, xx = np.mgrid[0:n, 0:n]
    return np.column_stack([xx.ravel(), yy.ravel()]).astype(float), edges


def _energy(labels: np.ndarray, edges: np.ndarray, site, label, cost) -> float:
    table = {(int(s), int(k)): float(c) for s, k, c in zip(site, label, cost, strict=True)}
    unary = sum(table[(i, int(v))] for i, v in enumerate(labels))
    return unary + mrf.MAX_ENERGY * float(np.sum(labels[edges[:, 0]] != labels[edges[:, 1]]))


def test_tiles_find_the_one_solves_labels_and_pay_for_seams(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 60
    centres, edges = _grid(n)
    rng = np.random.default_rng(0)
    # Every site may take one of 6 views; view k is good (cost 0) in the k-th vertical band, noisy elsewhere.
    sites = np.repeat(np.arange(n * n), 6)
    labels = np.tile(np.arange(6), n * n)
    band = (centres[sites, 0] // (n / 6)).astype(int)
    cost = np.where(band == labels, 0.0, 400.0 + rng.uniform(0, 500, len(sites)))
    cost[rng.random(len(sites)) < 0.05] = 0.0  # a few sites prefer a wrong view: smoothing must win
    whole = mrf.solve_potts(n * n, edges, sites, labels, cost, 6)
    monkeypatch.setattr(mrf_tiles, "TILE_SITES", 400)  # 9 tiles of 20 x 20
    tiled = mrf_tiles.solve_potts_tiled(centres, edges, sites, labels, cost)
    truth = (centres[:, 0] // (n / 6)).astype(int)
    assert np.mean(whole == truth) > 0.99 and np.mean(tiled == truth) > 0.99
    assert _energy(tiled, edges, sites, labels, cost) <= 1.02 * _energy(whole, edges, sites, labels, cost)


def test_a_tile_only_sees_its_own_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two far apart halves seen by different photos: each tile's cost table has only its photos."""
    n = 40
    centres, edges = _grid(n)
    left = centres[:, 0] < n / 2
    sites = np.arange(n * n)
    labels = np.where(left, 0, 1) + 2 * (centres[:, 1] >= n / 2)  # four photos, one per quadrant
    seen_labels: list[int] = []
    real = mrf.solve_potts

    def spy(n_sites, e, s, lab, c, n_labels):  # type: ignore[no-untyped-def]
        seen_labels.append(n_labels)
        return real(n_sites, e, s, lab, c, n_labels)

    monkeypatch.setattr(mrf_tiles, "solve_potts", spy)
    monkeypatch.setattr(mrf_tiles, "TILE_SITES", 400)
    out = mrf_tiles.solve_potts_tiled(centres, edges, sites, labels, np.zeros(n * n))
    assert np.array_equal(out, labels)
    assert len(seen_labels) == 4 and max(seen_labels) <= 3  # its own photo plus held neighbours' labels
