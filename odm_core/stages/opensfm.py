"""The `opensfm` stage: structure from motion with pycolmap, georeferenced to UTM by GPS priors.

ODM's name for the stage; the engine is COLMAP: SIFT features at ODM's --feature-quality size, pairs from
GPS neighbours (all pairs for small sets), incremental mapping with bundle adjustment that uses the GPS
positions as priors, so the model comes out in metres in UTM minus ODM's coords.txt offset.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

from odm_core.artifacts import write_json
from odm_core.errors import OdmStageError
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options import OpensfmOptions
from odm_core.photos.photo import Photo
from odm_core.sfm import export as sfm_export
from odm_core.sfm.features import feature_process_size
from odm_core.sfm.gps import gps_errors, gps_local_m, gps_residuals_m
from odm_core.sfm.pairs import EXHAUSTIVE_MAX_PHOTOS, gps_pairs
from odm_core.worker import MapUnits, serial_map

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]

COLMAP_MODEL: dict[str, str] = {
    "auto": "RADIAL",
    "perspective": "RADIAL",
    "brown": "OPENCV",
    "fisheye": "RADIAL_FISHEYE",
    "fisheye_opencv": "OPENCV_FISHEYE",
}
MIN_GPS_PHOTOS = 3  # GPS priors need at least three positions to fix a similarity


@dataclass(frozen=True)
class OpensfmResult:
    """What the stage made: counts, accuracy figures and its output files."""

    n_photos: int
    n_registered: int
    unregistered: tuple[str, ...]
    n_points: int
    mean_reprojection_error_px: float
    georeferenced: bool
    gps_rms_horizontal_m: float | None
    outputs: tuple[Path, ...]

    def summary(self) -> list[str]:
        """The run summary's lines for this stage."""
        lines = [
            f"opensfm: {self.n_registered}/{self.n_photos} photos registered, {self.n_points} points, "
            f"reprojection error {self.mean_reprojection_error_px:.3f} px"
        ]
        if self.unregistered:
            lines.append(f"  not registered: {', '.join(self.unregistered)}")
        if self.gps_rms_horizontal_m is not None:
            lines.append(f"  camera centres vs GPS: {self.gps_rms_horizontal_m:.2f} m RMS horizontal")
        else:
            lines.append("  not georeferenced: local coordinates (no GPS)")
        return lines


def load_photos(images_json: Path) -> list[Photo]:
    """The photos the dataset stage accepted."""
    return [Photo.from_json(d) for d in json.loads(images_json.read_text())]


def _noop(fraction: float, message: str) -> None:
    return None


def opensfm(
    tree: ProjectTree, opts: OpensfmOptions, num_threads: int = -1, progress: Progress = _noop
) -> OpensfmResult:
    """Run SfM on the photos of images.json and write the model in ODM's and COLMAP's formats."""
    photos = load_photos(tree.images_json)
    georef = GeoReference.read(tree.coords_txt) if tree.coords_txt.exists() else None
    work = tree.colmap_database.parent
    shutil.rmtree(work, ignore_errors=True)  # never resume from a half-written database
    work.mkdir(parents=True)
    db = tree.colmap_database

    _extract(tree, photos, opts, num_threads, progress)
    gps_photos = _write_priors(db, photos, georef)
    georeferenced = georef is not None and gps_photos >= MIN_GPS_PHOTOS
    progress(0.45, "matching features")
    _match(db, photos, georef if georeferenced else None, opts, num_threads, work)
    progress(0.7, "incremental mapping")
    rec = _map(db, tree.images, work / "mapper", georeferenced, num_threads, len(photos), progress)

    registered = {im.name for im in rec.images.values() if im.has_pose}
    unregistered = tuple(sorted(p.filename for p in photos if p.filename not in registered))
    if unregistered:
        log.warning("%d photo(s) did not register: %s", len(unregistered), ", ".join(unregistered))
    progress(0.95, "writing the reconstruction")
    errors = gps_errors(gps_residuals_m(rec, photos, georef)) if georef and georeferenced else {}
    outputs = sfm_export.write_all(tree, rec, photos, georef if georeferenced else None, opts.camera_lens)
    outputs.append(write_json(tree.opensfm_stats, _stats(rec, photos, errors, georeferenced)))
    return OpensfmResult(
        n_photos=len(photos),
        n_registered=len(registered),
        unregistered=unregistered,
        n_points=rec.num_points3D(),
        mean_reprojection_error_px=float(rec.compute_mean_reprojection_error()),
        georeferenced=georeferenced,
        gps_rms_horizontal_m=errors.get("horizontal_rms"),  # type: ignore[arg-type]
        outputs=tuple(outputs),
    )


