"""Partition a photo set into ODM submodels (--split, --split-overlap, image_groups.txt) and the cutline
that decides which submodel a merged location comes from.

ODM (OpenSfM `create_submodels`) clusters with cv2.kmeans on latitude/longitude degrees, K = ceil(N / split),
then adds every photo within --split-overlap metres of a cluster's photos. Here k-means runs in metres
(easting/northing), is seeded deterministically and is balanced, so no submodel grows far past --split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS
from scipy.spatial import cKDTree

from odm_core.errors import OdmInputError
from odm_core.split.kmeans import balanced_kmeans

NAME_TEMPLATE = "submodel_{:04d}"  # ODM's submodel_%04d
HULL_BUFFER = 1.0  # frame units (metres): the outline of a submodel whose photos are on a line or a point


@dataclass(frozen=True)
class Submodel:
    """One submodel: `core` the photos it owns (sorted), `photos` core plus overlap photos (sorted)."""

    name: str
    core: tuple[str, ...]
    photos: tuple[str, ...]


def partition(
    names: Sequence[str],
    xy_m: np.ndarray,
    split: int,
    overlap_m: float,
    groups: Mapping[str, str] | None = None,
) -> list[Submodel]:
    """Split photos into submodels named submodel_0000, submodel_0001, ...

    `xy_m`: (N, 2) easting/northing in metres (a projected frame, e.g. UTM), row i the position of names[i].
    Without `groups`: k = ceil(N / split) cores by k-means in metres (k-means++ with a fixed seed, so
    deterministic), balanced so that no core exceeds floor(ceil(N / k) * 1.2) photos and none is empty,
    with compact cores (`odm_core.split.kmeans.balanced_kmeans`). N <= split gives one submodel.
    With `groups` (image_groups.txt: photo -> group): one submodel per group, in sorted group-name order;
    group entries for photos not in `names` are ignored.
    Overlap, as ODM: each submodel's photos are its core plus every photo within `overlap_m` metres of a
    core photo (cKDTree.query_ball_point).
    Raises OdmInputError for split < 2 (--split), overlap_m < 0 (--split-overlap), xy_m not (N, 2) finite,
    repeated names, or (with groups) a photo in no group.
    """
    xy = _check_inputs(names, xy_m, split, overlap_m)
    if groups is not None:
        labels = _group_labels(names, groups)
    else:
        labels = balanced_kmeans(xy, math.ceil(len(names) / split))
    tree = cKDTree(xy)
    submodels = []
    for i in range(int(labels.max()) + 1 if len(labels) else 0):
        core_idx = np.flatnonzero(labels == i)
        near = tree.query_ball_point(xy[core_idx], r=overlap_m)
        photo_idx = set(core_idx.tolist()).union(*[set(n) for n in near])
        submodels.append(
            Submodel(
                name=NAME_TEMPLATE.format(i),
                core=tuple(sorted(names[j] for j in core_idx.tolist())),
                photos=tuple(sorted(names[j] for j in photo_idx)),
            )
        )
    return submodels


def _check_inputs(names: Sequence[str], xy_m: np.ndarray, split: int, overlap_m: float) -> np.ndarray:
    if split < 2:
        raise OdmInputError(f"--split {split}: a submodel needs at least 2 photos (use --split 2 or more)")
    if not overlap_m >= 0:
        raise OdmInputError(f"--split-overlap {overlap_m}: the overlap must be 0 metres or more")
    xy = np.asarray(xy_m, dtype=np.float64)
    if xy.ndim != 2 or xy.shape != (len(names), 2):
        raise OdmInputError(f"photo positions of shape {xy.shape} for {len(names)} photos: expected (N, 2)")
    if not np.isfinite(xy).all():
        raise OdmInputError("photo positions must be finite (a photo without GPS cannot be split)")
    if len(set(names)) != len(names):
        raise OdmInputError("a photo name is listed twice")
    return xy


def _group_labels(names: Sequence[str], groups: Mapping[str, str]) -> np.ndarray:
    missing = [n for n in names if n not in groups]
    if missing:
        raise OdmInputError(
            f"photo {missing[0]} is in no image group ({len(missing)} missing): add a line "
            f"'{missing[0]} GROUP' to the image groups file"
        )
    order = {g: i for i, g in enumerate(sorted({groups[n] for n in names}))}
    return np.array([order[groups[n]] for n in names], dtype=np.int64)


def read_image_groups(path: Path) -> dict[str, str]:
    """ODM's image_groups.txt read from `path`: `parse_image_groups` of its text, naming the file."""
    return parse_image_groups(image_groups_text(path, str(path)), str(path))


