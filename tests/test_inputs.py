"""Inputs as users bring them: geo.txt, duplicates, missing GPS references and altitudes, stale EXIF sizes,
masks, and the pieces that put a model the right way up (attitude votes, robust similarity)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from odm_core.errors import OdmInputError
from odm_core.layout import ProjectTree
from odm_core.options import DatasetOptions
from odm_core.photos.exif import read_photo
from odm_core.photos.geofile import geo_file_text, read_geo_text
from odm_core.photos.listing import find_mask, list_images
from odm_core.photos.photo import Photo
from odm_core.sfm.gps import gps_errors
from odm_core.sfm.orientation import down_in_camera, levelling_rotation
from odm_core.sfm.similarity import robust_similarity_2d
from odm_core.stages.dataset import dataset
from odm_core.synthetic import SyntheticTruth
from tests.test_exif import make_exif

OPTS = DatasetOptions()


def make_jpeg(path: Path, exif: Image.Exif, size: tuple[int, int] = (64, 48)) -> Path:
    """A small noisy JPEG whose pixels differ for every file name (equal pixels are duplicates)."""
    rng = np.random.default_rng(list(path.name.encode()))
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, "JPEG", exif=exif)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> ProjectTree:
    t = ProjectTree(tmp_path / "project")
    t.images.mkdir(parents=True)
    for i in range(3):
        exif = make_exif(lat=(46.0, 50.0, 30.0 + i), lon=(91.0, 59.0, 40.0 + i))
        make_jpeg(t.images / f"DJI_{i:04d}.JPG", exif)
    return t


# --- geo.txt ------------------------------------------------------------------------------------


def test_geo_txt_in_the_project_replaces_exif_positions(
    tree: ProjectTree, caplog: pytest.LogCaptureFixture
) -> None:
    tree.geo_txt.write_text(
        "WGS84 UTM 15N\n"
        "# easting northing altitude yaw pitch roll h v\n"
        "DJI_0000.JPG 576000.0 5188000.0 250.5 10 -90 0 0.02 0.05\n"
        "DJI_0001.JPG 576010.0 5188000.0\n"
    )
    with caplog.at_level(logging.WARNING):
        dataset(tree, OPTS)
    photos = {p["filename"]: p for p in json.loads(tree.images_json.read_text())}
    first, second, third = photos["DJI_0000.JPG"], photos["DJI_0001.JPG"], photos["DJI_0002.JPG"]
    assert first["altitude"] == 250.5 and first["pitch"] == -90 and first["gps_xy_stddev"] == 0.02
    assert first["gps_z_stddev"] == 0.05
    assert second["altitude"] is None and second["gps_xy_stddev"] == OPTS.gps_accuracy
    assert abs(first["longitude"] - second["longitude"]) > 1e-4  # 10 m apart in UTM
    assert 46.8 < first["latitude"] < 46.9 and -92.05 < first["longitude"] < -91.95
    assert third["latitude"] == pytest.approx(46 + 50 / 60 + 32 / 3600)  # no line: EXIF kept
    assert "geo.txt" in caplog.text and "DJI_0002.JPG" in caplog.text


def test_geo_txt_names_with_spaces_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "geo.txt"
    entries = read_geo_text("EPSG:4326\nmy photo 1.jpg -91.5 46.5 100\n", path, {"my photo 1.jpg"})
    assert entries["my photo 1.jpg"].latitude == 46.5 and entries["my photo 1.jpg"].altitude == 100
    with pytest.raises(OdmInputError, match=r"geo.txt, line 2: 'other.jpg' is not a photo"):
        read_geo_text("EPSG:4326\nother.jpg 1 2\n", path, {"a.jpg"})
    with pytest.raises(OdmInputError, match=r"geo.txt, line 3: expected `image_name x y"):
        read_geo_text("EPSG:4326\na.jpg 1 2\na.jpg\n", path, {"a.jpg"})
    path.write_text("NOT A CRS\na.jpg 1 2\n")
    with pytest.raises(OdmInputError, match=r"line 1: 'NOT A CRS' is not a CRS"):
        geo_file_text(path)
    path.write_text("+proj=utm +zone=32 +datum=WGS84\na.jpg 500000 5000000\n")
    assert geo_file_text(path).startswith("+proj")


# --- duplicates, references, altitudes ----------------------------------------------------------


def test_duplicates_are_named_once_and_used_once(tree: ProjectTree, caplog: pytest.LogCaptureFixture) -> None:
    shutil.copy(tree.images / "DJI_0001.JPG", tree.images / "copy of DJI_0001.JPG")
    shutil.copy(tree.images / "DJI_0002.JPG", tree.images / "DJI_0102.JPG")
    with caplog.at_level(logging.WARNING):
        result = dataset(tree, OPTS)
    assert result.n_photos == 3
    reasons = {s.filename: s.reason for s in result.skipped}
    assert reasons == {
        "DJI_0102.JPG": "duplicate of DJI_0002.JPG (same pixels)",
        "copy of DJI_0001.JPG": "duplicate of DJI_0001.JPG (same pixels)",
    }
    lines = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert len(lines) == 1 and "DJI_0102.JPG" in lines[0] and "copy of DJI_0001.JPG" in lines[0]


def test_missing_hemisphere_references_are_assumed_north_east_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    t = ProjectTree(tmp_path / "p")
    t.images.mkdir(parents=True)
    for i in range(2):
        make_jpeg(t.images / f"a{i}.jpg", make_exif(lat_ref="", lon_ref="", lat=(46.0, 50.0, 30.0 + i)))
    with caplog.at_level(logging.WARNING):
        dataset(t, OPTS)
    photo = read_photo(t.images / "a0.jpg", OPTS)
    assert photo.hemisphere_assumed and photo.longitude is not None and photo.longitude > 0
    assert "north and east were assumed" in caplog.text and "a0.jpg" in caplog.text


def test_photos_without_altitude_are_named_and_left_out_of_vertical_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    t = ProjectTree(tmp_path / "p")
    t.images.mkdir(parents=True)
    make_jpeg(t.images / "with.jpg", make_exif())
    make_jpeg(t.images / "without.jpg", make_exif(alt=None, lat=(46.0, 50.0, 35.0)))
    with caplog.at_level(logging.WARNING):
        dataset(t, OPTS)
    assert "no altitude" in caplog.text and "without.jpg" in caplog.text
    errors = gps_errors(np.array([[1.0, 0.0, 2.0], [0.0, 1.0, np.nan]]))
    assert errors["error"]["z"] == pytest.approx(2.0)  # type: ignore[index]
    assert errors["horizontal_rms"] == pytest.approx(1.0)
    assert gps_errors(np.array([[3.0, 4.0, np.nan]]))["error"]["z"] is None  # type: ignore[index]


def test_focal_ratio_of_a_downscaled_photo_uses_its_recorded_width(tmp_path: Path) -> None:
    # A 4000 px camera with a 6.17 mm sensor (FocalPlaneXResolution 4000 px / 0.617 cm), saved at 100 px.
    exif = make_exif(exif_0x920A=3.61, exif_0xA20E=4000 / 0.617, exif_0xA210=3, exif_0xA002=4000)
    photo = read_photo(make_jpeg(tmp_path / "small.jpg", exif, size=(100, 75)), OPTS)
    assert photo.focal_ratio == pytest.approx(3.61 / 6.17, rel=1e-3)


# --- masks --------------------------------------------------------------------------------------


def test_masks_are_found_beside_their_photo_and_never_listed_as_photos(tree: ProjectTree) -> None:
    Image.new("L", (64, 48), 0).save(tree.images / "DJI_0001_mask.png")
    Image.new("L", (64, 48), 0).save(tree.images / "DJI_0009_mask.PNG")  # no such photo
    photos, skipped = list_images(tree.images)
    assert [p.name for p in photos] == ["DJI_0000.JPG", "DJI_0001.JPG", "DJI_0002.JPG"] and not skipped
    assert find_mask(tree.images, "DJI_0001.JPG") == tree.images / "DJI_0001_mask.png"
    assert find_mask(tree.images, "DJI_0000.JPG") is None


# --- third-party decoder noise ------------------------------------------------------------------


def _tiff_with_private_tags(path: Path) -> Path:
    """A TIFF carrying tags libtiff does not know (as multispectral cameras write), which it warns about."""
    from PIL.TiffImagePlugin import ImageFileDirectory_v2

    tags = ImageFileDirectory_v2()
    tags[50000], tags[51000] = "private", 12
    rng = np.random.default_rng(list(path.name.encode()))
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path, tiffinfo=tags)
    return path


def test_libtiff_warnings_are_said_once_and_never_printed_per_photo(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    import cv2

    from odm_core.photos.decode import read_image

    tree = ProjectTree(tmp_path / "tiffs")
    tree.images.mkdir(parents=True)
    tiffs = [_tiff_with_private_tags(tree.images / f"IMG_{i}.tif") for i in range(3)]
    with caplog.at_level(logging.WARNING, logger="odm_core"):
        dataset(tree, OPTS)
    said = [r.getMessage() for r in caplog.records if "decoders" in r.getMessage()]
    assert len(said) == 1 and "warned about 3 photo(s)" in said[0] and "tag 50000" in said[0], said
    assert all(read_image(t, cv2.IMREAD_COLOR) is not None for t in tiffs)  # the later stages' reads
    printed = capfd.readouterr()
    assert "TIFF" not in printed.err + printed.out, printed


# --- orientation and similarity -----------------------------------------------------------------


def _photo(pitch: float | None, orientation: int = 1) -> Photo:
    return Photo("a.jpg", 10, 10, pitch=pitch, orientation=orientation)


def test_down_in_camera_follows_the_gimbal_pitch() -> None:
    assert np.allclose(down_in_camera(_photo(None)), [0, 0, 1])  # no pitch: nadir, as ODM assumes
    assert np.allclose(down_in_camera(_photo(-90.0)), [0, 0, 1])
    assert np.allclose(down_in_camera(_photo(0.0)), [0, 1, 0])  # level camera: down is the image's down
    half = np.sqrt(0.5)
    assert np.allclose(down_in_camera(_photo(-45.0)), [0, half, half])
    assert np.allclose(down_in_camera(_photo(-45.0, orientation=6)), [half, 0, half])


@pytest.mark.parametrize("down", [[0.3, -0.2, -0.93], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
def test_levelling_rotation_takes_down_to_minus_z(down: list[float]) -> None:
    d = np.array(down) / np.linalg.norm(down)
    rotation = levelling_rotation(d)
    assert np.allclose(rotation @ d, [0, 0, -1]) and np.allclose(rotation @ rotation.T, np.eye(3))
    assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_robust_similarity_ignores_a_gps_jump() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(-50, 50, (30, 2))
    angle = np.radians(37.0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = 2.5 * src @ rot.T + [1000.0, -200.0] + rng.normal(0, 0.3, (30, 2))
    dst[7] += [50.0, 0.0]  # one photo's GPS jumped 50 m
    fit = robust_similarity_2d(src, dst)
    assert fit.scale == pytest.approx(2.5, rel=2e-3)
    assert np.allclose(fit.rotation, rot, atol=2e-3)
    assert fit.weights[7] < 0.1 and np.median(fit.weights) == 1.0
    on_line = np.column_stack([np.linspace(0, 100, 6), np.zeros(6)])  # one flight line is enough
    line_fit = robust_similarity_2d(on_line, on_line @ rot.T * 2.0)
    assert line_fit.scale == pytest.approx(2.0) and np.allclose(line_fit.rotation, rot)


# --- a consumer-grade survey of 42 photos, some with spaces and accents in their names ---------------


@pytest.fixture(scope="module")
def consumer_survey(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticTruth, ProjectTree, Any]:
    """42 photos (above EXHAUSTIVE_MAX_PHOTOS: pairs from GPS neighbours, matched in units whose COLMAP
    pair lists are space-separated), every third renamed with spaces, accents or brackets, and a consumer
    receiver's GPS: ~10 m horizontal drift, altitude error rising to 30% of the flying height, one 50 m
    jump. Through opensfm."""
    from odm_core.options import OpensfmOptions
    from odm_core.synthetic import SyntheticOptions, generate_synthetic
    from tests.inprocess import run_stage

    tmp = tmp_path_factory.mktemp("consumer")
    opts = SyntheticOptions(
        n_cols=7, n_rows=6, n_oblique=0, image_width=480, image_height=360, n_buildings=3,
        gps_sigma_h_m=0.3, gps_sigma_v_m=0.3, gps_drift_m=10.0, gps_altitude_ramp=0.3, gps_jump_m=50.0,
    )  # fmt: skip
    survey = generate_synthetic(tmp / "survey", opts)
    tree = ProjectTree(tmp / "project")
    tree.images.mkdir(parents=True)
    for i, photo in enumerate(sorted(survey.images_dir.iterdir())):
        name = photo.name if i % 3 else f"vol {i} é [{i}].JPG" if i % 2 else f"Flug ü {i}.jpeg"
        shutil.copy(photo, tree.images / name)
    run_stage(tree, "dataset", DatasetOptions())
    return survey, tree, run_stage(tree, "opensfm", OpensfmOptions(feature_quality="medium"))


@pytest.mark.slow
def test_gps_neighbour_pairs_with_spaces_and_accents_in_photo_names_all_register(
    consumer_survey: tuple[SyntheticTruth, ProjectTree, Any],
) -> None:
    import pycolmap

    from odm_core.sfm.pairs import EXHAUSTIVE_MAX_PHOTOS

    survey, tree, result = consumer_survey
    assert survey.n_photos > EXHAUSTIVE_MAX_PHOTOS and any(" " in p.name for p in tree.images.iterdir())
    assert result.n_registered == survey.n_photos, result.unregistered
    with pycolmap.Database.open(tree.colmap_database) as db:
        names = {image.name for image in db.read_all_images()}
        matched = db.num_matched_image_pairs()
    assert names == {p.name for p in tree.images.iterdir()}  # the photos' own names, spaces included
    n = survey.n_photos
    assert 2 * n < matched < n * (n - 1) / 4, "GPS neighbours: a few pairs per photo, not every pair"


@pytest.mark.slow
def test_consumer_gps_errors_neither_tilt_the_dsm_nor_pull_the_cameras(
    consumer_survey: tuple[SyntheticTruth, ProjectTree, Any],
) -> None:
    """The DSM stays level against the truth; the cameras sit as near their GPS as the best similarity
    of the same model would put them."""
    from odm_core.evaluate.dem_truth import dem_tilt_deg
    from odm_core.geo.georef import GeoReference
    from odm_core.options import DemOptions, OpenmvsOptions, PipelineOptions
    from odm_core.sfm.gps import gps_local_m
    from odm_core.sfm.similarity import umeyama
    from odm_core.stages.opensfm import load_photos
    from tests.inprocess import run_stage

    survey, tree, result = consumer_survey
    assert any("levelled" in n for n in result.notes)  # the GPS tilted the model, and the run says so
    run_stage(tree, "openmvs", OpenmvsOptions(pc_quality="lowest"))
    for stage in ("odm_filterpoints", "odm_georeferencing"):
        run_stage(tree, stage, getattr(PipelineOptions(), stage))
    run_stage(tree, "odm_dem", DemOptions(dsm=True))
    assert dem_tilt_deg(survey.project_dir / "truth", tree.dsm_tif) <= 0.5

    stats = json.loads(tree.opensfm_stats.read_text())
    gps = gps_local_m(load_photos(tree.images_json), GeoReference.read(tree.coords_txt))
    names = sorted(stats["gps_residuals"])
    target = np.array([gps[n][:2] for n in names])
    centres = target + np.array([stats["gps_residuals"][n][:2] for n in names])
    scale, rotation, shift = umeyama(centres, target, np.ones(len(names)))
    best = float(np.sqrt(np.mean(np.sum((scale * centres @ rotation.T + shift - target) ** 2, axis=1))))
    assert stats["gps_errors"]["horizontal_rms"] <= 1.05 * best, (stats["gps_errors"]["horizontal_rms"], best)


# --- masks ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_masked_pixels_give_no_features_and_no_depths(small_survey: SyntheticTruth, tmp_path: Path) -> None:
    """ODM's `<stem>_mask.png` beside each photo, black over its left third: no keypoint there, and every
    view's depth maps (photometric and refined) hold no depth there."""
    import pycolmap

    from odm_core.options import OpenmvsOptions, OpensfmOptions
    from odm_core.worker import load_arrays
    from tests.inprocess import run_stage

    tree = ProjectTree(tmp_path / "masked")
    shutil.copytree(small_survey.images_dir, tree.images)
    for photo in sorted(tree.images.iterdir()):
        width, height = Image.open(photo).size
        mask = np.full((height, width), 255, np.uint8)
        mask[:, : width // 3] = 0
        Image.fromarray(mask).save(tree.images / f"{photo.stem}_mask.png")
    run_stage(tree, "dataset", DatasetOptions())
    assert (
        run_stage(tree, "opensfm", OpensfmOptions(feature_quality="lowest")).n_registered
        == small_survey.n_photos
    )
    with pycolmap.Database.open(tree.colmap_database) as db:
        for image in db.read_all_images():
            keypoints = db.read_keypoints(image.image_id)
            assert len(keypoints) > 100 and keypoints[:, 0].min() >= width / 3 - 1, image.name
    run_stage(tree, "openmvs", OpenmvsOptions(pc_quality="lowest"))
    for view in json.loads(tree.openmvs_views.read_text()):
        quarter = view["dm_width"] // 4  # inside the mask's edge wherever undistortion bends it
        for kind in ("depth", "geometric"):
            depth = load_arrays(tree.depthmap(view["name"], kind))["depth"]
            assert not depth[:, :quarter].any() and depth[:, 2 * quarter :].any(), (view["name"], kind)


# --- one straight flight line -------------------------------------------------------------------


@pytest.mark.slow
def test_one_straight_strip_against_the_truth(tmp_path: Path) -> None:
    """8 nadir photos on one line: GPS leaves the roll about it free. Cameras within 3 deg of their true
    attitude, and the DSM on open ground within 2 GSD RMSE of the truth after the camera similarity."""
    from scipy.spatial.transform import Rotation

    from odm_core.evaluate.dem_truth import dem_accuracy
    from odm_core.options import DemOptions, PipelineOptions
    from odm_core.synthetic import SyntheticOptions, generate_synthetic
    from tests.inprocess import run_stage

    opts = SyntheticOptions(
        n_cols=8, n_rows=1, n_oblique=0, image_width=640, image_height=480, n_buildings=3,
        gps_sigma_h_m=0.3, gps_sigma_v_m=0.3,
    )  # fmt: skip
    survey = generate_synthetic(tmp_path / "survey", opts)
    tree = ProjectTree(tmp_path / "strip")
    shutil.copytree(survey.images_dir, tree.images)
    defaults = PipelineOptions()
    for stage in ("dataset", "opensfm", "openmvs", "odm_filterpoints", "odm_georeferencing"):
        run_stage(tree, stage, getattr(defaults, stage))
    run_stage(tree, "odm_dem", DemOptions(dsm=True))
    for stage in ("odm_orthophoto", "odm_report"):  # the report (shots.geojson) shows the orthophoto too
        run_stage(tree, stage, getattr(defaults, stage))
    truth_dir = survey.project_dir / "truth"
    photos = json.loads((truth_dir / "cameras.json").read_text())["photos"]
    true_rotation = {p["filename"]: np.array(p["cam_from_world"]["rotation"]) for p in photos}
    shots = json.loads(tree.reconstruction_json.read_text())[0]["shots"]
    assert len(shots) == survey.n_photos
    for name, shot in shots.items():
        ours = Rotation.from_rotvec(shot["rotation"]).as_matrix()
        assert np.degrees(Rotation.from_matrix(ours @ true_rotation[name].T).magnitude()) <= 3.0, name
    accuracy = dem_accuracy(truth_dir, tree.dsm_tif, tree.shots_geojson, "dsm")
    assert accuracy.open_ground_rmse_m <= 2 * survey.gsd_m, accuracy


# --- no GPS at all --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_survey_without_gps_gives_every_product_in_a_local_frame(tmp_path: Path) -> None:
    """12 nadir photos without GPS tags, made by the README's `odmflow synthetic ... --no-gps` command:
    every product written without a CRS, cameras looking down, and the orthophoto within 1 px (median tile
    shift) of the true one after the camera similarity."""
    import laspy
    import rasterio
    from scipy.spatial.transform import Rotation

    from odm_core.evaluate.ortho_truth import ortho_accuracy
    from odm_core.options import DemOptions, PipelineOptions
    from odm_core.synthetic import read_gps
    from tests.conftest import run_cli
    from tests.inprocess import run_stage

    args = "--cols 4 --rows 3 --oblique 0 --width 640 --height 480 --no-gps"  # as README.md gives it
    made = run_cli(["synthetic", str(tmp_path / "nogps"), *args.split()], dict(os.environ))
    assert made.returncode == 0, made.stderr
    tree = ProjectTree(tmp_path / "nogps")
    truth_dir = tree.root / "truth"
    photos = sorted(tree.images.iterdir())
    with pytest.raises(KeyError):
        read_gps(photos[0])  # no GPS tags were written
    defaults = PipelineOptions()
    for stage in ("dataset", "opensfm", "openmvs", "odm_filterpoints", "odm_georeferencing"):
        run_stage(tree, stage, getattr(defaults, stage))
    run_stage(tree, "odm_dem", DemOptions(dsm=True, dtm=True))
    for stage in ("odm_orthophoto", "odm_report"):
        run_stage(tree, stage, getattr(defaults, stage))

    assert not tree.coords_txt.exists() and not tree.shots_geojson.exists()
    assert laspy.read(tree.georeferenced_model_laz).header.parse_crs() is None
    for raster in (tree.orthophoto_tif, tree.dsm_tif, tree.dtm_tif):
        with rasterio.open(raster) as src:
            assert src.crs is None and (src.read(src.count) != 0).mean() > 0.3, raster
    stats = json.loads(tree.report_stats.read_text())
    assert stats["alignment"]["frame"] == "local", stats["alignment"]
    shots = json.loads(tree.reconstruction_json.read_text())[0]["shots"]
    assert len(shots) == len(photos) == 12
    axes = Rotation.from_rotvec([s["rotation"] for s in shots.values()]).inv().apply([0.0, 0.0, 1.0])
    assert (axes[:, 2] < -0.97).all(), axes  # within 14 deg of nadir (the truth's jitter is 1 deg)
    accuracy = ortho_accuracy(truth_dir, tree.orthophoto_tif, tree.reconstruction_json)
    assert accuracy.tiles >= 15 and accuracy.median_shift_px <= 1.0, accuracy
