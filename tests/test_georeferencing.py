"""odm_georeferencing: the LAZ's CRS, UTM coordinates, colours and views; LAS/CSV exports."""

from __future__ import annotations

from pathlib import Path

import laspy
import numpy as np
import pytest

from odm_core.artifacts import write_json
from odm_core.cloud.ply import empty_points, write_ply
from odm_core.errors import OdmStageError
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options import GeoreferencingOptions
from odm_core.stages.odm_georeferencing import odm_georeferencing

GEOREF = GeoReference(32615, 576000, 5188000)


def filtered_cloud(
    tmp_path: Path, georeferenced: bool = True, n: int = 2000
) -> tuple[ProjectTree, np.ndarray]:
    rng = np.random.default_rng(3)
    tree = ProjectTree(tmp_path)
    pts = empty_points(n)
    pts["x"], pts["y"] = rng.uniform(-400, 400, (2, n))
    pts["z"] = rng.uniform(150, 250, n)
    for field in ("red", "green", "blue"):
        pts[field] = rng.integers(0, 256, n)
    pts["views"] = rng.integers(0, 256, n)
    write_ply(tree.filtered_point_cloud, pts)
    if georeferenced:  # what dataset (coords.txt) and opensfm (reference_lla.json: aligned) write
        GEOREF.write(tree.coords_txt, tree.proj_txt)
        write_json(tree.reference_lla_json, {"latitude": 46.8, "longitude": -92.0, "altitude": 0.0})
    return tree, pts


def model_xyz(pts: np.ndarray) -> np.ndarray:
    return np.column_stack([pts["x"], pts["y"], pts["z"]]).astype(np.float64)


def las_xyz(las: laspy.LasData) -> np.ndarray:
    return np.column_stack([las.x, las.y, las.z])


def test_laz_is_georeferenced_with_colours_and_views(tmp_path: Path) -> None:
    tree, pts = filtered_cloud(tmp_path)
    result = odm_georeferencing(tree, GeoreferencingOptions())
    bounds = (tree.georeferenced_model_bounds_gpkg, tree.georeferenced_model_bounds_geojson)
    assert result.outputs == (tree.georeferenced_model_laz, *bounds)  # --crop 3 by default, as in ODM
    assert (result.n_points, result.epsg) == (len(pts), 32615)
    las = laspy.read(tree.georeferenced_model_laz)
    assert las.header.version == laspy.header.Version(1, 4)
    assert las.header.point_format.id == 7
    assert las.header.are_points_compressed
    np.testing.assert_allclose(las.header.scales, 0.001)
    assert las.header.parse_crs().to_epsg() == 32615
    np.testing.assert_allclose(las_xyz(las), model_xyz(pts) + GEOREF.offset, rtol=0, atol=1e-3)
    for field in ("red", "green", "blue"):
        np.testing.assert_array_equal(las[field], pts[field].astype(np.uint16) * 257)
    np.testing.assert_array_equal(las.user_data, pts["views"])


def test_las_and_csv_exports_agree_and_follow_options(tmp_path: Path) -> None:
    tree, pts = filtered_cloud(tmp_path)
    result = odm_georeferencing(tree, GeoreferencingOptions(pc_las=True, pc_csv=True))
    assert result.outputs == (
        tree.georeferenced_model_laz,
        tree.georeferenced_model_las,
        tree.georeferenced_model_csv,
        tree.georeferenced_model_bounds_gpkg,
        tree.georeferenced_model_bounds_geojson,
    )
    laz = laspy.read(tree.georeferenced_model_laz)
    las = laspy.read(tree.georeferenced_model_las)
    assert not las.header.are_points_compressed
    assert las.header.parse_crs().to_epsg() == 32615
    np.testing.assert_array_equal(las.points.array, laz.points.array)

    lines = tree.georeferenced_model_csv.read_text().splitlines()
    assert lines[0] == "X,Y,Z,Red,Green,Blue,Views"
    assert len(lines[1].split(",")[0].split(".")[1]) == 3  # 3 decimals
    csv = np.loadtxt(tree.georeferenced_model_csv, delimiter=",", skiprows=1)
    assert len(csv) == len(pts)
    np.testing.assert_allclose(csv[:, :3], las_xyz(laz), rtol=0, atol=1.001e-3)
    np.testing.assert_array_equal(csv[:, 3:6] * 257, np.column_stack([laz.red, laz.green, laz.blue]))
    np.testing.assert_array_equal(csv[:, 6], laz.user_data)

    again = odm_georeferencing(tree, GeoreferencingOptions(crop=0))
    assert again.outputs == (tree.georeferenced_model_laz,)
    assert not tree.georeferenced_model_bounds_gpkg.exists()
    assert not tree.georeferenced_model_las.exists()
    assert not tree.georeferenced_model_csv.exists()


def test_without_georeference_laz_is_in_model_frame(tmp_path: Path) -> None:
    tree, pts = filtered_cloud(tmp_path, georeferenced=False)
    result = odm_georeferencing(tree, GeoreferencingOptions())
    assert result.epsg is None
    las = laspy.read(tree.georeferenced_model_laz)
    assert las.header.parse_crs() is None
    np.testing.assert_allclose(las_xyz(las), model_xyz(pts), rtol=0, atol=1e-3)


def test_missing_filtered_cloud_raises(tmp_path: Path) -> None:
    with pytest.raises(OdmStageError, match="odm_filterpoints"):
        odm_georeferencing(ProjectTree(tmp_path), GeoreferencingOptions())
