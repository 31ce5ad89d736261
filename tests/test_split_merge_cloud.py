"""Split-merge of submodel products (odm_core.split.merge_cloud): point clouds cut at the ownership
cutline (no duplicates, no gaps, exact coordinates, attributes kept), streamed and atomic; shots.geojson
and cameras.json."""

from __future__ import annotations

import json
from pathlib import Path

import laspy
import numpy as np
import pytest
from pyproj import CRS

from odm_core.cloud.las import las_points, write_las
from odm_core.errors import OdmStageError
from odm_core.split.merge_cloud import merge_cameras_json, merge_point_clouds, merge_shots_geojson
from odm_core.split.partition import Ownership, Submodel

ORIGIN = np.array([500_000.0, 4_000_000.0, 0.0])
UTM15 = CRS.from_epsg(32615)


def world(x0: int, x1: int) -> np.ndarray:
    """The points of the shared surface with x0 <= x < x1 (local metres), on a 1 m grid over y 0..29, each
    nudged by whole millimetres so no coordinate is round."""
    gx, gy = np.meshgrid(np.arange(x0, x1), np.arange(30))
    x, y = gx.ravel().astype(float), gy.ravel().astype(float)
    x += ((x * 7 + y * 3) % 10) * 0.001
    y += ((x * 5 + y * 11) % 10).round() * 0.001
    z = 100 + 0.25 * x - 0.125 * y + ((x * 13 + y) % 17).round() * 0.001
    return np.column_stack([x, y, z])


def attributes(pos: np.ndarray) -> dict[str, np.ndarray]:
    """Per-point attributes that are a function of the location, so both submodels agree in the overlap."""
    key = np.round(pos[:, 0] * 10 + pos[:, 1]).astype(np.int64)
    return {
        "colours": np.column_stack([key % 256, (key * 3) % 256, (key * 7) % 256]).astype(np.uint8),
        "classification": (key % 3 + 1).astype(np.uint8),
        "user_data": (key % 200).astype(np.uint8),
    }


def write_submodel(path: Path, x0: int, x1: int, source_id: int, crs: CRS = UTM15) -> Path:
    """A submodel cloud as odm_georeferencing writes it (format 7, mm, CRS, views in user_data), with the
    classification set and point_source_id naming the submodel."""
    pos = world(x0, x1) + ORIGIN
    a = attributes(pos)
    las = las_points(pos, a["colours"], crs, user_data=a["user_data"])
    las.classification = a["classification"]
    las.point_source_id = np.full(len(pos), source_id, np.uint16)
    return write_las(path, las, compress=True)


def mm(las: laspy.LasData) -> np.ndarray:
    """(N, 3) int64 coordinates in exact millimetres from the raw integers (offsets are whole metres)."""
    offsets = np.round(np.asarray(las.header.offsets) * 1000).astype(np.int64)
    return np.column_stack([las.X, las.Y, las.Z]).astype(np.int64) + offsets


@pytest.fixture
def sources(tmp_path: Path) -> list[Path]:
    # submodel 0 covers x 0..59, submodel 1 x 40..99: a 20 m overlap holding the same points in both
    return [
        write_submodel(tmp_path / "a" / "model.laz", 0, 60, 0),
        write_submodel(tmp_path / "b" / "model.laz", 40, 100, 1),
    ]


# core photos at x = 10, 30 and x = 70, 90 (y = 15): the cutline is x = 50
CORES = [
    np.array([[10.0, 15.0], [30.0, 15.0]]) + ORIGIN[:2],
    np.array([[70.0, 15.0], [90.0, 15.0]]) + ORIGIN[:2],
]
OWNERSHIP = Ownership(CORES)


