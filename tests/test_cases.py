"""The failing inputs of ../shared/cases (8 Brighton photos at 1000 px each, edited): each does what the
cases' README says a correct run does. Each case is copied to a temporary project; the shared copy is
never touched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import laspy
import numpy as np
import pytest
import rasterio
from PIL import Image
from scipy.spatial.transform import Rotation

from odm_core.layout import ProjectTree
from tests.conftest import LIGHT_3D, SHARED, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.shared]
CASES = SHARED / "cases"
GROUND_M = (151.0, 168.0)  # the ground height of benign variants of these photos (the cases' README)


def copy_case(name: str, dest: Path) -> ProjectTree:
    if not (CASES / name / "images").is_dir():
        pytest.skip(f"needs the shared cases at {CASES} (absent in a fresh clone)")
    shutil.copytree(CASES / name / "images", dest / "images")
    for f in (dest / "images").iterdir():
        f.chmod(0o644)
    return ProjectTree(dest)


def geometry(tree: ProjectTree) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optical axes (N x 3), camera centres (N x 3) and sparse points (M x 3) of reconstruction.json."""
    recon = json.loads(tree.reconstruction_json.read_text())[0]
    rotations = Rotation.from_rotvec([s["rotation"] for s in recon["shots"].values()])
    translations = np.array([s["translation"] for s in recon["shots"].values()])
    points = np.array([p["coordinates"] for p in recon["points"].values()])
    return rotations.inv().apply([0.0, 0.0, 1.0]), -rotations.inv().apply(translations), points


def assert_upright(tree: ProjectTree) -> float:
    """Cameras look down, the ground lies below them; returns the ground's median height."""
    axes, centres, points = geometry(tree)
    assert (axes[:, 2] < -0.95).all(), axes  # within 18 deg of nadir, every one
    ground = float(np.median(points[:, 2]))
    assert ground < float(centres[:, 2].min()) - 10.0
    return ground


def run(tree: ProjectTree, env: dict[str, str], *args: str) -> str:
    result = run_cli(["run", str(tree.root), *LIGHT_3D, *args], env)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    return out


def test_single_strip_is_upright_and_its_orthophoto_coherent(
    tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    tree = copy_case("single-strip", tmp_path / "strip")
    out = run(tree, prefect_env)
    assert "levelled from the photos" in out  # the GPS line left the roll free, and the run says so
    ground = assert_upright(tree)
    assert GROUND_M[0] <= ground <= GROUND_M[1]  # heights are absolute (coords.txt offsets x and y)
    with rasterio.open(tree.orthophoto_tif) as ortho:
        alpha = ortho.read(4)
    assert ortho.crs.to_epsg() == 32615 and (alpha > 0).mean() > 0.3  # a strip, not a smear of slivers


def test_no_gps_finishes_in_a_local_frame(tmp_path: Path, prefect_env: dict[str, str]) -> None:
    tree = copy_case("no-gps", tmp_path / "nogps")
    out = run(tree, prefect_env, "--dsm", "--dtm")
    assert out.count("No photo has GPS") == 1  # one warning at the start
    assert "not georeferenced" in out and "local frame" in out
    assert_upright(tree)
    assert laspy.read(tree.georeferenced_model_laz).header.parse_crs() is None
    for raster in (tree.orthophoto_tif, tree.dsm_tif, tree.dtm_tif):
        with rasterio.open(raster) as src:
            assert src.crs is None and (src.read(src.count) != 0).any(), raster
    assert not tree.reference_lla_json.exists() and not tree.shots_geojson.exists()


def test_photos_missing_an_altitude_are_named_and_kept_out_of_vertical_errors(
    tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    tree = copy_case("missing-altitude-some", tmp_path / "noalt")
    out = run(tree, prefect_env, "--end-with", "opensfm")
    # Read here with Pillow alone (the cases' README names DJI_0018/21/24; the files lack 0020-0022).
    without = sorted(
        p.name for p in tree.images.iterdir() if 6 not in Image.open(p).getexif().get_ifd(0x8825)
    )
    assert len(without) == 3
    # focal length and flying height trade off freely over this strip: the EXIF focal is kept (freed
    # during mapping, 2 runs in 8 drifted it +52% and put the ground 20 m low)
    assert "so the EXIF focal length was kept" in out
    warning = next(line for line in out.splitlines() if "no altitude" in line)
    assert all(name in warning for name in without)
    ground = assert_upright(tree)
    assert GROUND_M[0] <= ground <= GROUND_M[1]
    stats = json.loads(tree.opensfm_stats.read_text())
    assert stats["photos_without_altitude"] == without
    residuals = stats["gps_residuals"]
    assert all(residuals[n][2] is None for n in stats["photos_without_altitude"])
    assert abs(stats["gps_errors"]["error"]["z"]) < 5.0  # not the 121.8 m of comparing with altitude 0


def test_duplicates_are_named_used_once_and_leave_the_surface_as_without_them(
    tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    tree = copy_case("duplicate-photos", tmp_path / "dups")
    out = run(tree, prefect_env, "--end-with", "opensfm")
    warning = next(line for line in out.splitlines() if "duplicate photo(s)" in line)
    for copy, original in (("DJI_0120", "DJI_0020"), ("DJI_0122", "DJI_0022"), ("DJI_0124", "DJI_0024")):
        assert f"{copy}.JPG is duplicate of {original}.JPG" in warning
    assert "8 photos used, 3 skipped" in out
    ground = assert_upright(tree)
    assert abs(ground - 157.0) <= 6.0  # the cases' README: ground about 157 m