def _extract(
    tree: ProjectTree, photos: list[Photo], opts: OpensfmOptions, num_threads: int, progress: Progress
) -> None:
    """SIFT features for every photo, in chunks so progress can be reported."""
    ext = pycolmap.FeatureExtractionOptions()
    ext.max_image_size = max(feature_process_size(p.width, p.height, opts.feature_quality) for p in photos)
    ext.sift.max_num_features = opts.min_num_features
    ext.num_threads = num_threads
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = COLMAP_MODEL[opts.camera_lens]
    names = [p.filename for p in photos]
    # Images and cameras first, in one call, so CameraMode.AUTO shares a camera across all chunks.
    pycolmap.Database.open(tree.colmap_database).close()
    pycolmap.import_images(
        tree.colmap_database, tree.images, pycolmap.CameraMode.AUTO, image_names=names, options=reader
    )
    chunk = max(4, 2 * max(num_threads, 1))
    for start in range(0, len(names), chunk):
        progress(0.4 * start / len(names), f"extracting features ({start}/{len(names)} photos)")
        pycolmap.extract_features(
            tree.colmap_database,
            tree.images,
            image_names=names[start : start + chunk],
            camera_mode=pycolmap.CameraMode.AUTO,
            reader_options=reader,
            extraction_options=ext,
            device=pycolmap.Device.cpu,
        )
    _set_prior_focals(tree.colmap_database, photos)


def _set_prior_focals(db_path: Path, photos: list[Photo]) -> None:
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


def _write_priors(db_path: Path, photos: list[Photo], georef: GeoReference | None) -> int:
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


def _match(
    db: Path,
    photos: list[Photo],
    georef: GeoReference | None,
    opts: OpensfmOptions,
    num_threads: int,
    work: Path,
) -> None:
    """Exhaustive matching for small or non-geotagged sets, GPS-neighbour pairs otherwise."""
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = num_threads
    gps = [p for p in photos if p.has_gps]
    if georef is None or len(photos) <= EXHAUSTIVE_MAX_PHOTOS or len(gps) < len(photos):
        pycolmap.match_exhaustive(db, matching_options=matching, device=pycolmap.Device.cpu)
        return
    local = gps_local_m(gps, georef)
    pairs = gps_pairs(np.array([local[p.filename][:2] for p in gps]), opts.matcher_neighbors)
    pair_file = work / "pairs.txt"
    pair_file.write_text("".join(f"{gps[i].filename} {gps[j].filename}\n" for i, j in sorted(pairs)))
    pairing = pycolmap.ImportedPairingOptions()
    pairing.match_list_path = pair_file
    pycolmap.match_image_pairs(
        db, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.cpu
    )


def _map(
    db: Path,
    images: Path,
    out: Path,
    use_priors: bool,
    num_threads: int,
    n_photos: int,
    progress: Progress,
) -> pycolmap.Reconstruction:
    """Incremental mapping with bundle adjustment; the largest model is kept."""
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = num_threads
    opts.use_prior_position = use_priors
    opts.use_robust_loss_on_prior_position = use_priors
    opts.min_model_size = min(opts.min_model_size, max(2, n_photos // 2))
    out.mkdir(parents=True, exist_ok=True)
    registered = [0]

    def on_next_image() -> None:
        registered[0] += 1
        progress(0.7 + 0.25 * min(registered[0] / n_photos, 1.0), f"registered {registered[0]} photos")

    models = pycolmap.incremental_mapping(db, images, out, opts, next_image_callback=on_next_image)
    if not models:
        raise OdmStageError(
            "structure from motion found no model: the photos share too few matching features "
            "(check overlap, or raise --min-num-features / --feature-quality)"
        )
    return max(models.values(), key=lambda r: r.num_reg_images())


def _stats(
    rec: pycolmap.Reconstruction, photos: list[Photo], errors: dict[str, object], georeferenced: bool
) -> dict[str, object]:
    """The reconstruction part of ODM's stats.json."""
    return {
        "reconstruction_statistics": {
            "initial_shots_count": len(photos),
            "reconstructed_shots_count": rec.num_reg_images(),
            "reconstructed_points_count": rec.num_points3D(),
            "components": 1,
            "has_gps": georeferenced,
            "has_gcp": False,
            "reprojection_error_pixels": float(rec.compute_mean_reprojection_error()),
            "average_track_length": float(rec.compute_mean_track_length()),
        },
        "gps_errors": errors,
    }


def run(
    tree: ProjectTree, opts: OpensfmOptions, key: str = "", map_units: MapUnits = serial_map
) -> OpensfmResult:
    """The stage in one process (what tests, benchmarks and scripts call; `key` and `map_units` serve
    the stages that fan out units, this one has none)."""
    return opensfm(tree, opts)