def test_merged_cloud_has_each_location_once_from_its_owner(sources: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "merged" / "odm_georeferenced_model.laz"
    result = merge_point_clouds(sources, OWNERSHIP, out)
    merged = laspy.read(out)
    assert result.read == (1800, 1800) and result.written == len(merged.points) == sum(result.kept)
    # every location of the union, each once, at its exact millimetre coordinates
    union = {tuple(p) for s in sources for p in mm(laspy.read(s)).tolist()}
    got = [tuple(p) for p in mm(merged).tolist()]
    assert len(got) == len(set(got)) == len(union) == 3000
    assert set(got) == union
    # from the submodel owning the location, with its attributes
    pos = np.column_stack([merged.x, merged.y, merged.z])
    d0, d1 = (np.linalg.norm(pos[:, None, :2] - c[None], axis=2).min(axis=1) for c in CORES)
    np.testing.assert_array_equal(merged.point_source_id, (d1 < d0).astype(np.uint16))  # ties: submodel 0
    a = attributes(pos)
    np.testing.assert_array_equal(
        np.column_stack([merged.red, merged.green, merged.blue]), a["colours"].astype(np.uint16) * 257
    )
    np.testing.assert_array_equal(merged.classification, a["classification"])
    np.testing.assert_array_equal(merged.user_data, a["user_data"])
    assert merged.header.point_format.id == 7
    assert merged.header.parse_crs().equals(UTM15)
    np.testing.assert_allclose(merged.header.mins, pos.min(axis=0))
    np.testing.assert_allclose(merged.header.maxs, pos.max(axis=0))


def test_small_chunks_give_the_same_cloud(sources: list[Path], tmp_path: Path) -> None:
    whole = merge_point_clouds(sources, OWNERSHIP, tmp_path / "whole.laz")
    chunked = merge_point_clouds(sources, OWNERSHIP, tmp_path / "chunked.laz", chunk_points=1000)
    assert chunked == whole
    a, b = laspy.read(tmp_path / "whole.laz"), laspy.read(tmp_path / "chunked.laz")
    np.testing.assert_array_equal(a.points.array, b.points.array)
    np.testing.assert_array_equal(a.header.offsets, b.header.offsets)


def test_a_different_crs_is_refused_naming_the_file(tmp_path: Path) -> None:
    a = write_submodel(tmp_path / "a.laz", 0, 60, 0)
    b = write_submodel(tmp_path / "b.laz", 40, 100, 1, crs=CRS.from_epsg(32616))
    out = tmp_path / "out" / "merged.laz"
    with pytest.raises(OdmStageError, match=f"{b}.*CRS"):
        merge_point_clouds([a, b], OWNERSHIP, out)
    assert not out.parent.exists() or not list(out.parent.iterdir())


def test_a_failure_while_writing_leaves_no_file(sources: list[Path], tmp_path: Path) -> None:
    """A source whose points are cut short fails mid-stream: no partial output, an earlier output kept."""
    broken = tmp_path / "broken.laz"
    data = sources[1].read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out" / "merged.laz"
    out.parent.mkdir()
    out.write_bytes(b"an earlier, finished merge")
    with pytest.raises(Exception):  # noqa: B017 (laspy's or lazrs's error for the truncated file)
        merge_point_clouds([sources[0], broken], OWNERSHIP, out)
    assert [p.name for p in out.parent.iterdir()] == ["merged.laz"]
    assert out.read_bytes() == b"an earlier, finished merge"


def shot(name: str, x: float) -> dict:
    return {
        "type": "Feature",
        "properties": {"filename": name, "camera": "cam", "translation": [x, 0.0, 100.0]},
        "geometry": {"type": "Point", "coordinates": [x, 0.0, 100.0]},
    }


def test_shots_keep_the_pose_of_the_owning_submodel(tmp_path: Path) -> None:
    docs = [
        [shot("a.jpg", 0.0), shot("b.jpg", 1.0), shot("d.jpg", 3.0)],  # submodel 0: core a; b, d overlap
        [shot("c.jpg", 12.0), shot("b.jpg", 11.0)],  # submodel 1: core b, c, d (d not registered here)
    ]
    paths = []
    for i, features in enumerate(docs):
        paths.append(tmp_path / f"s{i}" / "shots.geojson")
        paths[-1].parent.mkdir()
        paths[-1].write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    subs = [
        Submodel("submodel_0000", ("a.jpg",), ("a.jpg", "b.jpg", "d.jpg")),
        Submodel("submodel_0001", ("b.jpg", "c.jpg", "d.jpg"), ("a.jpg", "b.jpg", "c.jpg", "d.jpg")),
    ]
    out = merge_shots_geojson(paths, subs, tmp_path / "odm_report" / "shots.geojson")
    doc = json.loads(out.read_text())
    assert doc["type"] == "FeatureCollection"
    got = {f["properties"]["filename"]: f["properties"]["translation"][0] for f in doc["features"]}
    assert list(got) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert got == {"a.jpg": 0.0, "b.jpg": 11.0, "c.jpg": 12.0, "d.jpg": 3.0}
    with pytest.raises(OdmStageError, match="missing.geojson"):
        merge_shots_geojson([paths[0], tmp_path / "missing.geojson"], subs, tmp_path / "x.geojson")


def test_cameras_are_the_union_first_wins(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"v2 cam1": {"focal": 0.8}, "v2 cam2": {"focal": 0.7}}))
    b.write_text(json.dumps({"v2 cam2": {"focal": 0.9}, "v2 cam3": {"focal": 0.6}}))
    out = merge_cameras_json([a, b], tmp_path / "cameras.json")
    assert json.loads(out.read_text()) == {
        "v2 cam1": {"focal": 0.8},
        "v2 cam2": {"focal": 0.7},
        "v2 cam3": {"focal": 0.6},
    }
