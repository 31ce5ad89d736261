"""The `opensfm` stage: structure from motion with pycolmap, georeferenced to UTM by GPS priors.

ODM's name for the stage; the engine is COLMAP: SIFT features at ODM's --feature-quality size, pairs from
GPS neighbours (all pairs for small sets), incremental mapping with bundle adjustment that uses the GPS
positions as priors, so the model comes out in metres in UTM minus ODM's coords.txt offset.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

from odm_core.artifacts import DigestCache, remove_stale_units, write_json
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options import OpensfmOptions
from odm_core.photos.photo import Photo
from odm_core.sfm import export as sfm_export
from odm_core.sfm.align import align
from odm_core.sfm.colors import color_points
from odm_core.sfm.control import ground_control, reconstruction_stats, rms_errors, write_gcp_stats
from odm_core.sfm.database import import_photos, write_pose_priors
from odm_core.sfm.extract import FeatureUnit, extract_features, plan_features, write_keypoints
from odm_core.sfm.figures import report_figures
from odm_core.sfm.gps import finite_or_none, gps_errors, gps_residuals_m
from odm_core.sfm.mapping_process import map_photos
from odm_core.sfm.match_units import MatchUnit, match_pairs, write_matches
from odm_core.sfm.matching import plan_matching
from odm_core.sfm.seed import read_seed
from odm_core.sfm.unit_keys import FEATURES_MODULE, MATCHING_MODULE, units_key
from odm_core.worker import MapUnits, serial_map

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]

MIN_GPS_PHOTOS = 3  # GPS priors need at least three positions to fix a similarity
EXTRACTION_SHARE, MATCHING_SHARE = 0.35, 0.3  # of the stage's progress, before mapping (0.7 on)


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
    largest_gps_residual: tuple[str, float] | None  # the photo farthest from its GPS, horizontally (m)
    notes: tuple[str, ...]  # the alignment's warnings (levelled from attitudes, local frame)
    gcp_lines: tuple[str, ...]  # the GCPs' and check points' errors
    rms_errors: dict[str, dict[str, float | None]]  # "GPS", "GCPs", "check points" -> RMS x, y, z (m)
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
            largest = ""
            if self.largest_gps_residual:
                name, metres = self.largest_gps_residual
                largest = f" (largest {metres:.2f} m, {name}; every photo's in stats.json)"
            lines.append(
                f"  camera centres vs GPS: {self.gps_rms_horizontal_m:.2f} m RMS horizontal{largest}"
            )
        lines += [f"  {line}" for line in self.gcp_lines]
        lines += [f"  {note}" for note in self.notes]
        return lines


def load_photos(images_json: Path) -> list[Photo]:
    """The photos the dataset stage accepted."""
    return [Photo.from_json(d) for d in json.loads(images_json.read_text())]


def _noop(fraction: float, message: str) -> None:
    return None


def plan_opensfm(tree: ProjectTree, opts: OpensfmOptions, reuse: bool) -> list[FeatureUnit]:
    """A new COLMAP database with the photos and cameras of images.json, and one feature unit per photo
    (their files in opensfm/features/, with `reuse` reused where their checkpoint's key matches: their
    photo's content, options and code, odm_core.sfm.unit_keys; the files of photos no longer in the
    project removed)."""
    photos = load_photos(tree.images_json)
    work = tree.colmap_database.parent
    shutil.rmtree(work, ignore_errors=True)  # never resume from a half-written database
    work.mkdir(parents=True)
    sizes, masks = import_photos(tree, photos, opts)
    key, cache = units_key(FEATURES_MODULE, reuse), DigestCache(tree.digest_cache)
    digest = cache.digest if reuse else None
    units = plan_features(tree.images, sizes, opts.min_num_features, masks, tree.sfm_features, key, digest)
    cache.save()
    remove_stale_units(tree.sfm_features, ".features.npz", (u.out for u in units))
    return units


def opensfm(
    tree: ProjectTree,
    opts: OpensfmOptions,
    num_threads: int = -1,
    progress: Progress = _noop,
    reuse: bool = False,
    map_units: MapUnits = serial_map,
) -> OpensfmResult:
    """Run SfM on the photos of images.json and write the model in ODM's and COLMAP's formats; the feature
    and matching units through map_units, with `reuse` their checkpoints reused where their own inputs,
    options and code are unchanged (odm_core.sfm.unit_keys)."""
    if opts.model_seed is not None:
        return seeded_opensfm(tree, opts, opts.model_seed)
    units = plan_opensfm(tree, opts, reuse)
    progress(0.0, f"extracting features ({len(units)} photos)")
    files = map_units(extract_features, units)
    features = {u.name: Path(f) for u, f in zip(units, files, strict=True)}
    serial = map_units is serial_map  # else Dask: single-threaded units, at least one per worker thread
    threads = num_threads if num_threads > 0 else os.cpu_count() or 1
    pairs = plan_opensfm_matching(
        tree, opts, features, reuse, threads if serial else 1, 1 if serial else threads
    )
    progress(EXTRACTION_SHARE, f"matching features ({len(pairs)} units)")
    matches = [Path(f) for f in map_units(match_pairs, pairs)]
    return finish_opensfm(tree, opts, pairs, matches, progress)


def seeded_opensfm(tree: ProjectTree, opts: OpensfmOptions, model_seed: str) -> OpensfmResult:
    """A split-merge submodel's stage: its share of the parent's model (tree.split_seed, whose digest is
    `model_seed`), written as the stage writes a model of its own; nothing is matched or mapped again."""
    photos = load_photos(tree.images_json)
    georef = GeoReference.read(tree.coords_txt) if tree.coords_txt.exists() else None
    rec = read_seed(tree.split_seed, model_seed)
    registered, unregistered = _registration(rec, photos)
    outputs = sfm_export.write_all(tree, rec, photos, georef, opts.camera_lens)
    outputs += sfm_export.write_reference_lla(tree, georef)
    stats = {"split_seed": model_seed, "registered": len(registered), "points": rec.num_points3D()}
    outputs.append(write_json(tree.opensfm_stats, stats))
    return OpensfmResult(
        n_photos=len(photos),
        n_registered=len(registered),
        unregistered=unregistered,
        n_points=rec.num_points3D(),
        mean_reprojection_error_px=float(rec.compute_mean_reprojection_error()),
        georeferenced=georef is not None,
        gps_rms_horizontal_m=None,
        largest_gps_residual=None,
        notes=("the split-merge parent's model of these photos (one model for the whole survey)",),
        gcp_lines=(),
        rms_errors={},
        outputs=tuple(outputs),
    )


def plan_opensfm_matching(
    tree: ProjectTree,
    opts: OpensfmOptions,
    features: dict[str, Path],
    reuse: bool,
    num_threads: int = 1,
    min_units: int = 1,
    local_threads: int = 0,
) -> list[MatchUnit]:
    """The photos' keypoints and GPS priors into the database; the matching units of their pairs (GPS
    neighbours when the photos are georeferenced, files in opensfm/matches/, reused with `reuse`), at
    least min_units of them, each matching with num_threads threads (odm_core.sfm.match_units.plan_matches
    says how `local_threads` changes that)."""
    photos = load_photos(tree.images_json)
    georef = GeoReference.read(tree.coords_txt) if tree.coords_txt.exists() else None
    write_keypoints(tree.colmap_database, features)
    gps_photos = write_pose_priors(tree.colmap_database, photos, georef)
    pair_georef = georef if gps_photos >= MIN_GPS_PHOTOS else None
    return plan_matching(
        tree.colmap_database,
        photos,
        pair_georef,
        opts,
        features,
        tree.sfm_matches,
        units_key(MATCHING_MODULE, reuse),
        num_threads,
        min_units,
        local_threads,
    )


def finish_opensfm(
    tree: ProjectTree,
    opts: OpensfmOptions,
    pairs: list[MatchUnit],
    matches: list[Path],
    progress: Progress = _noop,
) -> OpensfmResult:
    """From the matching units' files: mapping (--sfm-algorithm), alignment to GPS and GCPs, model files."""
    photos = load_photos(tree.images_json)
    georef = GeoReference.read(tree.coords_txt) if tree.coords_txt.exists() else None
    georeferenced = _write_matches(tree.colmap_database, pairs, matches) and georef is not None
    priors = georef if georeferenced else None
    rec, focal_note, warnings, algorithm = map_photos(
        tree.colmap_database, tree.images, photos, priors, opts.sfm_algorithm, progress
    )
    for note in warnings:
        log.warning("%s", note)
    registered, unregistered = _registration(rec, photos)
    alignment = align(rec, photos, georef, used_priors=georeferenced)
    alignment, adjustment = ground_control(
        tree, rec, photos, georef, opts, alignment, not focal_note, progress
    )
    for note in ((focal_note,) if focal_note else ()) + alignment.notes:
        log.info("%s", note)
    notes = warnings + ((focal_note,) if focal_note else ()) + alignment.notes
    model_georef = georef if alignment.georeferenced else None
    progress(0.95, "writing the reconstruction")
    color_points(rec, tree.images)
    residuals = gps_residuals_m(rec, photos, model_georef) if model_georef else {}
    outputs = sfm_export.write_all(tree, rec, photos, model_georef, opts.camera_lens)
    outputs += sfm_export.write_reference_lla(tree, model_georef)
    stats = reconstruction_stats(
        rec, photos, gps_errors(np.array(list(residuals.values())).reshape(-1, 3)), alignment
    )
    stats["sfm_algorithm"] = algorithm
    stats["gps_residuals"] = {name: [finite_or_none(v) for v in r] for name, r in residuals.items()}
    stats.update(report_figures(tree.colmap_database, rec))
    gcp_lines = write_gcp_stats(tree, adjustment, stats, outputs)
    outputs.append(write_json(tree.opensfm_stats, stats))
    return OpensfmResult(
        n_photos=len(photos),
        n_registered=len(registered),
        unregistered=unregistered,
        n_points=rec.num_points3D(),
        mean_reprojection_error_px=float(rec.compute_mean_reprojection_error()),
        georeferenced=alignment.georeferenced,
        gps_rms_horizontal_m=stats["gps_errors"].get("horizontal_rms"),  # type: ignore[attr-defined]
        largest_gps_residual=max(
            ((name, float(np.hypot(*r[:2]))) for name, r in residuals.items()),
            key=lambda x: x[1],
            default=None,
        ),
        notes=notes,
        gcp_lines=gcp_lines,
        rms_errors=rms_errors(stats),
        outputs=tuple(outputs),
    )


