"""The `dataset` stage: list images/, read every photo's metadata, write images.json and georeferencing.

Mirrors ODM's stages/dataset.py: images.json (the photo database), img_list.txt and, when photos carry
GPS, odm_georeferencing/coords.txt + proj.txt. images/ is only ever read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odm_core.artifacts import write_json, write_text
from odm_core.errors import OdmInputError
from odm_core.geo.gcp import GcpSet, project_gcps, to_utm, utm_text
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options import DatasetOptions
from odm_core.photos import decode
from odm_core.photos.checks import apply_geo_file, drop_duplicates, warn_metadata
from odm_core.photos.exif import UnreadablePhoto, read_photo
from odm_core.photos.listing import SkippedFile, case_collisions, list_images, orphan_masks
from odm_core.photos.photo import Photo
from odm_core.worker import MapUnits, serial_map

log = logging.getLogger("odm_core.stages.dataset")

Progress = Callable[[float, str], None]
MIN_PHOTOS = 2


@dataclass(frozen=True)
class DatasetResult:
    """What the dataset stage found and wrote."""

    n_photos: int
    skipped: tuple[SkippedFile, ...]
    has_gps: bool  # at least one photo has a GPS position (the project is georeferenced)
    without_gps: tuple[str, ...]  # photos used for reconstruction but not for georeferencing
    epsg: int | None
    outputs: tuple[Path, ...]

    def summary(self) -> list[str]:
        """The run summary's lines for this stage."""
        return [f"dataset: {self.n_photos} photos used, {len(self.skipped)} skipped"]


def dataset(
    tree: ProjectTree,
    opts: DatasetOptions,
    progress: Progress | None = None,
    max_workers: int | None = None,
) -> DatasetResult:
    """Read the photos in tree.images and write images.json, img_list.txt and coords.txt/proj.txt."""
    report = progress or (lambda _f, _m: None)
    candidates, skipped = list_images(tree.images)
    orphans = orphan_masks(tree.images, candidates)
    if orphans:
        log.warning(
            "%d mask file(s) match no photo (a mask is <photo stem>_mask.<ext>): %s",
            len(orphans),
            ", ".join(orphans),
        )
    photos, unreadable = _read_all(candidates, opts, report, max_workers)
    skipped = sorted(skipped + unreadable, key=lambda s: s.filename)
    for s in skipped:
        log.warning("Skipping %s: %s", s.filename, s.reason)
    photos, duplicates = drop_duplicates(photos)
    photos = apply_geo_file(tree, opts, photos)
    skipped = sorted(skipped + duplicates, key=lambda s: s.filename)
    _check_usable(tree.images, candidates, photos, skipped)
    without_gps = _warn_gps(tree, opts, photos)
    warn_metadata(photos)
    decoder_note = decode.summary(decode.decoder_warnings(tree.images / p.filename for p in photos))
    if decoder_note:
        log.warning(decoder_note)
    sizes = {p.filename: (p.width, p.height) for p in photos}
    ground_control = project_gcps(opts.gcp, tree.gcp_list, opts.use_exif, sizes)
    utm_gcps = to_utm(ground_control[0]) if ground_control else None
    georef = _georeference(photos) if utm_gcps is None else _gcp_georeference(*utm_gcps)
    if opts.georeference is not None and georef is not None:  # a submodel: its parent's, shared by all
        georef = GeoReference.from_text(opts.georeference, "the split-merge parent's coords.txt")
    outputs = _write_outputs(tree, photos, georef)
    outputs += _write_gcps(tree, georef, utm_gcps[1] if utm_gcps else None)
    report(1.0, f"dataset: {len(photos)} photos, {len(skipped)} skipped")
    return DatasetResult(
        n_photos=len(photos),
        skipped=tuple(skipped),
        has_gps=georef is not None,
        without_gps=tuple(without_gps),
        epsg=georef.epsg if georef else None,
        outputs=outputs,
    )


# --- reading ----------------------------------------------------------------------------------


