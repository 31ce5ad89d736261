"""ODM's --sfm-algorithm triangulation and planar: gimbal angles as DJI records them, true north turned
onto the UTM grid, each mapping against the incremental model, ODM's fallbacks, through the CLI."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from scipy.spatial.transform import Rotation

from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.photos.photo import Photo
from odm_core.sfm.mapping_process import map_in_process
from odm_core.sfm.triangulation import (
    gimbal_world_from_cam,
    grid_rotations,
    missing_angles,
    photo_rotations,
    triangulation_mapping,
)
from odm_core.synthetic import SyntheticTruth
from tests.conftest import copy_survey, run_cli

LEVEL_NORTH = gimbal_world_from_cam(0.0, 0.0, 0.0)


def _photo(name: str = "a.jpg", **fields: float | None) -> Photo:
    base = Photo(filename=name, width=800, height=600, latitude=46.5, longitude=6.6, altitude=460.0)
    return replace(base, **fields)  # type: ignore[arg-type]


def test_gimbal_angles_as_dji_records_them() -> None:
    level = gimbal_world_from_cam(0.0, 0.0, 0.0)  # level, looking north: x east, y down, z north
    assert np.allclose(level, [[1, 0, 0], [0, 0, 1], [0, -1, 0]])
    nadir_east = gimbal_world_from_cam(90.0, -90.0, 0.0)
    assert np.allclose(nadir_east[:, 2], [0, 0, -1])  # looking straight down
    assert np.allclose(-nadir_east[:, 1], [1, 0, 0])  # the image's top towards the yaw: east
    assert np.allclose(nadir_east[:, 0], [0, -1, 0])  # its right side south
    rolled = gimbal_world_from_cam(0.0, 0.0, 10.0)
    assert rolled[2, 0] == pytest.approx(-math.sin(math.radians(10)))  # positive roll: right side down
    tilted = gimbal_world_from_cam(0.0, -30.0, 0.0)
    assert tilted[:, 2] == pytest.approx([0, math.cos(math.radians(30)), -0.5])  # 30 degrees below level
    for angles in ((17.0, -63.0, 4.0), (-140.0, -89.9, 0.0)):
        r = gimbal_world_from_cam(*angles)
        assert np.allclose(r @ r.T, np.eye(3)) and np.linalg.det(r) == pytest.approx(1.0)


def test_yaw_is_turned_from_true_north_onto_the_utm_grid() -> None:
    # 2.4 degrees of longitude west of zone 32's central meridian (9 E) at 46.5 N: true north points
    # east of grid north by about 2.4 * sin(46.5) = 1.74 degrees (meridian convergence)
    rotation = grid_rotations([_photo(yaw=0.0, pitch=-90.0, roll=0.0)], GeoReference(32632, 0.0, 0.0))
    top = -np.asarray(rotation["a.jpg"]).reshape(3, 3)[:, 1]
    assert math.degrees(math.atan2(top[0], top[1])) == pytest.approx(
        2.4 * math.sin(math.radians(46.5)), abs=0.02
    )


def test_the_photos_odm_would_not_triangulate_are_mapped_incrementally() -> None:
    with_angles = [_photo(name, yaw=10.0, pitch=-90.0, roll=0.0) for name in ("b.jpg", "c.jpg")]
    assert missing_angles(with_angles) is None
    no_roll = [*with_angles, _photo("a.jpg", yaw=10.0, pitch=-90.0)]
    assert missing_angles(no_roll) == "a.jpg"
    assert (
        missing_angles([*with_angles, _photo("d.jpg", yaw=1.0, pitch=-90.0, roll=0.0, altitude=None)])
        == "d.jpg"
    )
    georef = GeoReference(32632, 0.0, 0.0)
    rotations, notes = photo_rotations("triangulation", no_roll, georef)
    assert rotations is None and "a.jpg has no GPS altitude or no yaw, pitch and roll" in notes[0]
    rotations, notes = photo_rotations("triangulation", with_angles, None)
    assert rotations is None and "needs GPS positions" in notes[0]
    assert photo_rotations("incremental", with_angles, georef) == (None, ())
    rotations, notes = photo_rotations("triangulation", with_angles, georef)
    assert rotations is not None and set(rotations) == {"b.jpg", "c.jpg"} and notes == ()


def _true_angles(truth: Path, noise_deg: float) -> dict[str, tuple[float, float, float]]:
    """Each photo's yaw (from true north), pitch and roll as a gimbal would record them, from the true
    world_from_cam (UTM grid) with `noise_deg` of seeded noise."""
    cameras = json.loads((truth / "cameras.json").read_text())
    rng = np.random.default_rng(4)
    out = {}
    for cam in cameras["photos"]:
        grid = Rotation.from_matrix(np.array(cam["world_from_cam"]) @ LEVEL_NORTH.T)
        minus_yaw, pitch, roll = grid.as_euler("ZXY", degrees=True)
        lat, lon = cam["centre_wgs84"]["lat"], cam["centre_wgs84"]["lon"]
        true_north_on_grid = (lon - 9.0) * -math.sin(math.radians(lat))  # zone 32's convergence
        angles = np.array([-minus_yaw - true_north_on_grid, pitch, roll]) + rng.normal(0, noise_deg, 3)
        out[cam["filename"]] = (float(angles[0]), float(angles[1]), float(angles[2]))
    return out


def test_triangulation_from_good_angles_lands_on_the_incremental_model(
    survey: SyntheticTruth, processed: ProjectTree, tmp_path: Path
) -> None:
    """Angles 1 degree off the truth (a good gimbal): every photo registers, on the same model the
    incremental mapping found from the same matches."""
    db = tmp_path / "database.db"
    shutil.copy(processed.colmap_database, db)
    angles = _true_angles(survey.project_dir / "truth", 1.0)
    photos = [
        replace(Photo.from_json(p), **dict(zip(("yaw", "pitch", "roll"), angles[p["filename"]], strict=True)))
        for p in json.loads(processed.images_json.read_text())
    ]
    georef = GeoReference.read(processed.coords_txt)
    rec, disagreeing = triangulation_mapping(
        db, processed.images, tmp_path, grid_rotations(photos, georef), _quiet
    )
    assert disagreeing == [] and rec.num_reg_images() == survey.n_photos
    _assert_same_model(rec, pycolmap.Reconstruction(processed.colmap_database.parent / "mapper" / "model"))


def _quiet(fraction: float, text: str) -> None:
    pass


def test_odmflow_run_triangulates_from_a_geo_file_with_angles(
    small_survey: SyntheticTruth, prefect_env: dict[str, str], tmp_path: Path
) -> None:
    """The true positions and angles (1 degree of noise) in a --geo file: the run triangulates."""
    survey = small_survey
    tree = copy_survey(survey, tmp_path / "my survey")
    angles = _true_angles(survey.project_dir / "truth", 1.0)
    cameras = json.loads((survey.project_dir / "truth" / "cameras.json").read_text())["photos"]
    lines = ["EPSG:32632"]
    for cam in cameras:
        centre = cam["centre_utm"]
        xyz = (centre["easting"], centre["northing"], centre["altitude"])
        lines.append(
            " ".join(
                [cam["filename"], *(f"{v:.3f}" for v in xyz), *(f"{a:.2f}" for a in angles[cam["filename"]])]
            )
        )
    geo = tmp_path / "geo with angles.txt"
    geo.write_text("\n".join(lines) + "\n")
    args = [
        "run",
        str(tree.root),
        "--geo",
        str(geo),
        "--sfm-algorithm",
        "triangulation",
        "--end-with",
        "opensfm",
    ]
    result = run_cli(args, prefect_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "triangulating at 4 px" in result.stderr  # the stage's progress
    stats = json.loads(tree.opensfm_stats.read_text())
    assert stats["sfm_algorithm"] == "triangulation"
    assert stats["reconstruction_statistics"]["reconstructed_shots_count"] == survey.n_photos
    assert stats["reconstruction_statistics"]["reprojection_error_pixels"] < 0.3


def test_planar_chaining_lands_on_the_incremental_model(
    survey: SyntheticTruth, processed: ProjectTree, tmp_path: Path
) -> None:
    """--sfm-algorithm planar, as the stage runs it (the mapping child, the focal held then settled): the
    photos posed from chained 2D similarities alone, then moved onto their GPS, end on the model that
    incremental mapping found from the same matches (the 2 oblique photos included)."""
    db = tmp_path / "database.db"
    shutil.copy(processed.colmap_database, db)
    rec, focal_note, notes = map_in_process(
        db, processed.images, tmp_path / "mapper", True, survey.n_photos, _quiet, True, None, True
    )
    assert notes == () and rec.num_reg_images() == survey.n_photos
    incremental = pycolmap.Reconstruction(processed.colmap_database.parent / "mapper" / "model")
    _assert_same_model(rec, incremental)


def _assert_same_model(rec: pycolmap.Reconstruction, incremental: pycolmap.Reconstruction) -> None:
    """Every camera within 5 cm and 0.1 degree of the incremental model's, and as low an error."""
    for image in incremental.images.values():
        ours = rec.find_image_with_name(image.name)
        assert np.linalg.norm(ours.projection_center() - image.projection_center()) < 0.05
        relative = ours.cam_from_world().rotation.matrix() @ image.cam_from_world().rotation.matrix().T
        assert math.degrees(Rotation.from_matrix(relative).magnitude()) < 0.1
    assert rec.compute_mean_reprojection_error() < 1.05 * incremental.compute_mean_reprojection_error()
