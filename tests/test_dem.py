"""odm_dem: DSM and DTM against the synthetic truth, as valid COGs; SMRF and tiling on their own."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from odm_core.cloud.smrf import SmrfParams, classify_ground
from odm_core.dem import gridding as dr
from odm_core.evaluate.dem_truth import dem_accuracy
from odm_core.layout import ProjectTree
from odm_core.options import DemOptions, OpenmvsOptions, PipelineOptions
from odm_core.synthetic import SyntheticTruth
from tests.inprocess import copy_processed, run_stage


@pytest.fixture(scope="module")
def dem_run(processed: ProjectTree, tmp_path_factory: pytest.TempPathFactory) -> ProjectTree:
    """The odm_dem stage with --dsm --dtm, run directly on a copy of the processed survey."""
    tree = copy_processed(processed, tmp_path_factory.mktemp("dem") / "survey")
    result = run_stage(tree, "odm_dem", DemOptions(dsm=True, dtm=True))
    assert result.kinds == ("dsm", "dtm") and {tree.dsm_tif, tree.dtm_tif} <= set(result.outputs)
    return tree


def test_dsm_and_dtm_are_valid_cogs(dem_run: ProjectTree) -> None:
    from rio_cogeo.cogeo import cog_validate

    for raster in (dem_run.dsm_tif, dem_run.dtm_tif):
        valid, errors, _ = cog_validate(str(raster))
        assert valid, errors
        with rasterio.open(raster) as src:
            assert src.crs.to_epsg() == 32632
            assert src.dtypes == ("float32",) and src.nodata == dr.NODATA
            assert src.overviews(1)
    assert not dem_run.dem_tiles.exists()  # per-tile checkpoints go once the rasters are written
    assert not list(dem_run.dem.rglob("*.part"))


def test_a_dem_no_longer_asked_for_is_removed(dem_run: ProjectTree, tmp_path: Path) -> None:
    tree = copy_processed(dem_run, tmp_path / "dsm-only")
    assert tree.dtm_tif.is_file()  # from the --dsm --dtm run
    result = run_stage(tree, "odm_dem", DemOptions(dsm=True))
    assert result.kinds == ("dsm",) and tree.dsm_tif.is_file()
    assert not tree.dtm_tif.exists()  # not left to pass for this run's


def test_dsm_matches_the_true_surface(survey: SyntheticTruth, dem_run: ProjectTree) -> None:
    gsd_m = json.loads((survey.project_dir / "truth" / "truth.json").read_text())["gsd_m"]
    acc = dem_accuracy(survey.project_dir / "truth", dem_run.dsm_tif, dem_run.shots_geojson, "dsm")
    assert acc.cell_m == pytest.approx(0.9 * gsd_m, rel=0.01)  # 5 cm asked, capped by the GSD as in ODM
    assert acc.open_ground_rmse_m <= 2 * gsd_m  # acceptance: 2 GSD on open ground
    # Roof outlines at the default --pc-quality medium: the depth maps sample the ground every 28 cm (2.8
    # cells), and the median sits at that limit: 2.24 cells here (51.6% of the outline within 2.24), 2.83
    # on CI's machine, whose floating point moves a few dozen of the 1,593 outline cells
    # (docs/BENCHMARKS.md). The next distance a cell can have is 3.0, which the code before the per-cell
    # radii ladder measured. The 2-cell acceptance is held at full-resolution depth maps (ultra) below.
    assert acc.edge_median_cells <= 2.9
    assert acc.edge_p90_cells <= 9.0


@pytest.mark.slow
def test_dsm_edges_at_full_resolution_depth_maps(
    survey: SyntheticTruth, processed: ProjectTree, tmp_path: Path
) -> None:
    """Roof outlines within 2 cells of the truth, and the 90th percentile within 6, once the depth maps
    have the photos' own resolution (--pc-quality ultra; at the default medium the p90 is 8 cells)."""
    tree = copy_processed(processed, tmp_path / "survey")
    opts = PipelineOptions(openmvs=OpenmvsOptions(pc_quality="ultra"), odm_dem=DemOptions(dsm=True))
    for stage in ("openmvs", "odm_filterpoints", "odm_georeferencing", "odm_dem"):
        run_stage(tree, stage, getattr(opts, stage), workers=2)
    gsd_m = json.loads((survey.project_dir / "truth" / "truth.json").read_text())["gsd_m"]
    acc = dem_accuracy(survey.project_dir / "truth", tree.dsm_tif, tree.shots_geojson, "dsm")
    assert acc.edge_median_cells <= 2.0  # acceptance: building edges within 2 cells
    assert acc.edge_p90_cells <= 6.0
    assert acc.open_ground_rmse_m <= gsd_m


