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


def import_photos(
    tree: ProjectTree, photos: list[Photo], opts: OpensfmOptions
) -> tuple[dict[str, int], Path | None]:
    """The photos and their cameras into a new COLMAP database (CameraMode.AUTO: one camera per model
    and size), each started from its EXIF focal; returns (photo name -> feature process size in px, the
    folder of COLMAP masks or None)."""
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = COLMAP_MODEL[opts.camera_lens]
    names = [p.filename for p in photos]
    masks = tree.colmap_database.parent / "masks"
    pycolmap.Database.open(tree.colmap_database).close()
    pycolmap.import_images(
        tree.colmap_database, tree.images, pycolmap.CameraMode.AUTO, image_names=names, options=reader
    )
    set_prior_focals(tree.colmap_database, photos)
    sizes = {p.filename: feature_process_size(p.width, p.height, opts.feature_quality) for p in photos}
    return sizes, masks if write_masks(tree.images, names, masks) else None


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


def set_prior_focals(db_path: Path, photos: list[Photo]) -> None:
    """Start each camera from the EXIF focal (ODM's focal_ratio) where COLMAP had to guess one."""
    by_name = {p.filename: p for p in photos}
    with pycolmap.Database.open(db_path) as db:
        cameras = {c.camera_id: c for c in db.read_all_cameras()}
        for image in db.read_all_images():
            cam, photo = cameras.pop(image.camera_id, None), by_name[image.name]
            if cam is None or cam.has_prior_focal_length or not photo.focal_ratio:
                continue
            focal_px = photo.focal_ratio * max(cam.width, cam.height)
            params = np.array(cam.params)
            params[list(cam.focal_length_idxs())] = focal_px
            cam.params = params.tolist()
            cam.has_prior_focal_length = True
            db.update_camera(cam)


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
