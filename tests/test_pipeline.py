"""The whole pipeline on a synthetic survey with known truth: accuracy, checkpoints, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from odm_core import checkpoint
from odm_core.evaluate.dense_truth import similarity
from odm_core.geo.georef import lla_to_utm
from odm_core.layout import ProjectTree
from odm_core.registry import STAGES
from odm_core.synthetic import SyntheticTruth
from tests.conftest import LIGHT_3D, REPO, copy_survey, run_cli
from tests.inprocess import AFTER_OPENSFM, copy_processed, expected, flow_states, run_flow, states


def centres(tree: ProjectTree) -> dict[str, np.ndarray]:
    """UTM camera centres by photo, from odm_report/shots.geojson."""
    shots = json.loads(tree.shots_geojson.read_text())["features"]
    return {f["properties"]["filename"]: np.array(f["properties"]["translation"]) for f in shots}


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """src mapped by the least-squares similarity onto dst (Umeyama)."""
    scale, rotation, shift = similarity(src, dst)
    return scale * src @ rotation.T + shift


def test_camera_centres_within_one_percent_of_flying_height(
    survey: SyntheticTruth, processed: ProjectTree
) -> None:
    truth = json.loads(survey.cameras_json.read_text())["photos"]
    ours = centres(processed)
    assert len(ours) == survey.n_photos
    axes = ("easting", "northing", "altitude")
    true_xyz = np.array([[t["centre_utm"][k] for k in axes] for t in truth])
    our_xyz = np.array([ours[t["filename"]] for t in truth])
    errors = np.linalg.norm(our_xyz - true_xyz, axis=1)
    assert errors.max() < 0.01 * survey.flying_height_m
    # As good as the GPS allows: the true centres placed by the best similarity onto the EXIF GPS.
    gps = np.array([[t["exif_gps"][k] for k in ("lat", "lon", "alt")] for t in truth])
    gps_xyz = lla_to_utm(survey.epsg, gps[:, 0], gps[:, 1], gps[:, 2])
    bound = np.linalg.norm(similarity_fit(true_xyz, gps_xyz) - true_xyz, axis=1)
    assert np.sqrt(np.mean(errors**2)) < 1.1 * np.sqrt(np.mean(bound**2)) + 0.02
    # The shape alone (after the best similarity): GPS noise cannot hide an SfM error here.
    shape_error = np.linalg.norm(similarity_fit(our_xyz, true_xyz) - true_xyz, axis=1)
    assert shape_error.max() < 0.001 * survey.flying_height_m
    assert processed.coords_txt.read_text().startswith("WGS84 UTM 32N")  # the truth's zone (EPSG:32632)
    assert survey.epsg == 32632


@pytest.mark.slow
def test_rerun_does_no_stage_work(processed: ProjectTree, prefect_env: dict[str, str]) -> None:
    before = {s: processed.manifest(s).read_bytes() for s in STAGES}
    result = run_cli(["run", str(processed.root)], prefect_env)  # as a user re-runs a finished project
    assert result.returncode == 0, result.stdout + result.stderr
    assert flow_states(processed.root.name) == expected()
    assert {s: processed.manifest(s).read_bytes() for s in STAGES} == before


@pytest.mark.slow
def test_damaged_output_reruns_only_its_stage(processed: ProjectTree, prefect_env: dict[str, str]) -> None:
    first = processed.shots_geojson.read_text()
    processed.shots_geojson.write_text("{}")  # edited by hand: no longer what odm_report wrote
    assert states(run_flow(processed)) == expected("odm_report")
    assert processed.shots_geojson.read_text() == first  # the same content as the first run's


@pytest.mark.slow
def test_rerun_from_forces_that_stage_and_later(processed: ProjectTree, prefect_env: dict[str, str]) -> None:
    runs = run_flow(processed, rerun_from="odm_report")
    assert states(runs) == expected("odm_report")
    report, ortho = (checkpoint.finished_at(s, processed) for s in ("odm_report", "odm_orthophoto"))
    assert report > ortho


@pytest.mark.slow
def test_option_change_reruns_the_stages_it_affects(
    processed: ProjectTree, tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    tree = copy_processed(processed, tmp_path / "p")
    # --dsm and --dtm are odm_dem's options: that stage runs again, and the report that shows the DEMs
    runs = run_flow(tree, dsm=True, dtm=True)
    assert states(runs) == expected("odm_dem", "odm_report")
    assert runs["odm_dem"].result.kinds == ("dsm", "dtm")
    # an option of dataset changes its outputs, so opensfm, which reads them, runs again too; its feature
    # and matching units are not made again: their photos, options and code are unchanged
    units = sorted(tree.sfm_features.glob("*.npz")) + sorted(tree.sfm_matches.glob("*.npz"))
    made = {unit: unit.stat().st_mtime_ns for unit in units}
    runs = run_flow(tree, gps_accuracy=5.0, end_with="opensfm")
    assert states(runs) == expected("dataset", "opensfm", end_with="opensfm")
    assert {u.parent for u in units} == {tree.sfm_features, tree.sfm_matches}  # both kinds were there
    assert {unit: unit.stat().st_mtime_ns for unit in units} == made


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


@pytest.mark.slow
def test_sigkill_during_opensfm_resumes_there(
    survey: SyntheticTruth, processed: ProjectTree, tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    tree = copy_survey(survey, tmp_path / "killed")
    proc = _start(["run", str(tree.root), *LIGHT_3D], prefect_env, tmp_path / "first.log")
    deadline = time.monotonic() + 300
    while not tree.colmap_database.exists():  # opensfm has started writing
        assert proc.poll() is None, (tmp_path / "first.log").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert tree.manifest("dataset").exists() and not tree.manifest("opensfm").exists()

    assert states(run_flow(tree, mesh_size=20000, mesh_octree_depth=9)) == expected("opensfm", *AFTER_OPENSFM)
    ours, reference = centres(tree), centres(processed)
    assert ours.keys() == reference.keys()
    gap = max(np.linalg.norm(ours[k] - reference[k]) for k in ours)
    assert gap < 0.01 * survey.flying_height_m
    assert _outputs(tree) == _outputs(processed)
    assert not [p for p in tree.root.rglob("*.part")]  # no half-written file left with a final-looking name


def test_run_appears_in_the_prefect_server(processed: ProjectTree, prefect_env: dict[str, str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterName,
        TaskRunFilter,
        TaskRunFilterName,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[processed.root.name]))
        )
        assert runs, "the CLI's flow run is not in the server named by PREFECT_API_URL"
        first = min(runs, key=lambda r: r.start_time or r.created)
        assert first.state and first.state.is_completed()
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [first.id]}))
        names = {t.name.rsplit("-", 1)[0] for t in task_runs}
        assert set(STAGES) <= names, names  # one task run per stage, plus the nested dense flow's
        view_runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="depth-"))
        )
        assert {t.name for t in view_runs} >= {f"depth-{p.name}" for p in processed.images.iterdir()}
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[first.id]))
        )
    by_type = {a.type: a for a in artifacts if a.type != "table"}
    by_key = {a.key: a for a in artifacts}
    assert float(by_type["progress"].data) == pytest.approx(100.0)
    assert "**Registered**: 11 of 11 photos" in str(by_type["markdown"].data)
    assert "shots.geojson" in str(by_type["markdown"].data)
    rows = by_key["odm-stage-timings"].data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert [r["stage"] for r in rows] == list(STAGES)
    assert "**Dense cloud**" in str(by_type["markdown"].data)
    assert "**Mesh**: 3D mesh" in str(by_type["markdown"].data)
    assert "**Textured model**: 2.5D model" in str(by_type["markdown"].data)
    assert all(r["state"] == "ran" for r in rows)
    accuracy = by_key["odm-accuracy"].data
    accuracy = json.loads(accuracy) if isinstance(accuracy, str) else accuracy
    assert [r["against"] for r in accuracy] == ["GPS"] and 0 < accuracy[0]["rms_x_m"] < 5  # GPS noise 1 m


def test_report_gives_the_ground_sampling_distance(survey: SyntheticTruth, processed: ProjectTree) -> None:
    stats = json.loads(processed.report_stats.read_text())
    gsd_cm = stats["odm_processing_statistics"]["average_gsd"]
    assert gsd_cm == pytest.approx(100 * survey.gsd_m, rel=0.05)
    assert stats["reconstruction_statistics"]["reconstructed_shots_count"] == survey.n_photos
