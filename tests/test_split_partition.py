"""Split partition (odm_core.split.partition): balanced, compact, deterministic cores, ODM's overlap rule,
image_groups.txt, and the ownership cutline."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import shapely

from odm_core.errors import OdmInputError
from odm_core.split.partition import (
    Ownership,
    Submodel,
    clusters_geojson,
    partition,
    read_image_groups,
)

ORIGIN = np.array([500_000.0, 4_000_000.0])  # UTM-sized coordinates


def grid(cols: int = 20, rows: int = 15, step_m: float = 10.0) -> tuple[list[str], np.ndarray]:
    gx, gy = np.meshgrid(np.arange(cols) * step_m, np.arange(rows) * step_m)
    xy = np.column_stack([gx.ravel(), gy.ravel()]) + ORIGIN
    return [f"IMG_{i:04d}.JPG" for i in range(len(xy))], xy


def uneven() -> tuple[list[str], np.ndarray]:
    """250 photos in a dense 40 m blob and 50 spread over a square kilometre: plain k-means puts most of
    the photos in one cluster."""
    rng = np.random.default_rng(7)
    xy = np.concatenate([rng.normal(0, 20, (250, 2)), rng.uniform(-500, 500, (50, 2))]) + ORIGIN
    return [f"P{i:03d}.jpg" for i in range(len(xy))], xy


def assert_cores_partition(subs: list[Submodel], names: list[str]) -> None:
    cores = [c for s in subs for c in s.core]
    assert sorted(cores) == sorted(names) and len(cores) == len(set(cores))
    for s in subs:
        assert list(s.core) == sorted(s.core) and list(s.photos) == sorted(s.photos)
        assert set(s.core) <= set(s.photos)


def assert_compact(subs: list[Submodel], names: list[str], xy: np.ndarray) -> None:
    """No core's convex hull holds another core's photo."""
    row = {n: i for i, n in enumerate(names)}
    for s in subs:
        hull = shapely.MultiPoint(xy[[row[p] for p in s.core]]).convex_hull
        others = [row[p] for t in subs if t is not s for p in t.core]
        inside = shapely.contains_xy(hull, xy[others, 0], xy[others, 1])
        assert not inside.any(), f"{s.name}'s hull holds {int(inside.sum())} photos of other cores"


def test_grid_gives_three_submodels_whose_cores_partition_the_photos() -> None:
    names, xy = grid()
    subs = partition(names, xy, split=100, overlap_m=0.0)
    assert [s.name for s in subs] == ["submodel_0000", "submodel_0001", "submodel_0002"]
    assert_cores_partition(subs, names)
    # overlap 0 on a grid (no two photos at one spot): photos are the core
    assert all(s.photos == s.core for s in subs)


def test_grid_cores_are_balanced_and_compact() -> None:
    names, xy = grid()
    subs = partition(names, xy, split=100, overlap_m=15.0)
    assert all(0 < len(s.core) <= math.floor(100 * 1.2) for s in subs)
    assert_compact(subs, names, xy)


def test_uneven_density_is_balanced_and_stays_compact() -> None:
    names, xy = uneven()
    subs = partition(names, xy, split=60, overlap_m=0.0)
    assert len(subs) == 5
    assert_cores_partition(subs, names)
    assert all(0 < len(s.core) <= math.floor(60 * 1.2) for s in subs), [len(s.core) for s in subs]
    assert_compact(subs, names, xy)


def test_partition_is_deterministic() -> None:
    """Also on scattered photos in many clusters, where k-means from other seeds ends elsewhere."""
    scattered = np.random.default_rng(5).uniform(0, 1000, (600, 2)) + ORIGIN
    cases = [(*grid(), 60), (*uneven(), 60), ([f"S{i}" for i in range(600)], scattered, 30)]
    for names, xy, split in cases:
        assert partition(names, xy, split, 20.0) == partition(names, xy.copy(), split, 20.0)


def test_overlap_adds_exactly_the_photos_within_the_radius() -> None:
    names, xy = grid()
    overlap_m = 15.0
    subs = partition(names, xy, split=100, overlap_m=overlap_m)
    row = {n: i for i, n in enumerate(names)}
    for s in subs:
        core = xy[[row[p] for p in s.core]]
        nearest = np.linalg.norm(xy[:, None, :] - core[None, :, :], axis=2).min(axis=1)
        expected = {n for n, d in zip(names, nearest, strict=True) if d <= overlap_m}
        assert set(s.photos) == expected
        assert len(s.photos) > len(s.core)  # a 15 m radius reaches across to the neighbours


def test_few_photos_give_one_submodel_with_every_photo() -> None:
    names, xy = grid(5, 4)
    assert partition(names, xy, split=20, overlap_m=50.0) == [
        Submodel("submodel_0000", tuple(sorted(names)), tuple(sorted(names)))
    ]


def test_groups_give_one_submodel_per_group_in_sorted_order() -> None:
    names, xy = grid(4, 2)  # x = 0, 10, 20, 30 m; two rows
    groups = {n: ("west" if xy[i, 0] - ORIGIN[0] < 15 else "east") for i, n in enumerate(names)}
    subs = partition(names, xy, split=2, overlap_m=10.0, groups=groups)
    assert [s.name for s in subs] == ["submodel_0000", "submodel_0001"]
    east, west = subs  # "east" < "west"
    assert set(east.core) == {n for n in names if groups[n] == "east"}
    assert set(west.core) == {n for n in names if groups[n] == "west"}
    # overlap 10 m: the x = 10 column joins east, the x = 20 column joins west
    col = {n: round(xy[i, 0] - ORIGIN[0]) for i, n in enumerate(names)}
    assert {col[n] for n in east.photos} == {10, 20, 30}
    assert {col[n] for n in west.photos} == {0, 10, 20}


def test_groups_must_hold_every_photo() -> None:
    names, xy = grid(3, 1)
    with pytest.raises(OdmInputError, match="IMG_0002.JPG is in no image group .*IMG_0002.JPG GROUP"):
        partition(names, xy, 2, 0.0, groups={names[0]: "a", names[1]: "b"})


def test_bad_options_and_shapes_are_named() -> None:
    names, xy = grid(3, 2)
    with pytest.raises(OdmInputError, match="--split "):
        partition(names, xy, split=1, overlap_m=0.0)
    with pytest.raises(OdmInputError, match="--split-overlap"):
        partition(names, xy, split=2, overlap_m=-1.0)
    with pytest.raises(OdmInputError, match="shape"):
        partition(names[:-1], xy, split=2, overlap_m=0.0)
    with pytest.raises(OdmInputError, match="shape"):
        partition(names, xy[:, :1], split=2, overlap_m=0.0)


def test_read_image_groups(tmp_path: Path) -> None:
    path = tmp_path / "image_groups.txt"
    path.write_text("a.jpg g1\n\n  b.jpg\tg2  \nc.jpg g1\n")
    assert read_image_groups(path) == {"a.jpg": "g1", "b.jpg": "g2", "c.jpg": "g1"}
    path.write_text("a.jpg g1\n\nb.jpg\n")
    with pytest.raises(OdmInputError, match=rf"{path} line 3"):
        read_image_groups(path)
    path.write_text("a.jpg g1\nb.jpg g2 extra\n")
    with pytest.raises(OdmInputError, match=rf"{path} line 2"):
        read_image_groups(path)
    path.write_text("a.jpg g1\nb.jpg g1\na.jpg g2\n")
    with pytest.raises(OdmInputError, match=rf"{path} line 3.*a.jpg"):
        read_image_groups(path)
    path.write_text("\n  \n")
    with pytest.raises(OdmInputError, match=rf"{path}: no 'photo_filename group_name' line"):
        read_image_groups(path)
    with pytest.raises(OdmInputError, match=rf"{tmp_path / 'absent.txt'}: cannot read it"):
        read_image_groups(tmp_path / "absent.txt")


def test_ownership_is_the_nearest_core_photo() -> None:
    rng = np.random.default_rng(3)
    cores = [rng.uniform(0, 100, (n, 2)) + ORIGIN for n in (5, 1, 12, 7)]
    points = rng.uniform(-20, 120, (2000, 2)) + ORIGIN
    brute = np.stack([np.linalg.norm(points[:, None] - c[None], axis=2).min(axis=1) for c in cores], axis=1)
    own = Ownership(cores)
    np.testing.assert_allclose(own.distances(points), brute)
    assert own.distances(points).dtype == np.float64
    np.testing.assert_array_equal(own.owner(points), brute.argmin(axis=1))
    # a point equidistant from two submodels goes to the lower index
    tie = Ownership([np.array([[10.0, 0.0]]), np.array([[-10.0, 0.0]])])
    assert tie.owner(np.array([[0.0, 5.0]])).tolist() == [0]


def test_ownership_survives_pickling() -> None:
    rng = np.random.default_rng(4)
    own = Ownership([rng.uniform(0, 50, (8, 2)), rng.uniform(40, 90, (6, 2))])
    copy = pickle.loads(pickle.dumps(own))
    points = rng.uniform(0, 90, (500, 2))
    np.testing.assert_array_equal(copy.owner(points), own.owner(points))
    np.testing.assert_array_equal(copy.distances(points), own.distances(points))


def test_clusters_geojson_outlines_each_submodel() -> None:
    names, xy = grid()
    subs = partition(names, xy, split=100, overlap_m=15.0)
    doc = clusters_geojson(subs, names, xy, 32615)
    assert doc["type"] == "FeatureCollection"
    assert doc["crs"] == {"type": "name", "properties": {"name": "EPSG:32615"}}
    row = {n: i for i, n in enumerate(names)}
    for sub, feature in zip(subs, doc["features"], strict=True):
        props = feature["properties"]
        assert props == {"submodel": sub.name, "photos": len(sub.photos), "core": len(sub.core)}
        polygon = shapely.geometry.shape(feature["geometry"])
        pts = xy[[row[p] for p in sub.photos]]
        assert shapely.covers(polygon, shapely.points(pts)).all()
        assert polygon.area == pytest.approx(shapely.MultiPoint(pts).convex_hull.area)
    # photos on one line: a buffered outline, still a polygon holding them
    line = clusters_geojson(
        [Submodel("submodel_0000", ("a", "b"), ("a", "b"))], ["a", "b"], xy[:2], "EPSG:32615"
    )
    polygon = shapely.geometry.shape(line["features"][0]["geometry"])
    assert polygon.geom_type == "Polygon" and polygon.area > 0
    assert shapely.covers(polygon, shapely.points(xy[:2])).all()


def test_split_record_round_trips_and_names_a_file_it_cannot_read(tmp_path: Path) -> None:
    from odm_core.errors import OdmStageError
    from odm_core.split.partition import Submodel
    from odm_core.split.record import read_split_record, write_split_record

    path = tmp_path / "split.json"
    assert read_split_record(path) is None  # a survey not split
    submodels = [
        Submodel("submodel_0000", core=("a.jpg",), photos=("a.jpg", "b.jpg")),
        Submodel("submodel_0001", core=("b.jpg", "c.jpg"), photos=("a.jpg", "b.jpg", "c.jpg")),
    ]
    positions = {"a.jpg": [1.0, 2.0], "b.jpg": [3.0, 4.0], "c.jpg": [5.0, 6.0]}
    write_split_record(path, submodels, positions, 32615)
    record = read_split_record(path)
    assert record is not None and record.epsg == 32615
    assert record.names == ["submodel_0000", "submodel_0001"]
    assert record.submodels[1].photos == ("a.jpg", "b.jpg", "c.jpg")
    assert record.submodels[1].core_xy_m.tolist() == [[3.0, 4.0], [5.0, 6.0]]
    path.write_text('{"epsg": 32615, "submodels": [{"name": "submodel_0000"}]}')
    with pytest.raises(OdmStageError, match="split.json: not a split record.*--rerun-from split"):
        read_split_record(path)
