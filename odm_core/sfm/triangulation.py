"""ODM's `--sfm-algorithm triangulation`: cameras placed where their GPS and gimbal say, then refined.

OpenSfM's `triangulation_reconstruction` (ODM's fork, opensfm/reconstruction.py) starts every camera at its
GPS position, turned as its recorded angles say, triangulates the matched tracks and alternates bundle
adjustment under the GPS priors with re-triangulation. ODM offers it for photos whose positions and angles
are good (RTK and a calibrated gimbal) and falls back to incremental mapping when a photo has no angles
(stages/dataset.py); so does `missing_angles` here.

The same with pycolmap: each photo's `cam_from_world` from its GPS prior (the database's, in the model
frame: UTM minus the project offset) and its gimbal angles; then, for each threshold of ROUNDS_PX, the
tracks triangulated afresh from the poses (COLMAP's point triangulator, points past the threshold
dropped) and one bundle adjustment of poses and points under the GPS priors (Cauchy loss), the focal held
at EXIF's when `hold_focal` (focal.py frees it afterwards, as for incremental mapping). A photo whose
recorded angles are wrong keeps few of its points (`disagreeing_photos`); the stage then maps
incrementally instead and says which photos (a model with one photo turned the wrong way is never kept).

Measured (docs/BENCHMARKS.md): on the synthetic surveys, with angles 1 or 3 degrees off the truth, it ends
on the incremental model (11 photos: 0.119 px; 200 photos: centres within 0.015 m), but it is slower than
incremental mapping on 2 cores (665 against 336 s at 200 photos), so incremental stays the default. Six of
Brighton's photos record a yaw 180 degrees from what their matches show; they are named and the photos
mapped incrementally.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pycolmap
from pyproj import Transformer

from odm_core.geo.georef import GeoReference
from odm_core.photos.photo import Photo

Progress = Callable[[float, str], None]
ROUNDS_PX = (64.0, 16.0, 4.0, 4.0)  # triangulation thresholds, loosest first (gimbal error ~1 degree)
MIN_OBSERVATIONS = 15  # points a photo needs at the end for its pose to count as supported
MIN_OBSERVED_FRACTION = 0.1  # ... and this share of its matched keypoints (synthetic: 0.5-0.9)
# camera axes (x right, y down, z forward) in ENU at yaw 0, pitch 0 (level, looking north), roll 0
_LEVEL_NORTH = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # columns: x, y, z


def gimbal_world_from_cam(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """3 x 3 rotation from the camera frame (x right, y down, z forward) to east-north-up, from gimbal
    angles as DJI records them (degrees): yaw clockwise from north, pitch up from the horizon (-90 =
    nadir, the image's top then pointing along the yaw), roll about the optical axis."""
    yaw, pitch, roll = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    cz, sz = math.cos(-yaw), math.sin(-yaw)
    cx, sx = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(roll), math.sin(roll)
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])  # about north: the optical axis here
    return rz @ rx @ ry @ _LEVEL_NORTH


def missing_angles(photos: list[Photo]) -> str | None:
    """The first photo (by name) without GPS or without all three gimbal angles; None when every photo
    has them (what the triangulation needs)."""
    for photo in sorted(photos, key=lambda p: p.filename):
        if not photo.has_gps or photo.altitude is None or None in (photo.yaw, photo.pitch, photo.roll):
            return photo.filename
    return None


def grid_rotations(photos: list[Photo], georef: GeoReference) -> dict[str, list[float]]:
    """Each photo's world_from_cam (row-major 3 x 3) in the model frame. Gimbal yaw is measured from true
    north and the model's axes are the UTM grid's, so each yaw is turned by the angle between the two at
    the photo (meridian convergence, up to a few degrees)."""
    to_utm = Transformer.from_crs(4326, georef.epsg, always_xy=True)
    out = {}
    for p in photos:
        assert p.latitude is not None and p.longitude is not None
        x0, y0 = to_utm.transform(p.longitude, p.latitude)
        x1, y1 = to_utm.transform(p.longitude, p.latitude + 1e-4)
        true_north_deg = math.degrees(math.atan2(x1 - x0, y1 - y0))  # true north's azimuth on the grid
        assert p.yaw is not None and p.pitch is not None and p.roll is not None
        rotation = gimbal_world_from_cam(p.yaw + true_north_deg, p.pitch, p.roll)
        out[p.filename] = [float(v) for v in rotation.ravel()]
    return out


def photo_rotations(
    algorithm: str, photos: list[Photo], georef: GeoReference | None
) -> tuple[dict[str, list[float]] | None, tuple[str, ...]]:
    """For --sfm-algorithm triangulation (`algorithm`), each photo's gimbal rotation in the model frame
    (grid_rotations); None, with the reason, when the photos cannot have it (no GPS frame, or a photo
    without angles: ODM then maps incrementally too, stages/dataset.py)."""
    if algorithm != "triangulation":
        return None, ()
    if georef is None:
        return None, (
            "--sfm-algorithm triangulation needs GPS positions; the photos have too few, so they "
            "were mapped incrementally",
        )
    missing = missing_angles(photos)
    if missing is not None:
        return None, (
            f"--sfm-algorithm triangulation: {missing} has no GPS altitude or no yaw, pitch and "
            "roll (DJI XMP gimbal angles or a --geo file with angles), so the photos were mapped "
            "incrementally",
        )
    return grid_rotations(photos, georef), ()


