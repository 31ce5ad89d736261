"""The CLI as a user meets it: help, wrong paths, bad options, a folder of bad photos."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from odm_core.option_specs import OPTIONS
from odmflow.cli import app
from tests.conftest import run_cli

runner = CliRunner()


def snapshot(folder: Path) -> list[tuple[str, str, int]]:
    """Every entry of a folder with its content hash and mtime."""
    return sorted(
        (e.name, hashlib.sha256(Path(e.path).read_bytes()).hexdigest(), e.stat().st_mtime_ns)
        for e in os.scandir(folder)
    )


def test_help_names_odm_options() -> None:
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert len(OPTIONS) >= 41  # every option of the models, ODM's names (tests/test_cli_options.py)
    for spec in OPTIONS:
        assert f" {spec.flag} " in result.output, spec.flag


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.mkdir(), p)[1], "no images/ folder"),
        (lambda p: (p.write_text("x"), p)[1], "is a file"),
    ],
)
def test_wrong_project_path_is_a_clear_error(tmp_path: Path, make, expected: str) -> None:
    project = make(tmp_path / "proj")
    result = runner.invoke(app, ["run", str(project)])
    assert result.exit_code == 2
    assert expected in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--min-num-features", "0"], "--min-num-features"),
        (["--gps-accuracy", "-2"], "--gps-accuracy"),
        (["--camera-lens", "dual"], "--camera-lens"),
        (["--feature-quality", "best"], "--feature-quality"),
        (["--end-with", "odm_postprocess"], "--end-with"),
        (["--rerun-from", "odm_report", "--end-with", "opensfm"], "--rerun-from"),
        (["--max-concurrency", "0"], "--max-concurrency"),
        (["--crop", "-1"], "--crop"),
        (["--merge", "dem"], "--merge dem merges the submodels' DSM and DTM, and this run makes neither"),
    ],
)
def test_invalid_options_are_refused_before_any_work(tmp_path: Path, args: list[str], flag: str) -> None:
    (tmp_path / "images").mkdir()
    result = runner.invoke(app, ["run", str(tmp_path), *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert flag in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]  # nothing written


def _bad_folder(project: Path, good_photo: Path) -> None:
    images = project / "images"
    images.mkdir(parents=True)
    (images / "empty.JPG").write_bytes(b"")
    (images / "notes.jpg").write_text("not a photo\n")
    pixels = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(images / "plain.png")
    (images / "IMG_0001.JPG").write_bytes(good_photo.read_bytes())
    (images / "img_0001.jpg").write_bytes(good_photo.read_bytes())


@pytest.fixture
def gps_photo(tmp_path: Path) -> Path:
    path = tmp_path / "gps.jpg"
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (46.0, 50.0, 33.0), "W", (91.0, 59.0, 40.0)
    pixels = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", exif=exif)
    return path


def test_bad_input_folder_gives_clear_messages_and_keeps_images(
    tmp_path: Path, gps_photo: Path, prefect_env: dict[str, str]
) -> None:
    project = tmp_path / "bad"
    _bad_folder(project, gps_photo)
    before = snapshot(project / "images")
    result = run_cli(["run", str(project)], prefect_env, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out
    assert "empty.JPG: empty file" in out
    assert "notes.jpg: not an image" in out
    assert "'IMG_0001.JPG' and 'img_0001.jpg' differ only in case" in out
    assert snapshot(project / "images") == before

    # With the clash resolved the PNG without EXIF is used, and named as having no GPS.
    (project / "images" / "img_0001.jpg").unlink()
    before = snapshot(project / "images")
    result = run_cli(["run", str(project), "--end-with", "dataset"], prefect_env, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "no GPS" in out and "plain.png" in out
    assert "2 photos used, 2 skipped" in out
    assert snapshot(project / "images") == before


def test_an_embedded_server_that_does_not_start_is_a_clear_error(tmp_path: Path, gps_photo: Path) -> None:
    """Without PREFECT_API_URL a run starts Prefect's embedded server; one that does not answer in time (a
    busy machine, several runs starting at once) ends the run with what to do, not a traceback."""
    (tmp_path / "p" / "images").mkdir(parents=True)
    (tmp_path / "p" / "images" / "IMG_0001.JPG").write_bytes(gps_photo.read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_HOME": str(tmp_path / "home"), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "0"}
    result = run_cli(["run", str(tmp_path / "p")], env, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Prefect's embedded server did not start within 0 s" in out and "odmflow server up" in out
    assert "Traceback" not in out and sorted(p.name for p in (tmp_path / "p").iterdir()) == ["images"]
