"""The sparse points' colours, read from the photos at a reduced size.

COLMAP's mapper colours each point by averaging every photo that sees it, decoding each photo whole: on
Brighton (18 photos of 4000 x 2250) 2.2 s of the mapping's 9 s, on its critical path. Here a point takes
the colour of the first photo of its track (as OpenSfM, ODM's engine, colours a point from one view), and
each photo is decoded at 1/2, 1/4 or 1/8 of its size by the JPEG decoder itself (cv2.IMREAD_REDUCED_*),
keeping at least MIN_SIDE_PX on its longest side: the colours of the sparse cloud (reconstruction.ply,
.laz, .json) are for display.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pycolmap

from odm_core.errors import OdmInputError
from odm_core.photos.decode import read_image

MIN_SIDE_PX = 1000  # the reduced photo's longest side is at least this (or the photo's own)
_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def reduction(longest_side_px: int) -> int:
    """The largest of 1, 2, 4, 8 that keeps the photo's longest side at MIN_SIDE_PX or more."""
    return max((f for f in _REDUCED if longest_side_px / f >= MIN_SIDE_PX), default=1)


def color_points(rec: pycolmap.Reconstruction, images: Path) -> None:
    """Set every 3D point's colour (RGB, uint8) from the first photo of its track, in place; the photos
    are the files `images`/<image name>. Raises OdmInputError naming a photo that cannot be decoded."""
    seen_by: dict[int, list[tuple[int, int]]] = defaultdict(list)  # image id -> (point id, point2D idx)
    for point_id, point in rec.points3D.items():
        if point.track.length():  # a point no photo sees keeps its colour
            first = point.track.elements[0]
            seen_by[first.image_id].append((point_id, first.point2D_idx))
    for image_id, points in seen_by.items():
        image = rec.images[image_id]
        camera = rec.cameras[image.camera_id]
        factor = reduction(max(camera.width, camera.height))
        path = images / image.name
        bgr = read_image(path, _REDUCED[factor] | cv2.IMREAD_IGNORE_ORIENTATION)
        if bgr is None:
            raise OdmInputError(f"{path}: cannot be decoded as an image; remove it or replace it")
        xy = np.array([image.points2D[idx].xy for _, idx in points], np.float64).reshape(-1, 2)
        # COLMAP's pixel centres are at +0.5: a keypoint at x lies in pixel floor(x) of the full photo
        col = np.clip((xy[:, 0] / factor).astype(int), 0, bgr.shape[1] - 1)
        row = np.clip((xy[:, 1] / factor).astype(int), 0, bgr.shape[0] - 1)
        rgb = bgr[row, col, ::-1]
        for (point_id, _), color in zip(points, rgb, strict=True):
            rec.points3D[point_id].color = color
