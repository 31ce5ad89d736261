"""SIFT features, one Dask unit per photo, and their keypoints in COLMAP's database.

OpenCV's SIFT (Lowe, "Distinctive Image Features from Scale-Invariant Keypoints", IJCV 2004) on the photo
scaled to ODM's feature_process_size (--feature-quality), with COLMAP's peak and edge thresholds, keeping
what COLMAP keeps for max_num_features = --min-num-features: whole scale levels from the coarsest down, up to
the one that passes it (Brighton: 13-15k per photo, COLMAP 12-18k). Measured on Brighton: keeping OpenCV's
strongest 10k by response instead registered the same photos with a third of the tie points, and lowering
the threshold for photos with fewer features (OpenSfM's loop) put a synthetic strip's DSM 2 GSD off.
COLMAP's own CPU SIFT took 3.7 s per Brighton photo at 2000 px against OpenCV's 1.1 s (one thread each),
and as a unit per photo the extraction spreads over the cluster.

Keypoints go to COLMAP in its conventions: pixel centres at +0.5 in full-size photo pixels, the affine
shape (a11, a12, a21, a22) = scale x rotation(orientation); descriptors as COLMAP's default L1-root
(RootSIFT) normalisation quantised to uint8 (512 x value, at most 255).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pycolmap

from odm_core.artifacts import unit_checkpoint_valid
from odm_core.errors import OdmInputError, OdmStageError
from odm_core.photos.decode import read_image
from odm_core.worker import load_arrays, prepare_unit, save_arrays

PEAK_THRESHOLD = 0.02  # OpenCV's contrastThreshold: COLMAP's peak_threshold 0.02/3 x 3 layers
EDGE_THRESHOLD = 10.0  # COLMAP's edge_threshold (also OpenCV's default)


@dataclass(frozen=True)
class FeatureUnit:
    """One photo's features: the photo (and its COLMAP mask, 0 = no features) by path, the longest side
    to extract at (px), how many features to keep, the output file and its checkpoint key."""

    photo: str
    name: str
    process_size: int
    n_features: int
    mask: str | None
    out: str
    key: str


def plan_features(
    images: Path,
    sizes: dict[str, int],
    n_features: int,
    masks: Path | None,
    workdir: Path,
    key: str,
    digest: Callable[[Path], str] | None = None,
) -> list[FeatureUnit]:
    """One unit per photo (`sizes`: file name -> process size in px), each writing
    workdir/<name>.features.npz; the checkpoint key is `key` (odm_core.sfm.unit_keys) and the unit's own:
    name, size, n_features, mask, and with `digest` (file -> content digest) the photo's and mask's
    content."""
    units = []
    for name, size in sizes.items():
        mask = masks / f"{name}.png" if masks is not None else None
        mask_path = str(mask) if mask is not None and mask.is_file() else None
        content = [digest(images / name), digest(Path(mask_path)) if mask_path else ""] if digest else []
        units.append(
            FeatureUnit(
                photo=str(images / name),
                name=name,
                process_size=size,
                n_features=n_features,
                mask=mask_path,
                out=str(workdir / f"{name}.features.npz"),
                key="|".join([key, name, str(size), str(n_features), str(mask_path), *content]),
            )
        )
    return units


def extract_features(unit: FeatureUnit) -> Path:
    """Run (or reuse, when its checkpoint names the same key) one photo's features; the Dask unit.

    Writes unit.out (.npz, atomically, with its checkpoint sidecar): `keypoints` (N, 6) float32 in
    COLMAP's convention, `descriptors` (N, 128) uint8, `size` (2,) int64 the photo's width and height.
    Raises OdmInputError when the photo or its mask cannot be decoded."""
    out = Path(unit.out)
    if unit_checkpoint_valid(out, unit.key):
        return out
    prepare_unit()
    gray = read_image(unit.photo, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    if gray is None:
        raise OdmInputError(f"{unit.photo}: cannot be decoded as an image; remove it or replace it")
    height, width = gray.shape
    scale = min(1.0, unit.process_size / max(width, height))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(gray, small_size, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    mask = _mask(unit, small_size)
    keypoints, descriptors = sift_features(small, unit.n_features, mask)
    keypoints[:, :2] *= np.array([width / small_size[0], height / small_size[1]], np.float32)
    keypoints[:, 2:] *= np.float32(width / small_size[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    save_arrays(out, unit.key, keypoints=keypoints, descriptors=descriptors, size=np.array([width, height]))
    return out


def _mask(unit: FeatureUnit, size: tuple[int, int]) -> np.ndarray | None:
    if unit.mask is None:
        return None
    mask = read_image(unit.mask, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise OdmInputError(f"{unit.mask}: the mask of {unit.name} cannot be decoded")
    return cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)


def sift_features(
    gray: np.ndarray, n_features: int, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """SIFT features of a uint8 image (H, W) as COLMAP keeps them for max_num_features = n_features: whole
    scale levels from the coarsest down, up to and including the level that passes n_features (COLMAP's
    sift.cc keeps whole octaves); all of them when they are fewer. Returns ((N, 6) float32 keypoints in
    COLMAP's convention for this image's pixels, (N, 128) uint8 RootSIFT descriptors)."""
    sift = cv2.SIFT.create(
        contrastThreshold=PEAK_THRESHOLD, edgeThreshold=EDGE_THRESHOLD, enable_precise_upscale=True
    )  # without it OpenCV's positions are 1/4 px off (its doubled first octave): tested against COLMAP
    found = sift.detect(gray, mask)
    if not found:
        return np.zeros((0, 6), np.float32), np.zeros((0, 128), np.uint8)
    found, desc = sift.compute(gray, _coarsest_levels(found, n_features))
    xy = np.array([k.pt for k in found], np.float32) + 0.5  # COLMAP: pixel centres at +0.5
    scale = np.array([k.size for k in found], np.float32) / 2  # OpenCV's size is a diameter
    # OpenCV measures the angle the other way round (360 - angle: its sift.cpp)
    theta = -np.deg2rad(np.array([k.angle for k in found], np.float32))
    cos, sin = scale * np.cos(theta), scale * np.sin(theta)
    keypoints = np.column_stack([xy, cos, -sin, sin, cos]).astype(np.float32)
    return keypoints, root_sift_uint8(desc)


def _coarsest_levels(found: Sequence[cv2.KeyPoint], n_features: int) -> list[cv2.KeyPoint]:
    """The keypoints of the coarsest scale levels (OpenCV's octave and layer), down to the level where
    their count passes n_features."""
    packed = np.array([k.octave for k in found], np.int64)
    octave = (packed & 255) - 256 * ((packed & 255) >= 128)  # OpenCV packs a signed byte (-1: upsampled)
    level = octave * 8 + ((packed >> 8) & 255)
    order = np.argsort(-level, kind="stable")
    counts = np.cumsum(np.bincount(level[order] - level.min())[::-1])  # coarsest level first
    levels = np.nonzero(np.bincount(level - level.min())[::-1])[0]
    last = next((i for i in levels if counts[i] > n_features), levels[-1])
    cutoff = level.max() - last
    return [found[i] for i in order if level[i] >= cutoff]


def root_sift_uint8(desc: np.ndarray) -> np.ndarray:
    """COLMAP's L1-root normalisation and uint8 quantisation of SIFT descriptors (N, 128) (sift.cc:
    L1RootNormalizeFeatureDescriptors, FeatureDescriptorsToUnsignedByte)."""
    d = np.asarray(desc, np.float32)
    d = np.sqrt(d / np.maximum(d.sum(axis=1, keepdims=True), 1e-12))
    return np.minimum(np.round(512.0 * d), 255).astype(np.uint8)


def write_keypoints(db_path: Path, files: dict[str, Path]) -> dict[str, int]:
    """Every photo's keypoints into COLMAP's database (`files`: photo name -> unit file), what mapping reads
    (the descriptors stay in the unit files, which the matching units read); returns the feature count per
    photo. Raises OdmStageError when a unit's photo size differs from COLMAP's camera (a photo replaced
    since the features were made)."""
    counts = {}
    with pycolmap.Database.open(db_path) as db:
        cameras = {c.camera_id: c for c in db.read_all_cameras()}
        for image in db.read_all_images():
            arrays = load_arrays(files[image.name], "keypoints", "size")  # not the descriptors
            camera = cameras[image.camera_id]
            if tuple(arrays["size"]) != (camera.width, camera.height):
                folder = files[image.name].parent
                raise OdmStageError(
                    f"{files[image.name]}: features of a {tuple(arrays['size'])} photo for {image.name}, "
                    f"which COLMAP reads as {camera.width} x {camera.height}; delete {folder} and run again"
                )
            db.write_keypoints(image.image_id, arrays["keypoints"])
            counts[image.name] = len(arrays["keypoints"])
    return counts
