"""The whole pipeline on a synthetic survey with known truth: accuracy, checkpoints, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from odm_core.layout import ProjectTree
from odm_core.synthetic import SyntheticOptions, SyntheticTruth, generate_synthetic
from tests.conftest import REPO, run_cli

# A small survey: 3 lines of 3 nadir photos and 2 obliques at 800 x 600; GPS noise as a good consumer drone.
SYNTHETIC = SyntheticOptions(
    n_cols=3,
    n_rows=3,
    n_oblique=2,
    image_width=800,
    image_height=600,
    gps_sigma_h_m=0.5,
    gps_sigma_v_m=0.5,
    seed=7,
)
ALL_CACHED = "dataset (checkpoint), opensfm (checkpoint), odm_report (checkpoint)"


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> SyntheticTruth:
    return generate_synthetic(tmp_path_factory.mktemp("synthetic") / "survey", SYNTHETIC)


@pytest.fixture(scope="module")
def processed(survey: SyntheticTruth, prefect_env: dict[str, str]) -> ProjectTree:
    result = run_cli(["run", str(survey.project_dir)], prefect_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dataset (ran), opensfm (ran), odm_report (ran)" in result.stdout
    return ProjectTree(survey.project_dir)


def centres(tree: ProjectTree) -> dict[str, np.ndarray]:
    """UTM camera centres by photo, from odm_report/shots.geojson."""
    shots = json.loads(tree.shots_geojson.read_text())["features"]
    return {f["properties"]["filename"]: np.array(f["properties"]["translation"]) for f in shots}


def test_camera_centres_within_one_percent_of_flying_height(
    survey: SyntheticTruth, processed: ProjectTree
) -> None:
    truth = json.loads(survey.cameras_json.read_text())["photos"]
    ours = centres(processed)
    assert len(ours) == survey.n_photos
    axes = ("easting", "northing", "altitude")
    errors = [np.linalg.norm(ours[t["filename"]] - [t["centre_utm"][k] for k in axes]) for t in truth]
    assert max(errors) < 0.01 * survey.flying_height_m
    assert processed.coords_txt.read_text().startswith("WGS84 UTM 32N")  # the truth's zone (EPSG:32632)
    assert survey.epsg == 32632


def test_rerun_does_no_stage_work(processed: ProjectTree, prefect_env: dict[str, str]) -> None:
    result = run_cli(["run", str(processed.root)], prefect_env)
    assert result.returncode == 0 and ALL_CACHED in result.stdout, result.stdout + result.stderr


def test_damaged_output_reruns_only_its_stage(processed: ProjectTree, prefect_env: dict[str, str]) -> None:
    processed.shots_geojson.write_text("{}")  # edited by hand: no longer what odm_report wrote
    result = run_cli(["run", str(processed.root)], prefect_env)
    assert "dataset (checkpoint), opensfm (checkpoint), odm_report (ran)" in result.stdout, result.stderr
    assert len(centres(processed)) > 0


def test_rerun_from_forces_that_stage_and_later(processed: ProjectTree, prefect_env: dict[str, str]) -> None:
    result = run_cli(["run", str(processed.root), "--rerun-from", "odm_report"], prefect_env)
    assert "dataset (checkpoint), opensfm (checkpoint), odm_report (ran)" in result.stdout, result.stderr


def _copy_photos(survey: SyntheticTruth, dest: Path) -> ProjectTree:
    shutil.copytree(survey.images_dir, dest / "images")
    return ProjectTree(dest)


def test_option_change_reruns_the_stages_it_affects(
    survey: SyntheticTruth, tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    tree = _copy_photos(survey, tmp_path / "p")
    first = run_cli(["run", str(tree.root), "--end-with", "dataset"], prefect_env)
    assert first.returncode == 0, first.stderr
    result = run_cli(["run", str(tree.root), "--min-num-features", "4000"], prefect_env)
    assert "dataset (checkpoint), opensfm (ran), odm_report (ran)" in result.stdout, result.stderr
    result = run_cli(["run", str(tree.root), "--gps-accuracy", "5"], prefect_env)
    assert "dataset (ran), opensfm (ran), odm_report (ran)" in result.stdout, result.stderr


def _outputs(tree: ProjectTree) -> set[Path]:
    """The project's files other than the photos, the truth and odmflow's own state."""
    skip = {"images", "truth", ".odmflow"}
    files = {p.relative_to(tree.root) for p in tree.root.rglob("*")}
    return {f for f in files if not skip & set(f.parts)}


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "odmflow", *args],
        env=env,
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_sigkill_during_opensfm_resumes_there(
    survey: SyntheticTruth, processed: ProjectTree, tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    tree = _copy_photos(survey, tmp_path / "killed")
    proc = _start(["run", str(tree.root)], prefect_env, tmp_path / "first.log")
    deadline = time.monotonic() + 300
    while not tree.colmap_database.exists():  # opensfm has started writing
        assert proc.poll() is None, (tmp_path / "first.log").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert tree.manifest("dataset").exists() and not tree.manifest("opensfm").exists()

    result = run_cli(["run", str(tree.root)], prefect_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dataset (checkpoint), opensfm (ran), odm_report (ran)" in result.stdout
    ours, reference = centres(tree), centres(processed)
    assert ours.keys() == reference.keys()
    gap = max(np.linalg.norm(ours[k] - reference[k]) for k in ours)
    assert gap < 0.01 * survey.flying_height_m
    assert _outputs(tree) == _outputs(processed)
    assert not [p for p in tree.root.rglob("*.part")]  # no half-written file left with a final-looking name
