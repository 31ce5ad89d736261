"""The `merge` stage: ODM's split-merge, second half (ODM's stages/splitmerge.py ODMMergeStage).

The submodels' products merged into the project's own files, per --merge: the point cloud with each
location taken from one submodel (the one whose own photos are nearest: no duplicate points in the
overlaps, where ODM concatenates), the orthophoto blended across the same cutline with feathering and
colour balance, the DSM and DTM weighted by distance to their edges (as ODM), and shots.geojson (from
the survey's one model, as cameras.json already is). The rasters are merged block by block through
map_units (Dask on the run's cluster). A survey that was not split (no submodels/split.json) leaves the
stage nothing to do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odm_core.artifacts import read_manifest, write_json
from odm_core.errors import OdmStageError
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options_split import MergeOptions
from odm_core.report.shots import shots_geojson
from odm_core.split.merge_cloud import merge_point_clouds
from odm_core.split.merge_dem import merge_dems
from odm_core.split.merge_ortho import merge_orthophotos
from odm_core.split.partition import Ownership
from odm_core.split.record import read_split_record
from odm_core.worker import MapUnits, serial_map

Progress = Callable[[float, str], None]
FEATHER_PX = 20  # ODM's feathering width (opendm/orthophoto.py), either side of the cutline


@dataclass(frozen=True)
class MergeResult:
    """What was merged from how many submodels, and the files written."""

    n_submodels: int
    merged: tuple[str, ...]
    outputs: tuple[Path, ...]

    def summary(self) -> list[str]:
        if not self.n_submodels:
            return ["merge: nothing to merge (the survey was not split)"]
        return [f"merge: {', '.join(self.merged)} of {self.n_submodels} submodels"]


def _noop(fraction: float, message: str) -> None:
    return None


def merge(
    tree: ProjectTree, opts: MergeOptions, progress: Progress = _noop, map_units: MapUnits = serial_map
) -> MergeResult:
    """Merge the products of the submodels split.json names. Raises OdmStageError naming a submodel
    whose product is missing (its run did not finish)."""
    record = read_split_record(tree.split_json)
    if record is None:
        return MergeResult(0, (), ())
    trees = [ProjectTree(tree.submodel(name)) for name in record.names]
    cores = [s.core_xy_m for s in record.submodels]
    what = {"all": ("pointcloud", "orthophoto", "dem")}.get(opts.merge, (opts.merge,))
    outputs: list[Path] = []
    merged: list[str] = []
    if "pointcloud" in what:
        progress(0.05, "merging the point clouds")
        sources = _required(trees, lambda t: t.georeferenced_model_laz)
        merge_point_clouds(sources, Ownership(cores), tree.georeferenced_model_laz)
        outputs.append(tree.georeferenced_model_laz)
        merged.append("point cloud")
    if "orthophoto" in what:
        progress(0.4, "merging the orthophotos")
        sources = _required(trees, lambda t: t.orthophoto_tif)
        blend = not opts.merge_skip_blending
        feather = FEATHER_PX * _resolution_m(sources[0]) if blend else 0.0
        gains = None if blend else np.ones((len(sources), 3))  # None: colour_gains balances them
        outputs.append(
            merge_orthophotos(sources, cores, tree.orthophoto_tif, map_units, feather, gains=gains)
        )
        merged.append("orthophoto")
    if "dem" in what:
        for kind in dem_kinds(trees):
            progress(0.75, f"merging the {kind.upper()}s")
            outputs.append(merge_dems([t.dem_tif(kind) for t in trees], tree.dem_tif(kind), map_units))
            merged.append(kind.upper())
    outputs += _shots(tree)
    return MergeResult(len(trees), tuple(merged), tuple(outputs))


def dem_kinds(trees: list[ProjectTree]) -> list[str]:
    """The DEMs ("dsm", "dtm") that every submodel's last `odm_dem` run made, as its manifest records
    them: a dtm.tif left by an earlier run with --dtm is not one, and is not merged."""
    made = []
    for t in trees:
        manifest = read_manifest(t.manifest("odm_dem"))
        outputs = set(manifest["outputs"]) if manifest else set()
        made.append({k for k in ("dsm", "dtm") if t.dem_tif(k).relative_to(t.root).as_posix() in outputs})
    return [k for k in ("dsm", "dtm") if all(k in m for m in made)]


def _required(trees: list[ProjectTree], product: Callable[[ProjectTree], Path]) -> list[Path]:
    files = [product(t) for t in trees]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise OdmStageError(
            f"merge: {missing[0]} is missing: that submodel's run did not finish; run the project again "
            "(finished submodels resume from their checkpoints)"
        )
    return files


def _resolution_m(raster: Path) -> float:
    import rasterio

    with rasterio.open(raster) as src:
        return float(src.res[0])


def _shots(tree: ProjectTree) -> list[Path]:
    """shots.geojson from the whole survey's model (one pose per photo, whichever submodels took it)."""
    recon = json.loads(tree.reconstruction_json.read_text())[0]
    georef = GeoReference.of_model(tree.coords_txt, tree.reference_lla_json)
    if georef is None:
        return []
    return [write_json(tree.shots_geojson, shots_geojson(recon, georef))]


def run(
    tree: ProjectTree, opts: MergeOptions, key: str = "", map_units: MapUnits = serial_map
) -> MergeResult:
    """The stage in one process (what tests and scripts call), its blocks through map_units."""
    return merge(tree, opts, map_units=map_units)
