"""The sparse points' colours: each from the first photo of its track, read at a reduced size."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pycolmap
import pytest

from odm_core.errors import OdmInputError
from odm_core.sfm.colors import color_points, reduction


def _model(width: int, height: int) -> pycolmap.Reconstruction:
    options = pycolmap.SyntheticDatasetOptions()
    options.num_rigs, options.num_cameras_per_rig, options.num_frames_per_rig = 1, 1, 3
    options.num_points3D, options.camera_width, options.camera_height = 200, width, height
    return pycolmap.synthesize_dataset(options)


def _halves(rec: pycolmap.Reconstruction, folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each photo written with its left and right halves in two colours of its own (RGB)."""
    colors = {}
    for k, image in enumerate(rec.images.values()):
        camera = rec.cameras[image.camera_id]
        left, right = np.array([40 * k + 10, 200, 30], np.uint8), np.array([90, 20 * k + 5, 250], np.uint8)
        rgb = np.empty((camera.height, camera.width, 3), np.uint8)
        rgb[:, : camera.width // 2], rgb[:, camera.width // 2 :] = left, right
        cv2.imwrite(str(folder / image.name), rgb[:, :, ::-1])
        colors[image.name] = (left, right)
    return colors


@pytest.mark.parametrize(("width", "factor"), [(4000, 4), (1024, 1)])
def test_each_point_takes_its_first_photos_colour_where_it_is_seen(
    tmp_path: Path, width: int, factor: int
) -> None:
    rec = _model(width, width // 2)
    assert reduction(width) == factor
    colors = _halves(rec, tmp_path)
    color_points(rec, tmp_path)
    checked = 0
    for point in rec.points3D.values():
        if not point.track.length():
            continue
        first = point.track.elements[0]
        image = rec.images[first.image_id]
        x = image.points2D[first.point2D_idx].xy[0]
        if abs(x - width / 2) < 4 * factor:  # the reduced photo blends the two halves there
            continue
        left, right = colors[image.name]
        assert np.array_equal(point.color, left if x < width / 2 else right), (image.name, x)
        checked += 1
    assert checked > 100


def test_a_photo_that_cannot_be_decoded_is_named(tmp_path: Path) -> None:
    rec = _model(1024, 512)
    _halves(rec, tmp_path)
    seen = next(p for p in rec.points3D.values() if p.track.length())
    broken = rec.images[seen.track.elements[0].image_id].name
    (tmp_path / broken).write_bytes(b"not an image")
    with pytest.raises(OdmInputError, match=broken):
        color_points(rec, tmp_path)
