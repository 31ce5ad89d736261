"""odm_orthophoto: against the synthetic true orthophoto, as an RGBA COG; occlusion; its options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from odm_core.camera.view import ViewCamera
from odm_core.evaluate.ortho_truth import ortho_accuracy
from odm_core.layout import ProjectTree
from odm_core.options import DemOptions, OrthophotoOptions
from odm_core.ortho.render import project, visible
from odm_core.outputs import key_outputs
from odm_core.synthetic import SyntheticTruth
from tests.inprocess import copy_processed, expected, run_flow, run_stage, states


def test_orthophoto_is_an_rgba_cog_in_the_projects_crs(processed: ProjectTree) -> None:
    from rio_cogeo.cogeo import cog_validate

    valid, errors, _ = cog_validate(str(processed.orthophoto_tif))
    assert valid, errors
    with rasterio.open(processed.orthophoto_tif) as src:
        assert src.count == 4 and src.dtypes[0] == "uint8" and src.crs.to_epsg() == 32632
        assert src.colorinterp[3] == rasterio.enums.ColorInterp.alpha
        assert src.profile["tiled"] and src.overviews(1)
        alpha = src.read(4)
    assert set(np.unique(alpha)) == {0, 255}
    assert not processed.orthophoto_work.exists()


def test_orthophoto_lines_up_with_the_true_one(survey: SyntheticTruth, processed: ProjectTree) -> None:
    acc = ortho_accuracy(survey.project_dir / "truth", processed.orthophoto_tif, processed.shots_geojson)
    assert acc.tiles >= 20
    assert acc.median_shift_px <= 1.0  # acceptance: at output resolution, per tile
    assert acc.covered >= 0.6


def test_orthophoto_options(processed: ProjectTree, tmp_path: Path) -> None:
    tree = copy_processed(processed, tmp_path / "opts")
    opts = OrthophotoOptions(orthophoto_png=True, orthophoto_compression="JPEG", orthophoto_resolution=20)
    run_stage(tree, "odm_orthophoto", opts)
    with rasterio.open(tree.orthophoto_tif) as src:
        assert src.res == pytest.approx((0.2, 0.2))
        assert src.compression == rasterio.enums.Compression.jpeg
    assert tree.orthophoto_png.is_file()


@pytest.mark.slow
def test_skip_orthophoto_removes_its_outputs(
    processed: ProjectTree, tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    tree = copy_processed(processed, tmp_path / "skip")
    run_stage(tree, "odm_orthophoto", OrthophotoOptions(orthophoto_png=True, orthophoto_resolution=20))
    assert tree.orthophoto_tif.is_file() and tree.orthophoto_png.is_file()
    # through the pipeline: --skip-orthophoto re-runs the orthophoto stage, which removes its outputs, and
    # the report that showed it
    assert states(run_flow(tree, skip_orthophoto=True)) == expected("odm_orthophoto", "odm_report")
    assert not tree.orthophoto_tif.exists() and not tree.orthophoto_png.exists()


def _nadir(x_m: float, height_m: float) -> ViewCamera:
    rotation = np.diag([1.0, -1.0, -1.0])
    translation = -rotation @ np.array([x_m, 0.0, height_m])
    pose = tuple(np.hstack([rotation, translation[:, None]]).ravel())
    return ViewCamera(
        0,
        "v",
        "",
        "PINHOLE",
        (1000.0, 1000.0, 1000.0, 750.0),
        2000,
        1500,
        pose,
        2000,
        1500,
        1000.0,
        1.0,
        100.0,
    )


def test_a_roof_hides_the_ground_behind_it() -> None:
    view = _nadir(-10.0, 40.0)  # looking straight down, the building lies to the camera's right
    xs = np.arange(-10.0, 20.0, 0.1)
    ground = np.column_stack([xs, np.zeros_like(xs), np.zeros_like(xs)])
    roof_x = np.arange(0.0, 5.0, 0.1)
    roof = np.column_stack([roof_x, np.zeros_like(roof_x), np.full_like(roof_x, 10.0)])
    points = np.vstack([ground[(xs < 0) | (xs >= 5)], roof])
    seen = visible(view, *project(view, points))
    hidden_x = points[~seen, 0]
    # from x = -10 m at 40 m, a 10 m high roof from 0 to 5 m hides the ground from 5 to 5 + 10 * 15 / 30 m
    assert hidden_x.min() >= 5.0 and 9.5 <= hidden_x.max() <= 10.3
    assert np.all(seen[points[:, 2] == 10.0])
    assert np.all(seen[(points[:, 2] == 0) & (points[:, 0] < 0)])


def test_tiles_kmz_and_no_cog(processed: ProjectTree, tmp_path: Path) -> None:
    import json
    import zipfile

    import cv2

    tree = copy_processed(processed, tmp_path / "tiles")
    run_stage(tree, "odm_dem", DemOptions(dsm=True, tiles=True, cog=False))
    run_stage(tree, "odm_orthophoto", OrthophotoOptions(tiles=True, orthophoto_kmz=True, cog=False))
    for folder in (tree.orthophoto_tiles, tree.dsm_tiles):
        zooms = sorted(int(z.name) for z in folder.iterdir())
        assert zooms == list(range(zooms[0], zooms[-1] + 1)) and zooms[-1] >= 19
        top = sorted(folder.glob(f"{zooms[-1]}/*/*.png"))
        assert cv2.imread(str(top[len(top) // 2]), cv2.IMREAD_UNCHANGED).shape == (256, 256, 4)
    assert not tree.dtm_tiles.exists() and not list(tree.root.rglob("*.part"))
    listed = key_outputs(tree)  # what the run's summary links to
    assert {"orthophoto KMZ", "orthophoto tiles (XYZ)", "DSM tiles (XYZ)"} <= listed.keys()
    assert "DTM tiles (XYZ)" not in listed
    recorded = json.loads(tree.manifest("odm_orthophoto").read_text())["outputs"]
    assert len([k for k in recorded if k.startswith("orthophoto_tiles/")]) == len(
        list(tree.orthophoto_tiles.rglob("*.png"))
    )
    assert "odm_orthophoto/odm_orthophoto.kmz" in recorded
    with zipfile.ZipFile(tree.orthophoto_kmz) as kmz:
        assert "doc.kml" in kmz.namelist()
    for raster in (tree.orthophoto_tif, tree.dsm_tif):  # --no-cog: tiled GeoTIFFs with overviews
        with rasterio.open(raster) as src:
            assert (
                src.profile["tiled"]
                and src.overviews(1)
                and src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG"
            )
    run_stage(tree, "odm_dem", DemOptions())  # options off: their outputs go
    run_stage(tree, "odm_orthophoto", OrthophotoOptions())
    assert (
        not tree.orthophoto_tiles.exists()
        and not tree.dsm_tiles.exists()
        and not tree.orthophoto_kmz.exists()
    )


def test_tiles_with_halos_give_the_same_orthophoto_as_one_tile(
    processed: ProjectTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tile units bound a unit's memory; cutting the surface into many of them (with their halos)
    must not change the orthophoto: each tile sees the roofs beyond its edge and the smoothing across it."""
    from odm_core.stages import odm_orthophoto

    def build(tile_px: int, name: str) -> tuple[np.ndarray, int]:
        tree = copy_processed(processed, tmp_path / name)
        monkeypatch.setattr(odm_orthophoto, "TILE_PX", tile_px)
        opts = OrthophotoOptions(orthophoto_resolution=10)
        plan = odm_orthophoto.plan_odm_orthophoto(tree, opts, "key")
        run_stage(tree, "odm_orthophoto", opts)
        with rasterio.open(tree.orthophoto_tif) as src:
            return src.read(), len(plan.tiles)

    (whole, n_whole), (tiled, n_tiled) = build(100_000, "whole"), build(200, "tiled")
    assert n_whole == 1 and n_tiled >= 4
    assert whole.shape == tiled.shape
    covered = (whole[3] > 0) & (tiled[3] > 0)
    assert covered.mean() > 0.5 and np.array_equal(whole[3] > 0, tiled[3] > 0)
    differs = np.abs(whole[:3].astype(int) - tiled[:3].astype(int)).max(axis=0) > 2
    assert differs[covered].mean() < 1e-3
