"""Which photo pairs to match, and the matching units that match them (odm_core.sfm.match_units).

Pairs come from GPS neighbours when every photo has a position (ODM's triangulation graph, or
--matcher-neighbors nearest photos), else from image retrieval (odm_core.sfm.retrieval), so their number
grows linearly with the survey; every pair is matched for small sets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pycolmap

from odm_core.artifacts import remove_stale_units
from odm_core.geo.georef import GeoReference
from odm_core.options import OpensfmOptions
from odm_core.photos.photo import Photo
from odm_core.sfm.gps import gps_local_m
from odm_core.sfm.match_units import CameraSpec, MatchUnit, plan_matches
from odm_core.sfm.pairs import EXHAUSTIVE_MAX_PHOTOS, exhaustive_pairs, gps_pairs
from odm_core.sfm.retrieval import retrieval_pairs

NO_GPS_EXHAUSTIVE_MAX_PHOTOS = 40  # without GPS, every pair up to this many photos (780 pairs)


def select_pairs(
    photos: list[Photo], georef: GeoReference | None, opts: OpensfmOptions, features: dict[str, Path]
) -> list[tuple[str, str]]:
    """The photo pairs (names, in photo order) to match: GPS neighbours for geotagged sets of more than
    EXHAUSTIVE_MAX_PHOTOS photos; image retrieval for sets without GPS of more than
    NO_GPS_EXHAUSTIVE_MAX_PHOTOS (`features`: photo name -> its features file); every pair otherwise."""
    gps = georef is not None and all(p.has_gps for p in photos)
    if gps and len(photos) > EXHAUSTIVE_MAX_PHOTOS:
        assert georef is not None
        local = gps_local_m(photos, georef)
        xy = np.array([local[p.filename][:2] for p in photos])
        index_pairs = gps_pairs(xy, opts.matcher_neighbors)
        return [(photos[i].filename, photos[j].filename) for i, j in sorted(index_pairs)]
    if gps or len(photos) <= NO_GPS_EXHAUSTIVE_MAX_PHOTOS:
        return [(photos[i].filename, photos[j].filename) for i, j in sorted(exhaustive_pairs(len(photos)))]
    ordered = sorted(photos, key=lambda p: (p.utc_time is None, p.utc_time or 0.0, p.filename))
    index_pairs = retrieval_pairs([features[p.filename] for p in ordered])
    position = {p.filename: k for k, p in enumerate(photos)}
    by_position = sorted(
        tuple(sorted((position[ordered[i].filename], position[ordered[j].filename]))) for i, j in index_pairs
    )
    return [(photos[i].filename, photos[j].filename) for i, j in by_position]


def camera_specs(db_path: Path) -> dict[str, CameraSpec]:
    """Each photo's camera in the database, as the matching units need it (photo name -> camera)."""
    with pycolmap.Database.open(db_path) as db:
        cameras = {
            c.camera_id: CameraSpec(
                c.model.name, c.width, c.height, tuple(c.params), c.has_prior_focal_length
            )
            for c in db.read_all_cameras()
        }
        return {image.name: cameras[image.camera_id] for image in db.read_all_images()}


def plan_matching(
    db_path: Path,
    photos: list[Photo],
    georef: GeoReference | None,
    opts: OpensfmOptions,
    features: dict[str, Path],
    workdir: Path,
    key: str,
    num_threads: int = 1,
    min_units: int = 1,
    local_threads: int = 0,
) -> list[MatchUnit]:
    """The matching units of the photos' pairs, at least min_units of them (files in workdir, those of
    earlier plans that are not units of this one removed); `georef` None when the photos are not
    georeferenced."""
    pairs = select_pairs(photos, georef, opts, features)
    workdir.mkdir(parents=True, exist_ok=True)
    specs = camera_specs(db_path)
    units = plan_matches(pairs, features, specs, workdir, key, num_threads, min_units, local_threads)
    remove_stale_units(workdir, ".matches.npz", (u.out for u in units))
    return units
