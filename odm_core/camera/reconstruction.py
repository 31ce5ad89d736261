"""The cameras of a COLMAP reconstruction as ViewCameras at depth-map size (ODM's --pc-quality), each
with its depth range and a local depth bound from its tie points; used by the dense and orthophoto stages.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pycolmap
from scipy.ndimage import maximum_filter

from odm_core.camera.view import ViewCamera
from odm_core.photos.listing import find_mask

DEPTH_GRID_COLS = 10  # the local depth bound's grid: cells a tenth of the depth map's width
LOCAL_DEPTH_MARGIN = 1.15  # a depth may lie this far beyond the farthest tie point around its cell

# ODM's depth-map size ratios (opendm/utils.py get_depthmap_resolution, --pc-quality).
PC_QUALITY_RATIO: dict[str, float] = {
    "ultra": 0.5,
    "high": 0.25,
    "medium": 0.125,
    "low": 0.0675,
    "lowest": 0.03375,
}
MIN_DEPTHMAP_SIZE_PX = 320


def depthmap_size(width: int, height: int, quality: str) -> int:
    """ODM's depth-map size (longest side, px) for a photo and --pc-quality (get_depthmap_resolution)."""
    max_dim = max(width, height)
    megapixels = width * height / 1e6
    multiplier = 2.0 if megapixels < 6 else 0.5 if megapixels > 42 else 1.0
    size = max(MIN_DEPTHMAP_SIZE_PX, int(max_dim * PC_QUALITY_RATIO[quality] * multiplier))
    return min(size, max_dim)


def view_cameras(rec: pycolmap.Reconstruction, images: Path, quality: str) -> list[ViewCamera]:
    """Each registered image as a ViewCamera, in name order, with its depth range from its tie points."""
    views = []
    for index, image in enumerate(
        sorted((i for i in rec.images.values() if i.has_pose), key=lambda i: i.name)
    ):
        cam = rec.cameras[image.camera_id]
        size = depthmap_size(cam.width, cam.height, quality)
        scale = size / max(cam.width, cam.height)
        pose = image.cam_from_world()
        matrix = np.hstack([pose.rotation.matrix(), pose.translation[:, None]])
        depth_min, depth_max = _depth_range(rec, image, matrix)
        view = ViewCamera(
            index=index,
            name=image.name,
            photo=str(images / image.name),
            model=cam.model_name,
            params=tuple(float(p) for p in cam.params),
            width=cam.width,
            height=cam.height,
            cam_from_world=tuple(float(v) for v in matrix.ravel()),
            dm_width=max(1, round(cam.width * scale)),
            dm_height=max(1, round(cam.height * scale)),
            dm_focal_px=float(cam.mean_focal_length()) * scale,
            depth_min=depth_min,
            depth_max=depth_max,
            mask=str(find_mask(images, image.name) or ""),
        )
        bound = _local_depth_max(rec, image, view)
        views.append(replace(view, local_depth_max=bound, local_depth_cols=DEPTH_GRID_COLS))
    return views


def _depth_range(
    rec: pycolmap.Reconstruction, image: pycolmap.Image, matrix: np.ndarray
) -> tuple[float, float]:
    ids = [p.point3D_id for p in image.points2D if p.has_point3D()]
    if len(ids) < 10:
        raise ValueError(f"{image.name} sees only {len(ids)} tie points: too few to bound its depths")
    xyz = np.array([rec.points3D[i].xyz for i in ids])
    z = xyz @ matrix[:, :3].T[:, 2] + matrix[2, 3]
    z = z[z > 0]
    lo, hi = np.percentile(z, [1, 99])
    return float(0.75 * lo), float(1.3 * hi)


def _local_depth_max(
    rec: pycolmap.Reconstruction, image: pycolmap.Image, view: ViewCamera
) -> tuple[float, ...]:
    """ViewCamera's local bound: per grid cell, LOCAL_DEPTH_MARGIN x the farthest tie point seen in the
    cell or its 8 neighbours, capped by depth_max; depth_max where none lies that near.

    The global range lets through false matches far behind the surface (a pit under a tree whose
    crown repeats itself); tie points bound the depth where the view has them."""
    xyz = np.array([rec.points3D[p.point3D_id].xyz for p in image.points2D if p.has_point3D()])
    u, v, z = view.project(xyz)
    rows = max(1, round(DEPTH_GRID_COLS * view.dm_height / view.dm_width))
    ok = view.in_depth_map(u, v, z)
    r = (v[ok] * rows // view.dm_height).astype(int)
    c = (u[ok] * DEPTH_GRID_COLS // view.dm_width).astype(int)
    farthest = np.zeros((rows, DEPTH_GRID_COLS))
    np.maximum.at(farthest, (r, c), z[ok])
    near = maximum_filter(farthest, size=3, mode="constant", cval=0.0)
    bound = np.where(near > 0, np.minimum(near * LOCAL_DEPTH_MARGIN, view.depth_max), view.depth_max)
    return tuple(float(b) for b in bound.ravel())
