"""Mapping in a child process: the model and the progress come back; a failure comes back as the
stage's error, not as a crash of the stage's process."""

from __future__ import annotations

import os
from pathlib import Path

import pycolmap
import pytest

from odm_core.errors import OdmStageError
from odm_core.sfm.mapping_process import map_in_process


def _database(path: Path, matched: bool) -> pycolmap.Reconstruction:
    options = pycolmap.SyntheticDatasetOptions()
    options.num_rigs, options.num_cameras_per_rig, options.num_frames_per_rig = 1, 1, 6
    options.num_points3D = 300
    with pycolmap.Database.open(path) as db:
        truth = pycolmap.synthesize_dataset(options, db)
        if not matched:
            db.clear_matches()
            db.clear_two_view_geometries()
    return truth


def test_the_child_maps_and_reports_progress(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reports come on a pipe of their own: what a library prints on the child's standard output
    (here at its start, without a newline) goes to the stage's, and no report is lost to it."""
    noise = tmp_path / "noise"
    noise.mkdir()
    (noise / "sitecustomize.py").write_text("print('library noise', end='', flush=True)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(noise), os.environ.get("PYTHONPATH", "")]))
    truth = _database(tmp_path / "database.db", matched=True)
    lines: list[tuple[float, str]] = []
    rec, note, notes = map_in_process(
        tmp_path / "database.db",
        tmp_path,
        tmp_path / "mapper",
        False,
        6,
        lambda f, m: lines.append((f, m)),
        False,
    )
    assert note is None and notes == ()  # incremental: nothing set aside
    assert rec.num_reg_images() == 6 and rec.num_points3D() > 200
    assert rec.compute_mean_reprojection_error() < 0.5
    assert sorted(im.name for im in rec.images.values()) == sorted(im.name for im in truth.images.values())
    assert lines and lines[-1][1].startswith("registered") and all(0.7 <= f <= 0.95 for f, _ in lines)
    printed = capfd.readouterr()
    assert "library noise" in printed.out and '"progress"' not in printed.out + printed.err
    assert "incremental_pipeline" not in printed.err  # COLMAP's INFO lines are not printed
    assert lines[0] == (0.7 + 0.25 / 6, "registered 1 photos")  # the first report is not lost


def test_no_model_comes_back_as_the_stages_error(tmp_path: Path) -> None:
    _database(tmp_path / "database.db", matched=False)
    with pytest.raises(OdmStageError, match="found no model"):
        map_in_process(
            tmp_path / "database.db", tmp_path, tmp_path / "mapper", False, 6, lambda f, m: None, False
        )


def test_any_failure_in_the_child_comes_back_with_its_message(tmp_path: Path) -> None:
    """Not only the mapping's own errors: one from the file system (its output folder is a file) is
    raised by the stage with its type and text, not as a died process."""
    _database(tmp_path / "database.db", matched=True)
    (tmp_path / "mapper").write_text("a file where the mapper's folder goes")
    with pytest.raises(OdmStageError, match=r"mapping failed: File\w+Error"):
        map_in_process(
            tmp_path / "database.db", tmp_path, tmp_path / "mapper", False, 6, lambda f, m: None, False
        )
