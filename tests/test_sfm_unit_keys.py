"""The keys of opensfm's feature and matching units: their own inputs, not the stage's fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from odm_core.artifacts import DigestCache
from odm_core.sfm.extract import plan_features
from odm_core.sfm.match_units import CameraSpec, plan_matches
from odm_core.sfm.unit_keys import FEATURES_MODULE, MATCHING_MODULE, units_key
from odm_core.worker import save_arrays


def test_a_units_key_is_its_codes_and_never_matches_without_reuse() -> None:
    assert units_key(FEATURES_MODULE, True) == units_key(FEATURES_MODULE, True)
    assert units_key(FEATURES_MODULE, True) != units_key(MATCHING_MODULE, True)
    assert units_key(FEATURES_MODULE, False) != units_key(FEATURES_MODULE, False)


def test_a_feature_units_key_follows_its_photos_content(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"one photo")
    (images / "b.jpg").write_bytes(b"another photo")
    digest = DigestCache(tmp_path / "digests.json").digest
    sizes = {"a.jpg": 640, "b.jpg": 640}

    def keys() -> dict[str, str]:
        units = plan_features(images, sizes, 4000, None, tmp_path / "f", "k", digest)
        return {u.name: u.key for u in units}

    first = keys()
    assert keys() == first
    (images / "a.jpg").write_bytes(b"the same name, another photo")
    second = keys()
    assert second["a.jpg"] != first["a.jpg"] and second["b.jpg"] == first["b.jpg"]
    units = plan_features(images, sizes, 5000, None, tmp_path / "f", "k", digest)
    assert all(u.key != second[u.name] for u in units)  # --min-num-features reaches every unit


def test_a_matching_units_key_follows_its_photos_cameras(tmp_path: Path) -> None:
    features = {name: tmp_path / f"{name}.features.npz" for name in ("a.jpg", "b.jpg")}
    for name, path in features.items():
        save_arrays(path, f"key-{name}", x=np.zeros(3))
    camera = CameraSpec("SIMPLE_RADIAL", 640, 480, (500.0, 320.0, 240.0, 0.0), True)
    fisheye = CameraSpec("SIMPLE_RADIAL_FISHEYE", 640, 480, (500.0, 320.0, 240.0, 0.0), True)
    pairs = [("a.jpg", "b.jpg")]
    (one,) = plan_matches(pairs, features, dict.fromkeys(features, camera), tmp_path, "k")
    (same,) = plan_matches(pairs, features, dict.fromkeys(features, camera), tmp_path, "k")
    (other,) = plan_matches(pairs, features, {"a.jpg": camera, "b.jpg": fisheye}, tmp_path, "k")
    assert one.key == same.key and other.key != one.key


def test_units_already_done_are_not_sent_to_the_cluster(tmp_path: Path) -> None:
    """A rerun whose feature units all hold valid checkpoints makes no task run for them (none is
    submitted, so this runs without a Prefect flow or a cluster) and reports them kept."""
    from odm_core.artifacts import write_plan
    from tasks.opensfm import opensfm_features

    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (images / name).write_bytes(name.encode())
    units = plan_features(images, {"a.jpg": 640, "b.jpg": 640}, 4000, None, tmp_path, "k")
    for unit in units:
        save_arrays(Path(unit.out), unit.key, x=np.zeros(3))
    lines: list[str] = []
    plan = write_plan(tmp_path / "plan.pkl", units)
    files = opensfm_features.fn(plan, lambda fraction, message: lines.append(message))
    assert files == {u.name: Path(u.out) for u in units}
    assert lines[0] == "extracting features: 2 of 2 kept from an earlier run"