def image_groups_text(path: Path, label: str) -> str:
    """The text of an image groups file (a byte-order mark dropped); OdmInputError naming `label` when it
    cannot be read."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise OdmInputError(
            f"{label}: cannot read it ({err}); give a text file of 'photo group' lines"
        ) from None


def parse_image_groups(text: str, source: str = "image_groups.txt") -> dict[str, str]:
    """ODM's image groups file (`--split-image-groups`, image_groups.txt): `photo_filename group_name`
    per line, whitespace separated.

    Blank lines are ignored. Returns photo -> group. Raises OdmInputError naming `source` and the line for
    a line without exactly two fields or a photo listed twice, and `source` for a file with no group.
    """
    groups: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise OdmInputError(f"{source} line {number}: expected 'filename group', got {line.strip()!r}")
        photo, group = fields
        if photo in groups:
            raise OdmInputError(f"{source} line {number}: photo {photo} is already in group {groups[photo]}")
        groups[photo] = group
    if not groups:
        raise OdmInputError(f"{source}: no 'photo_filename group_name' line; give one line per photo")
    return groups


class Ownership:
    """Which submodel owns a location: the one with the nearest core photo (a Voronoi cutline).

    Built from one (n_i, 2) array of core photo positions per submodel, in the frame of the points later
    asked about (e.g. UTM metres). Every merge uses it (point clouds keep a submodel's points where it is
    the owner, orthophotos feather across it), so each location comes from exactly one submodel.
    Picklable (sent to Dask workers): it pickles the positions and rebuilds the KD-trees.
    """

    def __init__(self, cores_xy_m: Sequence[np.ndarray]) -> None:
        cores = tuple(np.asarray(c, dtype=np.float64).reshape(-1, 2) for c in cores_xy_m)
        if not cores or any(len(c) == 0 for c in cores):
            raise ValueError("Ownership needs at least one submodel, each with at least one core photo")
        self.cores_xy_m = cores
        self._trees = [cKDTree(c) for c in cores]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Ownership, (self.cores_xy_m,))

    def __len__(self) -> int:
        return len(self.cores_xy_m)

    def distances(self, xy_m: np.ndarray) -> np.ndarray:
        """(M, K) float64: distance of each (M, 2) point to each submodel's nearest core photo."""
        xy = np.asarray(xy_m, dtype=np.float64).reshape(-1, 2)
        return np.stack([tree.query(xy, k=1)[0] for tree in self._trees], axis=1).astype(np.float64)

    def owner(self, xy_m: np.ndarray) -> np.ndarray:
        """(M,) int64: index of the owning submodel of each (M, 2) point; ties go to the lower index."""
        return self.distances(xy_m).argmin(axis=1).astype(np.int64)


def clusters_geojson(
    submodels: Sequence[Submodel], names: Sequence[str], xy_m: np.ndarray, crs: int | str
) -> dict[str, Any]:
    """The split for users to see, like ODM's submodels/opensfm/clusters_with_neighbors.geojson.

    One Polygon feature per submodel, properties {"submodel", "photos" (count), "core" (count)}: the convex
    hull (shapely) of its photos' (N, 2) positions `xy_m` (row i: names[i]), buffered by HULL_BUFFER when
    the photos are collinear or at one point. Coordinates are in that frame, named by a top-level GeoJSON
    2008 "crs" member {"type": "name", "properties": {"name": "EPSG:32615"}} (`crs`: an EPSG code, or
    anything pyproj reads; a CRS without EPSG code is named by its WKT). ODM writes one Point per photo in
    lon/lat instead. Raises KeyError for a photo of a submodel not in `names`.
    """
    row = {name: i for i, name in enumerate(names)}
    xy = np.asarray(xy_m, dtype=np.float64)
    features = []
    for sub in submodels:
        hull = shapely.MultiPoint(xy[[row[p] for p in sub.photos]]).convex_hull
        if not isinstance(hull, shapely.Polygon):
            hull = hull.buffer(HULL_BUFFER)
        ring = [[float(x), float(y)] for x, y in hull.exterior.coords]
        props = {"submodel": sub.name, "photos": len(sub.photos), "core": len(sub.core)}
        geometry = {"type": "Polygon", "coordinates": [ring]}
        features.append({"type": "Feature", "properties": props, "geometry": geometry})
    parsed = CRS.from_epsg(crs) if isinstance(crs, int) else CRS.from_user_input(crs)
    epsg = parsed.to_epsg()
    name = f"EPSG:{epsg}" if epsg is not None else parsed.to_wkt()
    named = {"type": "name", "properties": {"name": name}}
    return {"type": "FeatureCollection", "crs": named, "features": features}