def _write_matches(db: Path, pairs: list[MatchUnit], matches: list[Path]) -> bool:
    """The units' matches into the database; whether it holds enough GPS priors to georeference by."""
    verified = write_matches(db, pairs, matches)
    log.info("%d of %d photo pairs verified", verified, sum(len(u.pairs) for u in pairs))
    with pycolmap.Database.open(db) as database:
        return bool(database.num_pose_priors() >= MIN_GPS_PHOTOS)


def _registration(rec: pycolmap.Reconstruction, photos: list[Photo]) -> tuple[set[str], tuple[str, ...]]:
    """(the registered photos' names, the others' sorted), the others logged."""
    registered = {im.name for im in rec.images.values() if im.has_pose}
    unregistered = tuple(sorted(p.filename for p in photos if p.filename not in registered))
    if unregistered:
        log.warning("%d photo(s) did not register: %s", len(unregistered), ", ".join(unregistered))
    return registered, unregistered


def run(
    tree: ProjectTree, opts: OpensfmOptions, reuse: bool = False, map_units: MapUnits = serial_map
) -> OpensfmResult:
    """The stage in one process (what tests, benchmarks and scripts call): its units through map_units,
    with `reuse` reused where unchanged."""
    return opensfm(tree, opts, reuse=reuse, map_units=map_units)
