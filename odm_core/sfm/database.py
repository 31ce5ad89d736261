"""The COLMAP database that structure from motion works from: photos, cameras, focal and GPS priors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pycolmap

from odm_core.errors import OdmInputError
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options import OpensfmOptions
from odm_core.photos.decode import read_image
from odm_core.photos.listing import find_mask
from odm_core.photos.photo import Photo
from odm_core.sfm.features import feature_process_size
from odm_core.sfm.gps import gps_local_m

COLMAP_MODEL: dict[str, str] = {
    "auto": "RADIAL",
    "perspective": "RADIAL",
    "brown": "OPENCV",
    "fisheye": "RADIAL_FISHEYE",
    "fisheye_opencv": "OPENCV_FISHEYE",
}


DEFAULT_FOCAL_FACTOR = 1.2  # COLMAP's guess without an EXIF focal: 1.2 x the larger side


def import_photos(
    tree: ProjectTree, photos: list[Photo], opts: OpensfmOptions
) -> tuple[dict[str, int], Path | None]:
    """The photos and their cameras into a new COLMAP database; returns (photo name -> feature process
    size in px, the folder of COLMAP masks or None)."""
    names = [p.filename for p in photos]
    masks = tree.colmap_database.parent / "masks"
    write_photos(tree.colmap_database, photos, COLMAP_MODEL[opts.camera_lens])
    sizes = {p.filename: feature_process_size(p.width, p.height, opts.feature_quality) for p in photos}
    return sizes, masks if write_masks(tree.images, names, masks) else None


def write_photos(db_path: Path, photos: list[Photo], model: str) -> None:
    """Cameras, rigs, images and frames as COLMAP's image import writes them, from the photos' metadata
    instead of decoding every photo (pycolmap.import_images reads each whole: 3 s of the stage's CPU on
    Brighton's 18). One camera per make, model, size and focal ratio (ODM's camera id), started from
    ODM's focal ratio x the larger side (COLMAP's guess, 1.2 x, when the EXIF gives none); one trivial rig
    per camera and one frame per photo, so the mapper sees what it would after import_images."""
    with pycolmap.Database.open(db_path) as db:
        cameras: dict[tuple[object, ...], tuple[int, int]] = {}
        for photo in photos:
            key = (photo.camera_make, photo.camera_model, photo.width, photo.height, photo.focal_ratio)
            if key not in cameras:
                cameras[key] = _write_camera(db, photo, model)
            camera_id, rig_id = cameras[key]
            image_id = db.write_image(pycolmap.Image(name=photo.filename, camera_id=camera_id))
            frame = pycolmap.Frame()
            frame.rig_id = rig_id
            frame.add_data_id(db.read_image(image_id).data_id)
            db.write_frame(frame)


def _write_camera(db: pycolmap.Database, photo: Photo, model: str) -> tuple[int, int]:
    """(camera id, rig id) of a new camera for `photo` and its trivial rig."""
    side = max(photo.width, photo.height)
    focal_px = photo.focal_ratio * side if photo.focal_ratio else DEFAULT_FOCAL_FACTOR * side
    camera = pycolmap.Camera.create_from_model_name(0, model, focal_px, photo.width, photo.height)
    camera.has_prior_focal_length = bool(photo.focal_ratio)
    camera_id = db.write_camera(camera)
    rig = pycolmap.Rig()
    rig.add_ref_sensor(pycolmap.sensor_t(pycolmap.SensorType.CAMERA, camera_id))
    return camera_id, db.write_rig(rig)


def write_masks(images: Path, names: list[str], out: Path) -> int:
    """COLMAP's masks (`<photo name>.png`, 0 = no features) from ODM's `<stem>_mask.<ext>` files, black
    where the mask is below half intensity; returns how many photos have one."""
    count = 0
    for name in names:
        mask_file = find_mask(images, name)
        if mask_file is None:
            continue
        mask = read_image(mask_file, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
        if mask is None:
            raise OdmInputError(f"{mask_file}: the mask of {name} cannot be read as an image")
        out.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / f"{name}.png"), np.where(mask >= 128, 255, 0).astype(np.uint8))
        count += 1
    return count


def write_pose_priors(db_path: Path, photos: list[Photo], georef: GeoReference | None) -> int:
    """Replace COLMAP's own EXIF priors with ours: UTM minus the project offset, with --gps-accuracy."""
    by_name = {p.filename: p for p in photos}
    local = gps_local_m(photos, georef) if georef is not None else {}
    count = 0
    with pycolmap.Database.open(db_path) as db:
        db.clear_pose_priors()
        if georef is None:
            return 0
        for image in db.read_all_images():
            p = by_name[image.name]
            if image.name not in local or p.altitude is None:
                continue
            xyz = local[image.name]
            sxy, sz = p.gps_xy_stddev or 3.0, p.gps_z_stddev or 3.0
            prior = pycolmap.PosePrior(
                position=xyz,
                position_covariance=np.diag([sxy**2, sxy**2, sz**2]),
                coordinate_system=pycolmap.PosePriorCoordinateSystem.CARTESIAN,
            )
            prior.corr_data_id = image.data_id
            db.write_pose_prior(prior)
            count += 1
    return count
