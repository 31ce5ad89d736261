"""Freeing the focal of a large model on a thinned copy, in bounded memory.

A COLMAP bundle adjustment holds about 780 bytes per observation (Ceres' residual blocks, Jacobian and
solver state): 1.75 GiB for the 2.26 million observations of the 300-photo synthetic survey, which took
its mapping process to 2.0 GiB in focal.settle_focal (measured 2026-12-03 with /proc's VmHWM per step:
mapping itself peaked at 1.7 GiB, its global adjustments skipping redundant points). Above
MAX_OBSERVATIONS the focal is therefore freed on a copy that keeps, for every photo, KEEP_PER_IMAGE
observations of the longest tracks, as COLMAP's own global adjustments skip redundant points
(`ba_global_ignore_redundant_points3D`). When the refined focal is kept, the copy's cameras and poses go
into the whole model, and its points are adjusted to them POINTS_PER_CHUNK at a time, cameras and poses
held constant (a point's position depends on its own track alone).

Measured on that survey's mapped model (2026-12-03, loaded from disk, VmHWM): freeing the focal on the
whole model peaked at 1,972 MiB in 90 s; on the copy (1,500 observations a photo) at 923 MiB in 50 s, with
0.1101 against 0.1098 px, the focal 426.83 against 426.79 px, camera centres 0.9 cm and points 1.1 cm
(median) from the whole adjustment's (the held model's: 0.8 and 2.3 cm). The copy grows with the photos
(about 1.2 MB of adjustment a photo), no longer with their observations.
"""

from __future__ import annotations

from collections import Counter

import pycolmap

MAX_OBSERVATIONS = 1_000_000  # a model with more frees its focal on a thinned copy
KEEP_PER_IMAGE = 1500  # observations kept per photo in the copy (500: 623 MiB, points 4.7 cm off)
POINTS_PER_CHUNK = 50_000  # points adjusted at once when the copy's cameras and poses are adopted


def observations(rec: pycolmap.Reconstruction) -> int:
    """The model's observations (the sum of its points' track lengths)."""
    return sum(point.track.length() for point in rec.points3D.values())


def thinned(rec: pycolmap.Reconstruction, per_image: int = KEEP_PER_IMAGE) -> pycolmap.Reconstruction:
    """A copy of `rec` with the points that give each registered photo its first `per_image`
    observations, longest tracks first (every point seen by a photo with fewer is kept)."""
    tracks = [(pid, [el.image_id for el in p.track.elements]) for pid, p in rec.points3D.items()]
    tracks.sort(key=lambda t: -len(t[1]))
    counts: Counter[int] = Counter()
    kept: set[int] = set()
    for pid, images in tracks:
        if any(counts[image] < per_image for image in images):
            kept.add(pid)
            counts.update(images)
    copy = pycolmap.Reconstruction(rec)
    for pid in [pid for pid, _ in tracks if pid not in kept]:
        copy.delete_point3D(pid)
    return copy


def adopt(whole: pycolmap.Reconstruction, adjusted: pycolmap.Reconstruction) -> None:
    """Give `whole`, in place, the cameras and poses of `adjusted` (a thinned copy of it, adjusted), then
    adjust every point of `whole` to them, POINTS_PER_CHUNK at a time, cameras and poses constant."""
    for camera_id, camera in adjusted.cameras.items():
        whole.cameras[camera_id].params = camera.params
    for frame_id, frame in adjusted.frames.items():
        whole.frames[frame_id].rig_from_world = frame.rig_from_world
    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    options.refine_focal_length = options.refine_extra_params = options.refine_principal_point = False
    options.refine_rig_from_world = options.refine_sensor_from_rig = False
    ids = list(whole.point3D_ids())
    for start in range(0, len(ids), POINTS_PER_CHUNK):
        config = pycolmap.BundleAdjustmentConfig()
        for pid in ids[start : start + POINTS_PER_CHUNK]:
            config.add_variable_point(pid)
        pycolmap.create_default_bundle_adjuster(options, config, whole).solve()
    whole.update_point_3d_errors()
