"""The quality report's figures of structure from motion, written by the opensfm stage into stats.json
(the report only gathers them): features and matches per photo, track lengths, each camera's residuals
over its image, and how many photos see each ground cell (OpenSfM's compute_statistics and ODM's
report, opensfm/stats.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap
import rasterio.features
import shapely
from affine import Affine
from rasterio.enums import MergeAlg

RESIDUAL_GRID = (8, 6)  # cells across and down each camera's image
OVERLAP_CELLS = 160  # cells along the longer side of the overlap map
BORDER_SAMPLES = 16  # points along each image edge when a footprint is traced


def features_per_photo(db_path: Path, rec: pycolmap.Reconstruction) -> dict[str, dict[str, int]]:
    """Photo name -> detected features, features in the reconstruction, verified matches and the number
    of photos it was matched with (from COLMAP's database)."""
    counts: dict[str, dict[str, int]] = {}
    with pycolmap.Database.open(db_path) as db:
        names = {image.image_id: image.name for image in db.read_all_images()}
        for image_id, name in names.items():
            counts[name] = {
                "detected": db.num_keypoints_for_image(image_id),
                "reconstructed": 0,
                "matches": 0,
                "matched_photos": 0,
            }
        for pair_id, inliers in zip(*db.read_two_view_geometry_num_inliers(), strict=True):
            if inliers == 0:
                continue
            for image_id in pycolmap.pair_id_to_image_pair(pair_id):
                counts[names[image_id]]["matches"] += inliers
                counts[names[image_id]]["matched_photos"] += 1
    for image in rec.images.values():
        if image.has_pose and image.name in counts:
            counts[image.name]["reconstructed"] = image.num_points3D
    return counts


def spread(values: list[int]) -> dict[str, float]:
    """ODM's min, max, mean, median block."""
    if not values:
        return {}
    arr = np.asarray(values, dtype=float)
    return {
        "min": float(arr.min()),
        "max": float(arr.max()),
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
    }


def track_length_histogram(rec: pycolmap.Reconstruction) -> dict[str, int]:
    """How many tie points have each track length (photos seeing them)."""
    lengths = Counter(p.track.length() for p in rec.points3D.values())
    return {str(k): lengths[k] for k in sorted(lengths)}


def residual_grids(rec: pycolmap.Reconstruction) -> dict[str, dict[str, Any]]:
    """Per camera: the mean reprojection residual (px; observed minus projected) of its observations in
    each cell of a RESIDUAL_GRID over the image, with the count of observations."""
    cols, rows = RESIDUAL_GRID
    grids: dict[int, np.ndarray] = {}
    for image in rec.images.values():
        if not image.has_pose:
            continue
        camera = rec.cameras[image.camera_id]
        observed = [(p.xy, p.point3D_id) for p in image.points2D if p.has_point3D()]
        if not observed:
            continue
        xy = np.array([o[0] for o in observed])
        world = np.array([rec.points3D[o[1]].xyz for o in observed])
        pose = image.cam_from_world().matrix()
        in_cam = world @ pose[:, :3].T + pose[:, 3]
        projected = camera.img_from_cam(in_cam, False)
        col = np.clip((xy[:, 0] / camera.width * cols).astype(int), 0, cols - 1)
        row = np.clip((xy[:, 1] / camera.height * rows).astype(int), 0, rows - 1)
        grid = grids.setdefault(camera.camera_id, np.zeros((rows, cols, 3)))
        residual = xy - projected
        np.add.at(grid, (row, col), np.column_stack([residual, np.ones(len(xy))]))
    out = {}
    for camera_id, grid in grids.items():
        count = np.maximum(grid[..., 2], 1)
        camera = rec.cameras[camera_id]
        out[str(camera_id)] = {
            "camera": f"{camera.model.name} {camera.width}x{camera.height}",
            "dx_px": np.round(grid[..., 0] / count, 4).tolist(),
            "dy_px": np.round(grid[..., 1] / count, 4).tolist(),
            "count": grid[..., 2].astype(int).tolist(),
        }
    return out


def overlap_grid(rec: pycolmap.Reconstruction, ground_z: float) -> dict[str, Any]:
    """How many registered photos see each cell of the plane z = ground_z (model frame): each photo's
    image border is traced onto the plane and the footprints are counted on OVERLAP_CELLS cells."""
    footprints = [fp for im in rec.images.values() if im.has_pose and (fp := _footprint(rec, im, ground_z))]
    if not footprints:
        return {}
    xmin, ymin, xmax, ymax = shapely.union_all(footprints).bounds
    cell = max(xmax - xmin, ymax - ymin) / OVERLAP_CELLS
    width, height = int(np.ceil((xmax - xmin) / cell)), int(np.ceil((ymax - ymin) / cell))
    transform = Affine(cell, 0, xmin, 0, -cell, ymax)
    shapes = ((footprint, 1) for footprint in footprints)
    counts = rasterio.features.rasterize(
        shapes, (height, width), transform=transform, dtype="int32", merge_alg=MergeAlg.add
    )  # one pass: overlapping footprints add up
    return {
        "origin": [xmin, ymax],  # top-left corner, model frame
        "cell_m": cell,
        "counts": counts.tolist(),
        "area_m2": float((counts > 0).sum() * cell * cell),
        "area_2plus_m2": float((counts > 1).sum() * cell * cell),
    }


def _footprint(
    rec: pycolmap.Reconstruction, image: pycolmap.Image, ground_z: float
) -> shapely.Polygon | None:
    camera = rec.cameras[image.camera_id]
    w, h = camera.width, camera.height
    t = np.linspace(0, 1, BORDER_SAMPLES, endpoint=False)
    border = np.concatenate(
        [np.column_stack([t * w, 0 * t]), np.column_stack([w + 0 * t, t * h]),
         np.column_stack([(1 - t) * w, h + 0 * t]), np.column_stack([0 * t, (1 - t) * h])]
    )  # fmt: skip
    rays_cam = np.column_stack([camera.cam_from_img(border), np.ones(len(border))])
    pose = image.cam_from_world().matrix()
    rays = rays_cam @ pose[:, :3]  # world directions (R^T r for each row)
    centre = image.projection_center()
    down = rays[:, 2] < -1e-6
    if down.sum() < 3 or centre[2] <= ground_z:
        return None
    reach = (ground_z - centre[2]) / rays[down, 2]
    points = centre[:2] + rays[down, :2] * reach[:, None]
    polygon = shapely.Polygon(points).buffer(0)
    return polygon if polygon.area > 0 else None


def report_figures(db_path: Path, rec: pycolmap.Reconstruction) -> dict[str, Any]:
    """stats.json's blocks for the report: ODM's features_statistics plus per-photo figures, the track
    length histogram, each camera's residual grid and the overlap map (at the tie points' median height)."""
    per_photo = features_per_photo(db_path, rec)
    ground_z = float(np.median([p.xyz[2] for p in rec.points3D.values()])) if rec.num_points3D() else 0.0
    return {
        "features_statistics": {
            "detected_features": spread([v["detected"] for v in per_photo.values()]),
            "reconstructed_features": spread(
                [v["reconstructed"] for v in per_photo.values() if v["reconstructed"]]
            ),
        },
        "photo_statistics": per_photo,
        "track_length_histogram": track_length_histogram(rec),
        "camera_residuals": residual_grids(rec),
        "overlap": overlap_grid(rec, ground_z),
    }
