"""Which photo pairs to match, and the matching units that match them (odm_core.sfm.match_units).

Pairs come from GPS neighbours when every photo has a position (ODM's triangulation graph, or
--matcher-neighbors nearest photos), so their number grows linearly with the survey; every pair is matched
for sets of up to EXHAUSTIVE_MAX_PHOTOS photos and for photos without GPS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pycolmap

from odm_core.geo.georef import GeoReference
from odm_core.options import OpensfmOptions
from odm_core.photos.photo import Photo
from odm_core.sfm.gps import gps_local_m
from odm_core.sfm.match_units import CameraSpec, MatchUnit, plan_matches
from odm_core.sfm.pairs import EXHAUSTIVE_MAX_PHOTOS, exhaustive_pairs, gps_pairs


def select_pairs(
    photos: list[Photo], georef: GeoReference | None, opts: OpensfmOptions
) -> list[tuple[str, str]]:
    """The photo pairs (names, in photo order) to match: GPS neighbours for geotagged sets of more than
    EXHAUSTIVE_MAX_PHOTOS photos, every pair otherwise."""
    gps = all(p.has_gps for p in photos)
    if georef is None or len(photos) <= EXHAUSTIVE_MAX_PHOTOS or not gps:
        index_pairs = exhaustive_pairs(len(photos))
    else:
        local = gps_local_m(photos, georef)
        xy = np.array([local[p.filename][:2] for p in photos])
        index_pairs = gps_pairs(xy, opts.matcher_neighbors)
    return [(photos[i].filename, photos[j].filename) for i, j in sorted(index_pairs)]


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
) -> list[MatchUnit]:
    """The matching units of the photos' pairs, at least min_units of them (files in workdir, those of
    earlier plans that are not units of this one removed); `georef` None when the photos are not
    georeferenced."""
    pairs = select_pairs(photos, georef, opts)
    workdir.mkdir(parents=True, exist_ok=True)
    units = plan_matches(pairs, features, camera_specs(db_path), workdir, key, num_threads, min_units)
    wanted = {Path(u.out).name for u in units}
    for stale in workdir.glob("*.matches.npz*"):
        if stale.name.removesuffix(".json") not in wanted:
            stale.unlink()
    return units
