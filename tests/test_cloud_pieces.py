"""The georeferenced cloud cut once into the tile units' boxes: each box gets exactly the points a whole
read of the LAZ would give it, from pieces that each read only their range of the file."""

from __future__ import annotations

from pathlib import Path

import laspy
import numpy as np
import pytest

from odm_core.cloud import pieces as cp
from odm_core.cloud.las import las_points, write_las


@pytest.fixture()
def laz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    pos = np.column_stack([rng.uniform(0, 100, 5000), rng.uniform(0, 80, 5000), rng.uniform(0, 10, 5000)])
    las = las_points(pos, np.zeros((5000, 3), np.uint8))
    las.classification = rng.integers(1, 3, 5000).astype(np.uint8)
    return write_las(tmp_path / "cloud.laz", las, compress=True)


BOXES = (("a", (0.0, 0.0, 55.0, 45.0)), ("b", (45.0, 35.0, 100.0, 80.0)), ("empty", (200.0, 0.0, 300.0, 9.0)))


def test_each_box_gets_the_points_a_whole_read_gives_it(
    laz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cp, "PIECE_POINTS", 1200)  # 5 pieces, the last of 200 points
    pieces = cp.plan_pieces(laz, BOXES, tmp_path, "stage-key")
    assert [(p.start, p.count) for p in pieces] == [
        (0, 1200),
        (1200, 1200),
        (2400, 1200),
        (3600, 1200),
        (4800, 200),
    ]
    assert [cp.run_cloud_piece(p).n_points for p in pieces] == [1200, 1200, 1200, 1200, 200]
    whole = laspy.read(laz)
    x, y = np.asarray(whole.x), np.asarray(whole.y)
    files = tuple(p.out for p in pieces)
    for name, (minx, miny, maxx, maxy) in BOXES:
        inside = (x >= minx) & (x < maxx) & (y >= miny) & (y < maxy)
        got = cp.box_points(files, name)
        expected = (
            x[inside],
            y[inside],
            np.asarray(whole.z)[inside],
            np.asarray(whole.classification)[inside],
        )
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)  # the same points in the file's order
    assert len(cp.box_points(files, "a")[0]) > 1000 and len(cp.box_points(files, "empty")[0]) == 0
    assert cp.run_cloud_piece(pieces[0]).n_points == -1  # reused from its checkpoint
    moved = cp.plan_pieces(laz, (("a", (0.0, 0.0, 50.0, 45.0)),), tmp_path, "stage-key")
    assert moved[0].key != pieces[0].key  # other boxes: other pieces


def test_an_empty_cloud_has_no_piece(tmp_path: Path) -> None:
    empty = write_las(tmp_path / "empty.laz", las_points(np.zeros((0, 3)), np.zeros((0, 3), np.uint8)), True)
    assert cp.plan_pieces(empty, BOXES, tmp_path, "k") == ()
    assert all(len(a) == 0 for a in cp.box_points((), "a"))
