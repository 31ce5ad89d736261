"""Feature matching: every pair for small or non-geotagged sets, GPS neighbours otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pycolmap

from odm_core.geo.georef import GeoReference
from odm_core.options import OpensfmOptions
from odm_core.photos.photo import Photo
from odm_core.sfm.gps import gps_local_m
from odm_core.sfm.pairs import EXHAUSTIVE_MAX_PHOTOS, gps_pairs


def match_features(
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
    pairing = pycolmap.ImportedPairingOptions()
    pairing.match_list_path = pair_file
    with _names_without_spaces(db) as alias:  # COLMAP's pair list is space-separated
        pair_file.write_text(
            "".join(f"{alias[gps[i].filename]} {alias[gps[j].filename]}\n" for i, j in sorted(pairs))
        )
        pycolmap.match_image_pairs(
            db, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.cpu
        )


@contextmanager
def _names_without_spaces(db_path: Path) -> Iterator[dict[str, str]]:
    """While it lasts, the database's images are named `image-<image_id>` (any file name then fits COLMAP's
    space-separated pair list); yields file name -> that alias, and restores the names after."""
    with pycolmap.Database.open(db_path) as db:
        images = db.read_all_images()
        names = {im.image_id: im.name for im in images}
        for im in images:
            im.name = f"image-{im.image_id}"
            db.update_image(im)
    try:
        yield {name: f"image-{image_id}" for image_id, name in names.items()}
    finally:
        with pycolmap.Database.open(db_path) as db:
            for im in db.read_all_images():
                im.name = names[im.image_id]
                db.update_image(im)
