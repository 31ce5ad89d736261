"""SIFT feature units (odm_core/sfm/extract.py): COLMAP's conventions, the kept scale levels, the unit's
checkpoint."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pycolmap
import pytest
from scipy.spatial import cKDTree

from odm_core.sfm.extract import (
    PEAK_THRESHOLD,
    FeatureUnit,
    extract_features,
    root_sift_uint8,
    sift_features,
)
from odm_core.worker import load_arrays


def _texture(height: int = 480, width: int = 640, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = cv2.resize(rng.random((height // 8, width // 8)).astype(np.float32), (width, height))
    return np.clip(255 * (0.2 + 0.6 * noise), 0, 255).astype(np.uint8)


def _colmap_keypoints(gray: np.ndarray) -> np.ndarray:
    options = pycolmap.FeatureExtractionOptions()
    options.num_threads = 1
    options.sift.max_num_features = 100_000
    extractor = pycolmap.FeatureExtractor.create(options, device=pycolmap.Device.cpu)
    keypoints, _ = extractor.extract(pycolmap.Bitmap.from_array(gray))
    return np.array([(k.x, k.y) for k in keypoints])


def test_keypoints_sit_where_colmaps_own_sift_puts_them(tmp_path: Path) -> None:
    """Full-size pixels with centres at +0.5, from a photo extracted at half its size: the features both
    detectors find agree to a fraction of a pixel (no +0.5 or scale slip)."""
    gray = _texture(960, 1280)
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), gray)
    unit = FeatureUnit(str(photo), "a.png", 640, 2000, None, str(tmp_path / "a.npz"), "k")
    ours = load_arrays(extract_features(unit))
    assert tuple(ours["size"]) == (1280, 960)
    theirs = 2.0 * _colmap_keypoints(cv2.resize(gray, (640, 480), interpolation=cv2.INTER_AREA))
    distance, nearest = cKDTree(theirs).query(ours["keypoints"][:, :2])
    close = distance < 1.5
    assert close.sum() > 100
    offset = np.median(ours["keypoints"][close, :2] - theirs[nearest[close]], axis=0)
    assert np.all(np.abs(offset) < 0.2), offset
    scale = np.hypot(ours["keypoints"][:, 2], ours["keypoints"][:, 4])
    assert scale.min() > 1.0  # full-size pixels: half-size sigma >= ~0.8, doubled


def test_whole_coarsest_levels_are_kept() -> None:
    gray = _texture()
    sift = cv2.SIFT.create(contrastThreshold=PEAK_THRESHOLD, enable_precise_upscale=True)
    everything = sift.detect(gray, None)
    n = len(everything) // 3
    keypoints, descriptors = sift_features(gray, n)
    assert descriptors.shape == (len(keypoints), 128)
    levels: dict[tuple[int, int], int] = {}
    for k in everything:  # (octave, layer) as OpenCV packs them, coarsest first
        key = (((k.octave & 255) ^ 128) - 128, (k.octave >> 8) & 255)
        levels[key] = levels.get(key, 0) + 1
    expected = 0
    for key in sorted(levels, reverse=True):
        expected += levels[key]
        if expected > n:
            break
    assert n < len(keypoints) == expected < len(everything)  # whole levels, the finest ones dropped


def test_root_sift_is_colmaps_l1_root_quantisation() -> None:
    rng = np.random.default_rng(0)
    desc = rng.random((5, 128)).astype(np.float32) * 100
    ours = root_sift_uint8(desc).astype(np.float64) / 512
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=0.02)  # L1-root: unit L2 norm
    expected = np.sqrt(desc / desc.sum(axis=1, keepdims=True))
    assert np.abs(ours - expected).max() <= 0.5 / 512 + 1e-9


def test_the_unit_reuses_its_checkpoint_only_under_the_same_key(tmp_path: Path) -> None:
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), _texture())
    unit = FeatureUnit(str(photo), "a.png", 640, 500, None, str(tmp_path / "f" / "a.npz"), "k1")
    out = extract_features(unit)
    first = out.stat().st_mtime_ns
    assert extract_features(unit).stat().st_mtime_ns == first
    cv2.imwrite(str(photo), _texture(seed=4))
    changed = FeatureUnit(**{**unit.__dict__, "key": "k2"})
    assert extract_features(changed).stat().st_mtime_ns != first


def test_an_undecodable_photo_is_named(tmp_path: Path) -> None:
    photo = tmp_path / "broken.jpg"
    photo.write_bytes(b"not a jpeg")
    unit = FeatureUnit(str(photo), "broken.jpg", 640, 500, None, str(tmp_path / "b.npz"), "k")
    with pytest.raises(Exception, match="broken.jpg"):
        extract_features(unit)