def posed_model(
    db: Path, rotations: dict[str, list[float]], centres: dict[str, np.ndarray] | None = None
) -> pycolmap.Reconstruction:
    """A model of the database's cameras and the images named in `rotations` (world_from_cam, row-major
    3 x 3), each at its centre: `centres`, or by default its GPS prior."""
    rec = pycolmap.Reconstruction()
    with pycolmap.Database.open(db) as database:
        for camera in database.read_all_cameras():
            rec.add_camera_with_trivial_rig(camera)
        priors = {p.corr_data_id.id: np.asarray(p.position, float) for p in database.read_all_pose_priors()}
        for stored in database.read_all_images():
            if stored.name not in rotations:
                continue
            keypoints = database.read_keypoints(stored.image_id)[:, :2].astype(np.float64)
            image = pycolmap.Image(
                name=stored.name, keypoints=keypoints, camera_id=stored.camera_id, image_id=stored.image_id
            )
            cam_from_world_r = np.asarray(rotations[stored.name], float).reshape(3, 3).T
            centre = centres[stored.name] if centres is not None else priors[stored.data_id.id]
            pose = pycolmap.Rigid3d(pycolmap.Rotation3d(cam_from_world_r), -cam_from_world_r @ centre)
            rec.add_image_with_trivial_frame(image, pose)
    return rec


def _triangulated(
    rec: pycolmap.Reconstruction, db: Path, images: Path, out: Path, threshold_px: float
) -> pycolmap.Reconstruction:
    """The tracks triangulated afresh from the model's poses, points beyond threshold_px dropped."""
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = 1
    options.triangulation.complete_max_reproj_error = threshold_px
    options.triangulation.merge_max_reproj_error = threshold_px
    options.mapper.filter_max_reproj_error = threshold_px
    out.mkdir(parents=True, exist_ok=True)
    return pycolmap.triangulate_points(rec, db, images, out, clear_points=True, options=options)


def _adjusted(rec: pycolmap.Reconstruction, db: Path, hold_focal: bool, use_priors: bool = True) -> None:
    """One bundle adjustment of poses, points and (unless held) the focal, under the GPS priors when
    `use_priors` (the model is then in their frame)."""
    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    options.refine_focal_length = not hold_focal
    if not use_priors:
        pycolmap.bundle_adjustment(rec, options)
        rec.update_point_3d_errors()
        return
    config = pycolmap.BundleAdjustmentConfig()
    for image_id in rec.reg_image_ids():
        if rec.image(image_id).num_points3D > 0:  # a photo that sees no point: nothing to adjust it by
            config.add_image(image_id)
    with pycolmap.Database.open(db) as database:
        priors = database.read_all_pose_priors()
    prior_options = pycolmap.PosePriorBundleAdjustmentOptions()
    pycolmap.create_pose_prior_bundle_adjuster(options, prior_options, config, priors, rec).solve()
    rec.update_point_3d_errors()


def refined(
    rec: pycolmap.Reconstruction,
    db: Path,
    images: Path,
    out: Path,
    progress: Progress,
    thresholds_px: tuple[float, ...],
    hold_focal: bool,
    use_priors: bool = True,
) -> pycolmap.Reconstruction:
    """Rounds of triangulation from the model's poses and bundle adjustment, one per threshold (the
    last of ROUNDS_PX's thresholds when fewer are given: progress counts on from there)."""
    first = len(ROUNDS_PX) - len(thresholds_px)
    for i, threshold_px in enumerate(thresholds_px, start=first):
        progress(0.7 + 0.25 * i / len(ROUNDS_PX), f"triangulating at {threshold_px:g} px")
        rec = _triangulated(rec, db, images, out / "triangulation", threshold_px)
        _adjusted(rec, db, hold_focal, use_priors)
    return rec


def matched_keypoints(db: Path) -> dict[str, int]:
    """Each image's keypoints that are inliers of at least one verified pair (what it could observe)."""
    matched: dict[int, set[int]] = {}
    with pycolmap.Database.open(db) as database:
        names = {image.image_id: image.name for image in database.read_all_images()}
        pair_ids, geometries = database.read_two_view_geometries()
    for pair_id, geometry in zip(pair_ids, geometries, strict=True):
        if len(geometry.inlier_matches) == 0:
            continue
        first, second = pycolmap.pair_id_to_image_pair(pair_id)
        matched.setdefault(first, set()).update(geometry.inlier_matches[:, 0].tolist())
        matched.setdefault(second, set()).update(geometry.inlier_matches[:, 1].tolist())
    return {name: len(matched.get(image_id, ())) for image_id, name in names.items()}


def disagreeing_photos(rec: pycolmap.Reconstruction, db: Path) -> list[str]:
    """Photos whose pose the matches do not support: fewer than MIN_OBSERVATIONS points, or under
    MIN_OBSERVED_FRACTION of their matched keypoints observed (on Brighton six photos' recorded yaw is 180
    degrees off: five kept 0 points, one 17 of its 2,396)."""
    matched = matched_keypoints(db)
    out = []
    for image in rec.images.values():
        seen = image.num_points3D if image.has_pose else 0
        if seen < max(MIN_OBSERVATIONS, MIN_OBSERVED_FRACTION * matched.get(image.name, 0)):
            out.append(image.name)
    return sorted(out)


def triangulation_mapping(
    db: Path,
    images: Path,
    out: Path,
    rotations: dict[str, list[float]],
    progress: Progress,
    hold_focal: bool = False,
) -> tuple[pycolmap.Reconstruction, list[str]]:
    """The model from the photos' GPS priors (in `db`) and gimbal rotations (grid_rotations): rounds of
    triangulation and bundle adjustment (module docstring); and the photos whose pose the matches do not
    support (disagreeing_photos), for the caller to fall back on incremental mapping."""
    rec = refined(posed_model(db, rotations), db, images, out, progress, ROUNDS_PX, hold_focal)
    return rec, disagreeing_photos(rec, db)
