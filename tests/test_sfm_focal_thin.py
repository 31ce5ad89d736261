"""Freeing the focal of a large model on a thinned copy (odm_core/sfm/focal_thin.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from odm_core.sfm import focal_thin
from odm_core.sfm.focal import settle_focal
from odm_core.sfm.focal_thin import adopt, observations, thinned


def _synthetic(db_path: Path) -> pycolmap.Reconstruction:
    options = pycolmap.SyntheticDatasetOptions()
    options.num_rigs, options.num_cameras_per_rig, options.num_frames_per_rig = 1, 1, 10
    options.num_points3D = 1500
    options.camera_has_prior_focal_length = True
    options.prior_position = True
    with pycolmap.Database.open(db_path) as db:
        return pycolmap.synthesize_dataset(options, db)


def _per_image(rec: pycolmap.Reconstruction) -> Counter[int]:
    return Counter(el.image_id for p in rec.points3D.values() for el in p.track.elements)


def test_a_thinned_copy_keeps_each_photos_longest_tracks(tmp_path: Path) -> None:
    truth = _synthetic(tmp_path / "database.db")
    before = truth.num_points3D()
    copy = thinned(truth, per_image=60)
    assert truth.num_points3D() == before  # a copy: the model itself is left whole
    assert 0 < copy.num_points3D() < before / 3 and observations(copy) < observations(truth) / 3
    assert set(copy.point3D_ids()) <= set(truth.point3D_ids())
    whole, kept = _per_image(truth), _per_image(copy)
    assert all(kept[image] >= min(60, whole[image]) for image in whole)
    assert observations(copy) / copy.num_points3D() >= observations(truth) / truth.num_points3D()


def test_adopting_a_copys_cameras_and_poses_adjusts_every_point_to_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(focal_thin, "POINTS_PER_CHUNK", 200)  # several chunks
    truth = _synthetic(tmp_path / "database.db")
    whole = pycolmap.Reconstruction(truth)
    rng = np.random.default_rng(0)
    for point in whole.points3D.values():
        point.xyz = point.xyz + rng.normal(0, 0.05, 3)
    frame_id = next(iter(whole.frames))
    moved = whole.frames[frame_id].rig_from_world
    whole.frames[frame_id].rig_from_world = pycolmap.Rigid3d(moved.rotation, moved.translation + 0.1)
    camera_id = next(iter(whole.cameras))
    params = whole.cameras[camera_id].params.copy()
    params[0] *= 1.02
    whole.cameras[camera_id].params = params

    adopt(whole, thinned(truth, per_image=60))
    assert np.allclose(whole.cameras[camera_id].params, truth.cameras[camera_id].params)
    assert np.allclose(whole.frames[frame_id].rig_from_world.translation, moved.translation)
    offsets = [np.linalg.norm(p.xyz - truth.points3D[pid].xyz) for pid, p in whole.points3D.items()]
    assert max(offsets) < 1e-3  # every point back where its exact observations put it
    assert whole.compute_mean_reprojection_error() < 1e-3


def test_a_large_model_settles_on_its_thinned_copy_as_on_the_whole(tmp_path: Path) -> None:
    truth = _synthetic(tmp_path / "database.db")
    results = []
    for limit in (10**9, 0):  # whole, then thinned (every model counts as large)
        rec = pycolmap.Reconstruction(truth)
        camera = rec.cameras[next(iter(rec.cameras))]
        params = camera.params.copy()
        params[0] *= 1.03  # the held focal 3% off: both must find the true one again
        camera.params = params
        settled, note = settle_focal(rec, tmp_path / "database.db", max_observations=limit)
        assert note is None
        results.append(settled)
    true_focal = truth.cameras[next(iter(truth.cameras))].params[0]
    for settled in results:
        assert abs(settled.cameras[next(iter(settled.cameras))].params[0] / true_focal - 1) < 0.002
        assert settled.compute_mean_reprojection_error() < 0.01
