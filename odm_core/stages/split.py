"""The `split` stage: ODM's split-merge, first half (ODM's stages/splitmerge.py ODMSplitStage).

A geotagged survey of more photos than --split (or with an image_groups.txt) is cut into submodels
(odm_core.split.partition: k-means in metres, each submodel also taking the photos within
--split-overlap of its own). Unlike ODM, the survey's structure from motion has already run whole (the
opensfm stage, as Dask units), so each submodel gets its share of that one model (odm_core.sfm.seed) and
the parent's georeference, resolution and pixel grid: the submodels need no alignment and their
products line up. Each submodel is a project folder, submodels/submodel_NNNN/ (its photos linked, its
options in submodel_options.json), whose pipeline the flow runs as a flow run of its own; the merge
stage then merges their products.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from odm_core.artifacts import write_json
from odm_core.dem.surface import capped_resolution_m
from odm_core.errors import OdmInputError, OdmStageError
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options import PipelineOptions
from odm_core.options_split import SplitOptions
from odm_core.sfm.seed import model_subset, write_seed
from odm_core.split.partition import (
    Submodel,
    clusters_geojson,
    parse_image_groups,
    partition,
    read_image_groups,
)
from odm_core.split.record import photos_and_masks, write_split_record
from odm_core.worker import MapUnits, serial_map

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class SplitResult:
    """The submodels made (none when the survey is not split, and why), and the files written."""

    n_photos: int
    submodels: tuple[str, ...]
    reason: str
    outputs: tuple[Path, ...]

    def summary(self) -> list[str]:
        if not self.submodels:
            return [f"split: not split ({self.reason})"]
        return [f"split: {self.n_photos} photos into {len(self.submodels)} submodels ({self.reason})"]


def _noop(fraction: float, message: str) -> None:
    return None


def split(tree: ProjectTree, opts: SplitOptions, progress: Progress = _noop) -> SplitResult:
    """Partition the registered photos and write each submodel's folder; raises OdmStageError when the
    stage was not given its submodels' options (PipelineOptions.stage_options gives them)."""
    rec = pycolmap.Reconstruction(tree.colmap_model)
    names = sorted(im.name for im in rec.images.values() if im.has_pose)
    groups, source = _image_groups(tree, opts)
    georef = GeoReference.of_model(tree.coords_txt, tree.reference_lla_json)
    reason = _not_split(len(names), opts.split, groups is not None, georef is not None)
    if reason is not None or georef is None:
        tree.split_json.unlink(missing_ok=True)
        return SplitResult(len(names), (), reason or "", ())
    if opts.submodel_options is None:
        raise OdmStageError("split: no submodel options given (PipelineOptions.stage_options gives them)")
    xy_m = np.array([_centre(rec, n)[:2] for n in names]) + georef.offset[:2]
    try:
        submodels = partition(names, xy_m, opts.split, opts.split_overlap, groups)
    except OdmInputError as err:
        raise OdmInputError(f"{err} ({source})") from None
    template = _fixed_resolutions(tree, opts.submodel_options)
    template["dataset"]["georeference"] = tree.coords_txt.read_text()
    outputs: list[Path] = []
    for k, sub in enumerate(submodels):
        progress(k / len(submodels), f"writing {sub.name} ({len(sub.photos)} photos)")
        outputs += write_submodel(tree, sub, rec, template)
    positions = dict(zip(names, xy_m.tolist(), strict=True))
    outputs.append(write_json(tree.clusters_geojson, clusters_geojson(submodels, names, xy_m, georef.epsg)))
    outputs.append(write_split_record(tree.split_json, submodels, positions, georef.epsg))
    how = f"--split {opts.split}, --split-overlap {opts.split_overlap:g} m"
    if groups:
        how = source
    if opts.sm_no_align:
        how += "; --sm-no-align changes nothing: the submodels share one model"
    return SplitResult(len(names), tuple(s.name for s in submodels), how, tuple(outputs))


def _image_groups(tree: ProjectTree, opts: SplitOptions) -> tuple[dict[str, str] | None, str]:
    """Photo -> group and where it came from: --split-image-groups (the file's text), else the project's
    image_groups.txt; (None, "") without groups."""
    if opts.split_image_groups is not None:
        return parse_image_groups(opts.split_image_groups, "--split-image-groups"), "--split-image-groups"
    if tree.image_groups_txt.is_file():
        return read_image_groups(tree.image_groups_txt), tree.image_groups_txt.name
    return None, ""


def _not_split(n_photos: int, split_size: int, grouped: bool, georeferenced: bool) -> str | None:
    """Why the survey is processed whole (ODM's rule: more photos than --split, or image groups, and a
    georeferenced survey), or None."""
    if not grouped and n_photos <= split_size:
        return f"{n_photos} registered photos, --split {split_size}"
    if not georeferenced:
        log.warning("split-merge needs georeferenced photos; the survey is processed whole, as ODM does")
        return "the model is not georeferenced"
    return None


def _centre(rec: pycolmap.Reconstruction, name: str) -> np.ndarray:
    image = rec.find_image_with_name(name)
    return np.asarray(image.projection_center(), dtype=float)


def _fixed_resolutions(tree: ProjectTree, submodel_options: dict[str, Any]) -> dict[str, Any]:
    """The submodels' options with the orthophoto's and DEMs' resolutions capped once, from the whole
    survey's GSD, and --ignore-gsd: every submodel on one pixel grid (ODM #1087: each capped its own)."""
    values = json.loads(json.dumps(submodel_options))  # a deep copy
    for stage, field in (("odm_orthophoto", "orthophoto_resolution"), ("odm_dem", "dem_resolution")):
        options = values[stage]
        options[field] = 100.0 * capped_resolution_m(options[field], tree, options["ignore_gsd"])
        options["ignore_gsd"] = True
    return values


def write_submodel(
    tree: ProjectTree, sub: Submodel, rec: pycolmap.Reconstruction, template: dict[str, Any]
) -> list[Path]:
    """A submodel's folder: its photos (and masks) linked from the parent's images/, its share of the
    model in split_seed/, and submodel_options.json (validated here, so a bad one fails the parent)."""
    sub_tree = ProjectTree(tree.submodel(sub.name))
    _link_photos(tree.images, sub_tree.images, sub.photos)
    values = json.loads(json.dumps(template))
    values["opensfm"]["model_seed"] = write_seed(model_subset(rec, sub.photos), sub_tree.split_seed)
    options = PipelineOptions.model_validate(values)
    written = write_json(sub_tree.submodel_options_json, options.model_dump(mode="json"))
    return [written, *sorted(sub_tree.split_seed.iterdir())]


def _link_photos(source: Path, images: Path, photos: tuple[str, ...]) -> None:
    """Relative symbolic links to the parent's photos and their masks (<stem>_mask.*); links to photos
    no longer in the submodel are removed. The parent's files are never touched."""
    images.mkdir(parents=True, exist_ok=True)
    wanted = photos_and_masks(source, photos)
    for entry in images.iterdir():
        if entry.name not in wanted and entry.is_symlink():
            entry.unlink()
    for name in sorted(wanted):
        link = images / name
        target = os.path.relpath(source / name, images)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        link.unlink(missing_ok=True)
        link.symlink_to(target)


def run(
    tree: ProjectTree, opts: SplitOptions, key: str = "", map_units: MapUnits = serial_map
) -> SplitResult:
    """The stage in one process (what tests and scripts call)."""
    return split(tree, opts)