def test_dtm_is_the_terrain_without_buildings(survey: SyntheticTruth, dem_run: ProjectTree) -> None:
    truth = survey.project_dir / "truth"
    gsd_m = json.loads((truth / "truth.json").read_text())["gsd_m"]
    acc = dem_accuracy(truth, dem_run.dtm_tif, dem_run.shots_geojson, "dtm")
    assert acc.open_ground_rmse_m <= 2 * gsd_m
    buildings = json.loads((truth / "truth.json").read_text())["buildings"]
    with rasterio.open(dem_run.dsm_tif) as dsm, rasterio.open(dem_run.dtm_tif) as dtm:
        for b in buildings:
            row, col = dsm.index(*b["centre_utm"])
            if 0 <= row < dsm.height and 0 <= col < dsm.width and dsm.read(1)[row, col] != dr.NODATA:
                # the roof stands above the DTM by about the building's height
                assert dsm.read(1)[row, col] - dtm.read(1)[row, col] > 0.7 * b["height_m"]


def test_smrf_leaves_a_box_on_a_slope_out_of_the_ground() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 60, 40_000), rng.uniform(0, 60, 40_000)
    z = 0.1 * x + rng.normal(0, 0.02, len(x))  # a 10% slope
    box = (np.abs(x - 30) < 5) & (np.abs(y - 30) < 5)
    z[box] += 6.0
    ground = classify_ground(x, y, z, SmrfParams())
    assert ground[~box].mean() > 0.98
    assert ground[box].mean() < 0.02


def test_tiles_with_halos_give_the_same_raster_as_one_tile(
    monkeypatch: pytest.MonkeyPatch, dem_run: ProjectTree, tmp_path: Path
) -> None:
    from odm_core.cloud.pieces import run_cloud_piece
    from odm_core.dem.units import run_dem_unit
    from odm_core.options import DemOptions
    from odm_core.stages import odm_dem

    def build(tile_px: int, name: str) -> np.ndarray:
        tree = ProjectTree(tmp_path / name)
        for stage_dir in (dem_run.georeferencing, dem_run.filterpoints, dem_run.opensfm):
            shutil.copytree(stage_dir, tree.root / stage_dir.name, dirs_exist_ok=True)
        monkeypatch.setattr(odm_dem, "TILE_PX", tile_px)
        plan = odm_dem.plan_odm_dem(tree, DemOptions(dsm=True), "key")
        results = [run_cloud_piece(p) for p in plan.pieces] + [run_dem_unit(u) for u in plan.raw]
        odm_dem.fill_dem_coarse(tree, plan, "dsm")
        results += [run_dem_unit(u) for u in plan.final]
        odm_dem.finish_odm_dem(tree, plan, results)
        with rasterio.open(tree.dsm_tif) as src:
            return src.read(1)

    whole, tiled = build(4000, "whole"), build(300, "tiled")
    assert whole.shape == tiled.shape
    assert np.mean(np.abs(whole - tiled) > 1e-3) < 1e-4


def test_an_empty_cell_takes_the_highest_of_its_nearest_points() -> None:
    """Beside a roof, a gap in the points takes the roof's height only where the roof is nearer than
    the ground: the radii between ODM's (the ladder) find the nearest points' band."""
    cells = np.full((9, 15), np.nan, np.float32)
    cells[:, :5] = 5.0  # roof up to column 4
    cells[:, 9:] = 0.0  # ground from column 9; columns 5-8 are the gap
    out = dr.highest_nearby(cells, (4.0,))
    # column 6: 2 cells from the roof, 3 from the ground; column 7: 3 from the roof, 2 from the ground
    np.testing.assert_array_equal(out[4, :9], [5, 5, 5, 5, 5, 5, 5, 0, 0])
    assert np.all(dr.max_within(cells, 4.0)[4, 5:9] == 5.0)  # the largest radius alone: all roof
    assert dr.radius_ladder((2.0,)) == [1.0, math.sqrt(2), 2.0]
    one_cell = dr.highest_nearby(cells, (1.0,))
    assert one_cell[4, 5] == 5.0 and np.isnan(one_cell[4, 7])


def test_truth_footprints_are_found_near_the_raster_edge_in_either_winding() -> None:
    """A building in one corner of the grid: most cells lie outside its first edge, which once flipped the
    inside test (the building's cells then counted as open ground)."""
    from odm_core.evaluate.dem_truth import _inside

    y, x = np.mgrid[0:100, 0:100].astype(float)
    square = np.array([[2.0, 2.0], [12.0, 2.0], [12.0, 12.0], [2.0, 12.0]])
    for corners in (square, square[::-1]):
        inside = _inside(corners, x, y)
        assert inside.sum() == 11 * 11 and inside[7, 7] and not inside[50, 50]
