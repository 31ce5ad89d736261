"""Checks of the photos' metadata as a whole: duplicates, a geo.txt's positions, incomplete GPS."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from odm_core.layout import ProjectTree
from odm_core.options import DatasetOptions
from odm_core.photos.geofile import apply_geo, read_geo_text
from odm_core.photos.listing import SkippedFile
from odm_core.photos.photo import Photo

log = logging.getLogger("odm_core.stages.dataset")


def drop_duplicates(photos: Sequence[Photo]) -> tuple[list[Photo], list[SkippedFile]]:
    """Photos with the same pixels as an earlier one (by file name) are left out, named in one warning:
    a copy counts twice in bundle adjustment and pulls the focal length and surface with it."""
    kept: dict[str, Photo] = {}
    dropped: list[SkippedFile] = []
    for photo in photos:
        first = kept.setdefault(photo.pixel_digest or photo.filename, photo)
        if first is not photo:
            dropped.append(SkippedFile(photo.filename, f"duplicate of {first.filename} (same pixels)"))
    if dropped:
        log.warning(
            "%d duplicate photo(s) used once: %s",
            len(dropped),
            "; ".join(f"{d.filename} is {d.reason}" for d in dropped),
        )
    return list(kept.values()), dropped


def apply_geo_file(tree: ProjectTree, opts: DatasetOptions, photos: list[Photo]) -> list[Photo]:
    """Positions from --geo, or from the project's geo.txt, instead of the photos' EXIF GPS (ODM)."""
    if opts.geo is not None:
        text, source = opts.geo, Path("--geo file")
    elif tree.geo_txt.is_file():
        text, source = tree.geo_txt.read_text(encoding="utf-8-sig"), tree.geo_txt
    else:
        return photos
    entries = read_geo_text(text, source, {p.filename for p in photos})
    log.warning(
        "Using %s: positions of %d of %d photos replace their EXIF GPS", source, len(entries), len(photos)
    )
    missing = [p.filename for p in photos if p.filename not in entries]
    if missing:
        log.warning(
            "%d photo(s) have no line in %s and keep their EXIF GPS: %s",
            len(missing),
            source,
            _names(missing),
        )
    return [
        apply_geo(p, entries[p.filename], opts.gps_accuracy) if p.filename in entries else p for p in photos
    ]


def warn_metadata(photos: Sequence[Photo]) -> None:
    """One warning per kind of incomplete GPS metadata, naming the photos."""
    assumed = [p.filename for p in photos if p.hemisphere_assumed]
    if assumed:
        log.warning(
            "%d photo(s) record GPS without N/S or E/W references; north and east were assumed, as ODM "
            "does (if the project lands in the wrong place, fix the references or give --geo): %s",
            len(assumed),
            _names(assumed),
        )
    no_alt = [p.filename for p in photos if p.has_gps and p.altitude is None]
    if no_alt and len(no_alt) < sum(p.has_gps for p in photos):
        log.warning(
            "%d photo(s) have GPS latitude/longitude but no altitude; they place the model horizontally and "
            "are left out of its height and of the vertical GPS statistics: %s",
            len(no_alt),
            _names(no_alt),
        )
    elif no_alt:
        log.warning(
            "No photo records a GPS altitude: the model is placed horizontally by GPS, and its heights "
            "are relative (the ground's median at 0 m)"
        )


def _names(names: Sequence[str], limit: int = 20) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