def _read_all(
    files: Sequence[Path], opts: DatasetOptions, report: Progress, max_workers: int | None
) -> tuple[list[Photo], list[SkippedFile]]:
    """Read every photo in a thread pool; progress is reported from the calling thread."""
    photos: list[Photo] = []
    skipped: list[SkippedFile] = []
    if not files:
        return photos, skipped
    workers = max_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(read_photo, f, opts): f for f in files}
        for done, fut in enumerate(as_completed(futures), start=1):
            try:
                photos.append(fut.result())
            except UnreadablePhoto as e:
                skipped.append(SkippedFile(futures[fut].name, e.reason))
            report(0.9 * done / len(files), f"read {done}/{len(files)} photos")
    return sorted(photos, key=lambda p: p.filename), skipped


def _check_usable(
    images: Path, files: Sequence[Path], photos: Sequence[Photo], skipped: Sequence[SkippedFile]
) -> None:
    """Raise one OdmInputError listing every problem found (name collisions, too few usable photos)."""
    problems = case_collisions(files)
    if len(photos) < MIN_PHOTOS:
        problems.append(f"only {len(photos)} usable photo(s) in {images}; at least {MIN_PHOTOS} are needed")
    if not problems:
        return
    lines = [f"Cannot use the photos in {images}:", *(f"  - {p}" for p in problems)]
    if skipped:
        lines += ["Skipped files:", *(f"  - {s.filename}: {s.reason}" for s in skipped)]
    raise OdmInputError("\n".join(lines))


# --- georeferencing ---------------------------------------------------------------------------


def _warn_gps(tree: ProjectTree, opts: DatasetOptions, photos: Sequence[Photo]) -> list[str]:
    """Log what the run will do about GPS and GCPs; return the photos without GPS."""
    without = [p.filename for p in photos if not p.has_gps]
    if len(without) == len(photos):
        log.warning(
            "No photo has GPS: the run continues in local (non-georeferenced) coordinates, "
            "so outputs will have no real-world position or scale"
        )
    elif without:
        log.warning(
            "%d photo(s) have no GPS; they are used for reconstruction but not for georeferencing: %s",
            len(without),
            ", ".join(without),
        )
    return without


def _georeference(photos: Sequence[Photo]) -> GeoReference | None:
    located = [p for p in photos if p.has_gps]
    if not located:
        return None
    lat = np.array([p.latitude for p in located], dtype=float)
    lon = np.array([p.longitude for p in located], dtype=float)
    return GeoReference.from_lla(lat, lon)


def _gcp_georeference(epsg: int, utm: GcpSet) -> GeoReference:
    """ODM's rule with GCPs (`utm`: in the UTM zone of the first one): offsets the GCPs' rounded mean."""
    xy = np.array([p.xyz[:2] for p in utm.points])
    return GeoReference(epsg, float(np.round(xy[:, 0].mean())), float(np.round(xy[:, 1].mean())))


def _write_gcps(tree: ProjectTree, georef: GeoReference | None, gcps: GcpSet | None) -> tuple[Path, ...]:
    """gcp_list_utm.txt (ODM's; `gcps` in UTM) when GCPs are used; an earlier run's copy is removed
    otherwise."""
    if gcps is None or georef is None:
        tree.gcp_list_utm.unlink(missing_ok=True)
        return ()
    return (write_text(tree.gcp_list_utm, utm_text(gcps, georef.zone_name)),)


def _write_outputs(
    tree: ProjectTree, photos: Sequence[Photo], georef: GeoReference | None
) -> tuple[Path, ...]:
    """Write this run's outputs (images.json last) and remove georeference files a run without GPS left."""
    outputs: list[Path] = []
    if georef is not None:
        georef.write(tree.coords_txt, tree.proj_txt)
        outputs += [tree.coords_txt, tree.proj_txt]
    else:
        for stale in (tree.coords_txt, tree.proj_txt):
            stale.unlink(missing_ok=True)
    write_text(tree.img_list, "".join(f"{p.filename}\n" for p in photos))
    write_json(tree.images_json, [p.to_json() for p in photos])
    return (tree.images_json, tree.img_list, *outputs)


def run(
    tree: ProjectTree, opts: DatasetOptions, key: str = "", map_units: MapUnits = serial_map
) -> DatasetResult:
    """The stage in one process (what tests, benchmarks and scripts call; `key` and `map_units` serve
    the stages that fan out units, this one has none)."""
    return dataset(tree, opts)
