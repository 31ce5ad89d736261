"""--crop, --dem-euclidean-map: the crop polygon from the cloud's footprint, and the DEM's crop and
distance map on a small flat cloud with holes (no photos needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from pyproj import CRS
from scipy import ndimage

from odm_core.cloud.las import las_points, write_las
from odm_core.dem import gridding as dr
from odm_core.errors import OdmStageError
from odm_core.geo import crop
from odm_core.layout import ProjectTree
from odm_core.options import DemOptions, GeoreferencingOptions, OrthophotoOptions
from odm_core.stages.odm_georeferencing import write_crop_bounds

UTM = (500000.0, 5000000.0)
HOLES = ((5.0, 6.0, 1.2), (14.0, 12.0, 1.5), (9.0, 16.0, 0.8))  # (x, y, radius) in metres from UTM


def flat_cloud(tree: ProjectTree, size_m: float = 20.0, l_shape: bool = False) -> None:
    """A flat cloud over size_m x size_m (an L with l_shape), 100 points per m^2, with round holes."""
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, size_m, (int(100 * size_m * size_m), 2))
    keep = np.ones(len(xy), bool)
    for x, y, r in HOLES:
        keep &= np.hypot(xy[:, 0] - x, xy[:, 1] - y) > r
    if l_shape:
        keep &= ~((xy[:, 0] > size_m / 2) & (xy[:, 1] > size_m / 2))
    xy = xy[keep] + UTM
    pos = np.column_stack([xy, np.full(len(xy), 100.0)])
    n = len(pos)
    las = las_points(pos, np.zeros((n, 3), np.uint8), CRS.from_epsg(32632), user_data=np.zeros(n, np.uint8))
    write_las(tree.georeferenced_model_laz, las, compress=True)


def test_footprint_follows_an_l_shaped_cloud_and_crop_shrinks_it(tmp_path: Path) -> None:
    tree = ProjectTree(tmp_path)
    flat_cloud(tree, 40.0, l_shape=True)
    outline, crs = crop.footprint(tree.georeferenced_model_laz, 0.1)
    assert crs.to_epsg() == 32632
    true_l = shapely.Polygon([(0, 0), (40, 0), (40, 20), (20, 20), (20, 40), (0, 40)])
    true_l = shapely.affinity.translate(true_l, *UTM)
    assert outline.symmetric_difference(true_l).area < 0.05 * true_l.area  # the notch is not filled
    cropped = crop.crop_polygon(outline, 3.0)  # as ODM: the hull, shrunk by 3 + 3 m, grown by 3 m
    hull = true_l.convex_hull
    assert cropped.is_valid and hull.contains(cropped)
    assert cropped.area == pytest.approx(hull.buffer(-6.0).buffer(3.0).area, rel=0.05)
    notch = shapely.Point(UTM[0] + 27, UTM[1] + 27)  # in the L's notch, 4.2 m inside the hull's edge
    assert cropped.contains(notch) and not outline.contains(notch)
    assert not cropped.contains(shapely.Point(UTM[0] + 1, UTM[1] + 20))  # 1 m from the edge: cropped
    with pytest.raises(OdmStageError, match="--crop 30"):
        crop.crop_polygon(outline, 30.0)


def test_bounds_files_follow_the_crop_option(tmp_path: Path) -> None:
    tree = ProjectTree(tmp_path)
    flat_cloud(tree)
    outputs = write_crop_bounds(tree, GeoreferencingOptions(crop=2.0), georeferenced=True)
    assert outputs == [tree.georeferenced_model_bounds_gpkg, tree.georeferenced_model_bounds_geojson]
    for path in outputs:
        info = pyogrio.read_info(path)
        assert info["features"] == 1 and info["geometry_type"] == "MultiPolygon"
        assert CRS.from_user_input(info["crs"]).to_epsg() == 32632
    first = tree.georeferenced_model_bounds_gpkg.read_bytes()
    write_crop_bounds(tree, GeoreferencingOptions(crop=2.0), georeferenced=True)
    assert tree.georeferenced_model_bounds_gpkg.read_bytes() == first  # byte-equal: no needless reruns
    polygon = crop.read_polygon(tree.georeferenced_model_bounds_gpkg)
    assert polygon.bounds == pytest.approx((UTM[0] + 2, UTM[1] + 2, UTM[0] + 18, UTM[1] + 18), abs=0.8)
    assert write_crop_bounds(tree, GeoreferencingOptions(crop=0), georeferenced=True) == []
    assert not tree.georeferenced_model_bounds_gpkg.exists()
    assert not tree.georeferenced_model_bounds_geojson.exists()


def test_boundary_is_the_crop_with_crop_0(tmp_path: Path) -> None:
    tree = ProjectTree(tmp_path)
    flat_cloud(tree)
    square = [[UTM[0] + 4, UTM[1] + 4], [UTM[0] + 12, UTM[1] + 4], [UTM[0] + 12, UTM[1] + 12]]
    ring = [*square, [UTM[0] + 4, UTM[1] + 12], square[0]]
    doc = (
        '{"type": "Polygon", "crs": {"type": "name", "properties": {"name": "EPSG:32632"}}, '
        f'"coordinates": [{ring}]}}'
    )
    write_crop_bounds(tree, GeoreferencingOptions(crop=0, boundary=doc), georeferenced=True)
    polygon = crop.read_polygon(tree.georeferenced_model_bounds_gpkg)
    assert polygon.area == pytest.approx(64.0)


def build_dem(tree: ProjectTree, tile_px: int, monkeypatch: pytest.MonkeyPatch) -> tuple[np.ndarray, ...]:
    """DSM and its euclidean map, built in tiles of tile_px cells."""
    from odm_core.cloud.pieces import run_cloud_piece
    from odm_core.dem.units import run_dem_unit
    from odm_core.stages import odm_dem

    monkeypatch.setattr(odm_dem, "TILE_PX", tile_px)
    opts = DemOptions(dsm=True, dem_resolution=20, dem_gapfill_steps=2, dem_euclidean_map=True)
    plan = odm_dem.plan_odm_dem(tree, opts, f"key{tile_px}")
    results = [run_cloud_piece(p) for p in plan.pieces] + [run_dem_unit(u) for u in plan.raw]
    raw = np.full((plan.grid.height, plan.grid.width), np.nan, np.float32)
    for unit in plan.raw:
        t = unit.tile
        raw[t.row : t.row + t.rows, t.col : t.col + t.cols] = np.load(unit.out)["values"][t.core()]
    odm_dem.fill_dem_coarse(tree, plan, "dsm")
    results += [run_dem_unit(u) for u in plan.final]
    result = odm_dem.finish_odm_dem(tree, plan, results)
    assert tree.dem_euclidean("dsm") in result.outputs
    with rasterio.open(tree.dsm_tif) as dsm, rasterio.open(tree.dem_euclidean("dsm")) as emap:
        assert emap.transform == dsm.transform and emap.dtypes == ("float32",)
        return raw, dsm.read(1), emap.read(1), dsm.transform


def test_dem_is_cropped_and_its_euclidean_map_is_the_distance_to_holes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = ProjectTree(tmp_path)
    flat_cloud(tree)
    write_crop_bounds(tree, GeoreferencingOptions(crop=1.0), georeferenced=True)
    polygon = crop.read_polygon(tree.georeferenced_model_bounds_gpkg)
    raw, dsm, emap, transform = build_dem(tree, 4000, monkeypatch)  # one tile: exact everywhere
    inside = crop.window_mask(polygon, transform, dsm.shape)
    assert (dsm[~inside] == dr.NODATA).all() and (dsm[inside] != dr.NODATA).mean() > 0.99
    hole = np.isnan(raw) | ~inside
    assert (emap[hole] == 0).all()
    np.testing.assert_allclose(emap, ndimage.distance_transform_edt(~hole), atol=1e-4)
    # zero in a hole, then growing by about a cell per cell away from it
    col, row = ~transform @ (UTM[0] + 14.0, UTM[1] + 12.0)
    profile = emap[int(row), int(col) : int(col) + 16]
    assert profile[0] == 0 and (np.diff(profile) >= 0).all() and (np.diff(profile) <= 1.0 + 1e-6).all()
    assert profile[-1] >= 7

    _, tiled_dsm, tiled_emap, _ = build_dem(tree, 30, monkeypatch)  # 30-cell tiles: mostly beyond the halo
    exact = np.isclose(tiled_emap, emap, atol=1e-4)
    assert exact.mean() > 0.7
    assert np.abs(tiled_emap - emap).max() <= 10 * np.sqrt(2) + 1


def test_cutline_goes_around_a_building_inside_the_crop() -> None:
    from odm_core.ortho.cutline import edge_cost, least_cost_cutline

    size = 200
    gray = np.full((size, size), 100.0, np.float32)
    # across the inner part of the west side's band (16 px wide), where the shortest loop would run
    building = (slice(90, 130), slice(10, 30))
    gray[building] = 220.0
    gray[:, 150:] = 40.0  # a long step parallel to the east edge, deeper than the band: never crossed
    transform = rasterio.transform.from_origin(UTM[0], UTM[1] + size, 1.0, 1.0)
    square = shapely.box(UTM[0] + 2, UTM[1] + 2, UTM[0] + size - 2, UTM[1] + size - 2)
    line = least_cost_cutline(edge_cost(gray), transform, square)
    assert isinstance(line, shapely.Polygon) and line.is_valid
    assert square.buffer(1e-6).contains(line)
    assert line.area > 0.7 * square.area  # within the band along the edge, not a small loop
    xs, ys = transform @ (np.array([building[1].start, building[1].stop]), np.array([90, 130]))
    roof = shapely.box(min(xs), min(ys), max(xs), max(ys)).buffer(-2.0)
    assert not line.boundary.intersects(roof)  # the cut passes beside the building, not through it
    assert line.contains(roof)  # ... on its outer side, the only way round it within the band


def test_crop_cutline_and_euclidean_map_on_the_synthetic_survey(
    processed: ProjectTree, tmp_path: Path
) -> None:
    from tests.inprocess import copy_processed, run_stage

    tree = copy_processed(processed, tmp_path / "crop")
    bounds = crop.read_polygon(tree.georeferenced_model_bounds_gpkg)  # --crop 3 by default
    assert pyogrio.read_info(tree.georeferenced_model_bounds_geojson)["features"] == 1
    run_stage(tree, "odm_dem", DemOptions(dsm=True, dem_euclidean_map=True))
    run_stage(tree, "odm_orthophoto", OrthophotoOptions(orthophoto_cutline=True))
    with rasterio.open(tree.dsm_tif) as dsm, rasterio.open(tree.dem_euclidean("dsm")) as emap:
        values, distance = dsm.read(1), emap.read(1)
        inside = crop.window_mask(bounds, dsm.transform, dsm.shape)
    assert (values[~inside] == dr.NODATA).all() and (values[inside] != dr.NODATA).any()
    assert (distance[~inside] == 0).all() and distance[inside].max() > 10
    assert (np.abs(np.diff(distance, axis=1)) <= 1 + 1e-4).all()  # a distance map: 1 cell per cell at most
    with rasterio.open(tree.orthophoto_tif) as ortho:
        alpha = ortho.read(4)
        assert (alpha[~crop.window_mask(bounds, ortho.transform, alpha.shape)] == 0).all()
    info = pyogrio.read_info(tree.orthophoto_cutline)
    assert info["features"] == 1 and CRS.from_user_input(info["crs"]).to_epsg() == 32632
    line = crop.read_polygon(tree.orthophoto_cutline)
    assert line.is_valid and bounds.buffer(1e-6).contains(line) and line.area > 0.5 * bounds.area

    run_stage(tree, "odm_dem", DemOptions(dsm=True))  # options off: their files go
    run_stage(tree, "odm_orthophoto", OrthophotoOptions())
    assert not tree.dem_euclidean("dsm").exists() and not tree.orthophoto_cutline.exists()


def test_a_cloud_without_crs_is_a_local_model_that_cannot_be_cropped_by_a_polygon(tmp_path: Path) -> None:
    from odm_core.dem.surface import cloud_extent, raster_crs

    laz = tmp_path / "no_crs.laz"
    pos = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 2.0]])
    write_las(laz, las_points(pos, np.zeros((2, 3), np.uint8)), compress=True)
    bounds, crs_wkt = cloud_extent(laz, "grid")  # a model in a local frame: rasters without CRS
    assert bounds == (0.0, 0.0, 1.0, 1.0) and crs_wkt == "" and raster_crs(crs_wkt) is None
    with pytest.raises(OdmStageError, match=r"no_crs\.laz records no CRS"):
        crop.laz_crs(laz)


def test_surface_fill_covers_the_crop_area_only_when_given_it(tmp_path: Path) -> None:
    """The orthophoto's surface fills all of the (hull) crop area; a DEM's stays within the data."""
    from shapely.geometry import box

    from odm_core.cloud.smrf import SmrfParams
    from odm_core.dem.surface import fill_coarse
    from odm_core.dem.units import COARSE, DemUnit
    from odm_core.worker import load_arrays, save_arrays

    grid = dr.DemGrid(west=0.0, north=40.0, resolution_m=0.1, width=400, height=400)
    coarse = np.full((40, 40), np.nan, np.float32)  # an L of data, 1 m cells: its notch is empty
    coarse[:, :20] = 1.0
    coarse[20:, :] = 1.0
    raw = tmp_path / "raw.npz"
    save_arrays(raw, "k", coarse=coarse)
    tile = dr.Tile(0, 0, 400, 400, 0)
    unit = DemUnit("dsm", "raw", (), grid, tile, (0.1,), SmrfParams(), (), str(raw), "k")
    hull = box(0.0, 0.0, 40.0, 40.0)  # the L's convex hull (in the grid's metres)
    for area, notch_inside in ((None, False), (hull, True)):
        out = tmp_path / f"coarse_{area is not None}.npz"
        fill_coarse(grid, [unit], out, "k", "DSM", area)
        footprint = load_arrays(str(out))["footprint"]
        assert footprint.shape == (400 // COARSE, 400 // COARSE) and footprint[30, 5]  # data: inside
        assert footprint[5, 35] == notch_inside  # the notch (north-east): only within a given crop
