"""Merge submodel products: point clouds cut at the ownership cutline, shots.geojson and cameras.json.

ODM (`ODM:stages/splitmerge.py`) concatenates the submodel clouds with lasmerge, so the overlap band holds
every submodel's points (double density, ghosting). Here each point is kept only from the submodel that
owns its location (`Ownership`, nearest core photo), so a location comes from exactly one submodel.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import laspy
import numpy as np

from odm_core.artifacts import atomic_path, write_json
from odm_core.errors import OdmStageError
from odm_core.split.partition import Ownership, Submodel

INT32 = np.iinfo(np.int32)


@dataclass(frozen=True)
class CloudMerge:
    """Points read and kept per source (in source order) and the total written."""

    read: tuple[int, ...]
    kept: tuple[int, ...]
    written: int


def merge_point_clouds(
    sources: Sequence[Path], ownership: Ownership, out: Path, chunk_points: int = 2_000_000
) -> CloudMerge:
    """Write one LAZ holding, from each source i, only the points that `ownership` gives to submodel i.

    `sources[i]`: submodel i's LAS/LAZ (odm_georeferenced_model.laz: absolute coordinates, the frame of
    `ownership`). Streamed `chunk_points` at a time (laspy chunk_iterator), so memory is bounded by the
    chunk, not the cloud. The output takes the first source's header: point format (with extra
    dimensions), version, VLRs (CRS), scales and offsets. Other sources' raw integers are shifted to that
    offset, exactly when the offsets differ by whole scale steps (ODM's and odm_core's offsets are whole
    metres), else re-quantised (an error of at most half a scale step). Written atomically: a temporary
    file beside `out`, renamed when complete. Raises OdmStageError naming the file when a source's point
    format, CRS or scales differ from the first's, or a point does not fit the output's 32-bit integers;
    ValueError when len(sources) differs from len(ownership).
    """
    if len(sources) != len(ownership):
        raise ValueError(f"{len(sources)} point clouds for {len(ownership)} submodels")
    if chunk_points < 1:
        raise ValueError(f"chunk_points {chunk_points}: must be at least 1")
    header = _common_header(sources)
    read, kept = [0] * len(sources), [0] * len(sources)
    with atomic_path(out) as tmp, tmp.open("w+b") as f:
        backend = laspy.LazBackend.LazrsParallel
        with laspy.open(
            f, mode="w", header=header, do_compress=True, laz_backend=backend, closefd=False
        ) as w:
            for i, source in enumerate(sources):
                with laspy.open(source) as reader:
                    for chunk in reader.chunk_iterator(chunk_points):
                        points = _requantised(chunk, header, source)
                        xy = np.column_stack([points.x, points.y])
                        mine = points[ownership.owner(xy) == i]
                        read[i] += len(chunk)
                        kept[i] += len(mine)
                        w.write_points(mine)
    return CloudMerge(read=tuple(read), kept=tuple(kept), written=sum(kept))


def _common_header(sources: Sequence[Path]) -> laspy.LasHeader:
    """The first source's header; OdmStageError naming the file whose point format, CRS or scales differ."""
    if not sources:
        raise ValueError("no point cloud to merge")
    headers = []
    for source in sources:
        if not source.is_file():
            raise OdmStageError(f"{source} is missing: the submodel produced no point cloud")
        with laspy.open(source) as reader:
            headers.append(reader.header)
    first, crs = headers[0], headers[0].parse_crs()
    for source, header in zip(sources[1:], headers[1:], strict=True):
        if header.point_format != first.point_format:
            raise OdmStageError(
                f"{source}: point format {header.point_format.id} with extra dimensions "
                f"{list(header.point_format.extra_dimension_names)}, but {sources[0]} has "
                f"{first.point_format.id} with {list(first.point_format.extra_dimension_names)}"
            )
        other = header.parse_crs()
        if (crs is None) != (other is None) or (crs is not None and not crs.equals(other)):
            raise OdmStageError(
                f"{source}: CRS {_crs_name(other)} differs from {sources[0]}'s {_crs_name(crs)}"
            )
        if not np.array_equal(header.scales, first.scales):
            raise OdmStageError(f"{source}: scales {header.scales} differ from {sources[0]}'s {first.scales}")
    return first


def _crs_name(crs: Any) -> str:
    if crs is None:
        return "none"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg is not None else str(crs.name)


def _requantised(
    chunk: laspy.ScaleAwarePointRecord, header: laspy.LasHeader, source: Path
) -> laspy.ScaleAwarePointRecord:
    """The chunk with X, Y, Z as raw integers of `header`'s scales and offsets (same scales assumed)."""
    if np.array_equal(chunk.offsets, header.offsets):
        return chunk
    array = chunk.array.copy()
    for axis, dim in enumerate("XYZ"):
        steps = (chunk.offsets[axis] - header.offsets[axis]) / header.scales[axis]
        if abs(steps - round(steps)) < 1e-6:
            raw = chunk.array[dim].astype(np.int64) + int(round(steps))
        else:
            scaled = chunk.array[dim] * chunk.scales[axis] + chunk.offsets[axis]
            raw = np.round((scaled - header.offsets[axis]) / header.scales[axis]).astype(np.int64)
        if len(raw) and (raw.min() < INT32.min or raw.max() > INT32.max):
            raise OdmStageError(
                f"{source}: coordinates too far from the merged cloud's offset for 32-bit LAS"
            )
        array[dim] = raw.astype(np.int32)
    return laspy.ScaleAwarePointRecord(array, chunk.point_format, header.scales, header.offsets)


def merge_shots_geojson(sources: Sequence[Path], submodels: Sequence[Submodel], out: Path) -> Path:
    """Merge submodel odm_report/shots.geojson files (`sources[i]` of `submodels[i]`) into `out`.

    A photo's feature (matched by properties.filename) comes from the submodel that holds it as core;
    when that submodel did not register it, from the first source that did (ODM keeps the first
    occurrence everywhere). Features sorted by filename, as odm_report writes them. Raises OdmStageError
    naming a missing or unreadable file, ValueError when the sequences' lengths differ.
    """
    if len(sources) != len(submodels):
        raise ValueError(f"{len(sources)} shots.geojson files for {len(submodels)} submodels")
    owner = {photo: i for i, sub in enumerate(submodels) for photo in sub.core}
    chosen: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, source in enumerate(sources):
        for feature in _read_json(source).get("features", []):
            name = feature["properties"]["filename"]
            if name not in chosen or (owner.get(name) == i and chosen[name][0] != i):
                chosen[name] = (i, feature)
    features = [chosen[name][1] for name in sorted(chosen)]
    return write_json(out, {"type": "FeatureCollection", "features": features})


def merge_cameras_json(sources: Sequence[Path], out: Path) -> Path:
    """Merge submodel cameras.json files (camera id -> OpenSfM camera model): the union of ids, the
    first source's model kept for an id in several (ODM's `merge_cameras`). Raises OdmStageError naming
    a missing or unreadable file."""
    cameras: dict[str, Any] = {}
    for source in sources:
        for camera_id, model in _read_json(source).items():
            cameras.setdefault(camera_id, model)
    return write_json(out, cameras)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise OdmStageError(f"{path} could not be read: {e}") from e
    if not isinstance(doc, dict):
        raise OdmStageError(f"{path}: expected a JSON object")
    return doc
