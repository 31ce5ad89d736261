"""Ground control points as ODM reads them (opendm/gcp.py), checked line by line.

gcp_list.txt: the first line is the CRS (an EPSG code, `WGS84 UTM 32N`, or a PROJ string); then one
observation per line, `geo_x geo_y geo_z im_x im_y image_name [gcp_name [extra ...]]`, x before y in the
CRS's traditional GIS order (longitude first for EPSG:4326) and pixels from the image's top-left corner.
A GCP is the set of lines with the same name or, unnamed, the same coordinates (ODM's grouping). As in
ODM, the points are taken to the UTM zone of the first line's position (`gcp_list_utm.txt`), which is then
the project's CRS.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from odm_core.errors import OdmInputError
from odm_core.geo.georef import odm_crs, utm_epsg

log = logging.getLogger("odm_core.stages.dataset")

MIN_VIEWS = 2  # photos a GCP must be marked in to be triangulated
FIELDS = "geo_x geo_y geo_z im_x im_y image_name [gcp_name]"


@dataclass(frozen=True)
class GcpObservation:
    """One line of the file: a GCP marked in a photo at pixel (px, py), from the top-left corner."""

    image: str
    px: float
    py: float
    line: int


@dataclass(frozen=True)
class GroundControlPoint:
    """A surveyed point: its name, coordinates (x, y, z in the file's CRS, or UTM after `to_utm`) and
    where it is marked. A check point is measured, never used as a constraint."""

    name: str
    xyz: tuple[float, float, float]
    observations: tuple[GcpObservation, ...]
    check: bool = False


@dataclass(frozen=True)
class GcpSet:
    """The GCPs of one file, with the CRS their coordinates are in."""

    crs: CRS
    points: tuple[GroundControlPoint, ...]

    @property
    def controls(self) -> tuple[GroundControlPoint, ...]:
        return tuple(p for p in self.points if not p.check)

    @property
    def checks(self) -> tuple[GroundControlPoint, ...]:
        return tuple(p for p in self.points if p.check)


def read_gcp_text(
    text: str,
    source: Path | str,
    sizes: dict[str, tuple[int, int]],
    check_names: frozenset[str] = frozenset(),
) -> GcpSet:
    """Parse a GCP file's text. `sizes`: image name -> (width, height) of the project's photos; a GCP
    whose name starts with CHK, or is in `check_names`, is a check point.

    Raises OdmInputError naming `source` and the line: an unknown CRS, a malformed line, an image not in
    the project, a pixel outside its image, one name with two positions, a GCP marked twice in a photo.
    """
    content = _content_lines(text)
    if not content:
        raise OdmInputError(
            f"{source} is empty; its first line must be a CRS, e.g. EPSG:32632 or WGS84 UTM 32N"
        )
    crs = gcp_crs(content[0][1], source, content[0][0])
    grouped: dict[str, list[tuple[tuple[float, float, float], GcpObservation]]] = {}
    for number, line in content[1:]:
        xyz, obs, name = _observation(line, source, number, sizes)
        grouped.setdefault(name, []).append((xyz, obs))
    if not grouped:
        raise OdmInputError(f"{source} has a CRS line but no GCP lines ({FIELDS})")
    unnamed = iter(range(1, len(grouped) + 1))
    points = tuple(
        _point(f"gcp{next(unnamed)}" if key.startswith("@") else key, entries, source, check_names)
        for key, entries in grouped.items()
    )
    return GcpSet(crs, points)


def gcp_file_text(path: Path) -> str:
    """A --gcp file's text, its CRS line checked (the rest is checked against the photos by the dataset
    stage); OdmInputError naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise OdmInputError(f"--gcp {path}: cannot be read ({e}); give ODM's gcp_list.txt file") from None
    content = _content_lines(text)
    if not content:
        raise OdmInputError(f"--gcp {path} is empty; its first line must be a CRS, e.g. EPSG:32632")
    gcp_crs(content[0][1], path, content[0][0])
    return text


def _content_lines(text: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the lines that are neither blank nor comments (BOM dropped)."""
    numbered = enumerate(text.replace("\ufeff", "").split("\n"), start=1)
    return [(n, line.strip()) for n, line in numbered if line.strip() and not line.strip().startswith("#")]


def gcp_crs(text: str, source: Path | str, number: int = 1) -> CRS:
    """The CRS of a GCP file's first line; OdmInputError naming the file and line otherwise."""
    try:
        return odm_crs(text)
    except CRSError as e:
        raise OdmInputError(
            f"{source}, line {number}: {text!r} is not a CRS ({e}); the first line must be one, "
            "e.g. EPSG:32632, WGS84 UTM 32N or a PROJ string (+proj=utm +zone=32 +datum=WGS84)"
        ) from None


def _observation(
    line: str, source: Path | str, number: int, sizes: dict[str, tuple[int, int]]
) -> tuple[tuple[float, float, float], GcpObservation, str]:
    parts = line.split()
    where = f"{source}, line {number}"
    if len(parts) < 6:
        raise OdmInputError(f"{where}: {len(parts)} field(s) where {FIELDS} are expected: {line!r}")
    try:
        x, y, z, px, py = (float(v) for v in parts[:5])
    except ValueError:
        raise OdmInputError(f"{where}: the first five fields must be numbers ({FIELDS}): {line!r}") from None
    if not all(math.isfinite(v) for v in (x, y, z, px, py)):
        raise OdmInputError(f"{where}: coordinates must be finite numbers: {line!r}")
    image = parts[5]
    if image not in sizes:
        raise OdmInputError(
            f"{where}: {image!r} is not a photo of this project (names are case-sensitive; a photo "
            "left out as unreadable or a duplicate counts as absent); fix the name or remove the line"
        )
    width, height = sizes[image]
    if not (0 <= px <= width and 0 <= py <= height):
        raise OdmInputError(
            f"{where}: pixel ({px:g}, {py:g}) is outside {image} ({width} x {height} px); "
            "im_x counts from the left edge, im_y from the top"
        )
    name = parts[6] if len(parts) > 6 else f"@{x:.4f},{y:.4f},{z:.4f}"  # unnamed: grouped by position
    return (x, y, z), GcpObservation(image, px, py, number), name


def _point(
    name: str,
    entries: list[tuple[tuple[float, float, float], GcpObservation]],
    source: Path | str,
    check_names: frozenset[str],
) -> GroundControlPoint:
    xyz, first = entries[0]
    seen: dict[str, int] = {}
    for other, obs in entries:
        if max(abs(a - b) for a, b in zip(other, xyz, strict=True)) > 1e-6:
            raise OdmInputError(
                f"{source}, line {obs.line}: GCP {name!r} has other coordinates than on line {first.line}; "
                "give each surveyed point its own name"
            )
        if obs.image in seen:
            raise OdmInputError(
                f"{source}, line {obs.line}: GCP {name!r} is marked in {obs.image} again "
                f"(line {seen[obs.image]}); keep one mark per photo"
            )
        seen[obs.image] = obs.line
    check = name.upper().startswith("CHK") or name in check_names
    return GroundControlPoint(name, xyz, tuple(obs for _, obs in entries), check)


def to_utm(gcps: GcpSet) -> tuple[int, GcpSet]:
    """The GCPs in the UTM zone (WGS84) of the first one's position, ODM's rule for the project's CRS;
    returns (EPSG code, GCPs in it)."""
    first = gcps.points[0].xyz
    lon, lat = Transformer.from_crs(gcps.crs, 4326, always_xy=True).transform(first[0], first[1])
    epsg = utm_epsg(lat, lon)
    to = Transformer.from_crs(gcps.crs, epsg, always_xy=True)
    points = []
    for p in gcps.points:
        x, y, z = to.transform(*p.xyz)
        points.append(replace(p, xyz=(float(x), float(y), float(z))))
    return epsg, GcpSet(CRS.from_epsg(epsg), tuple(points))


def utm_text(gcps: GcpSet, zone_name: str) -> str:
    """ODM's gcp_list_utm.txt: `zone_name` (e.g. WGS84 UTM 32N), then every observation with its GCP's
    name (so check points stay known to later stages)."""
    rows = [zone_name]
    for p in gcps.points:
        rows += [
            f"{p.xyz[0]:.4f} {p.xyz[1]:.4f} {p.xyz[2]:.4f} {o.px:.3f} {o.py:.3f} {o.image} {p.name}"
            for o in p.observations
        ]
    return "\n".join(rows) + "\n"


def usable(gcps: GcpSet) -> tuple[list[GroundControlPoint], list[GroundControlPoint]]:
    """(GCPs marked in at least MIN_VIEWS photos, the others: used for nothing)."""
    kept = [p for p in gcps.points if len({o.image for o in p.observations}) >= MIN_VIEWS]
    return kept, [p for p in gcps.points if p not in kept]


def project_gcps(
    gcp_option: str | None, project_file: Path, use_exif: bool, sizes: dict[str, tuple[int, int]]
) -> tuple[GcpSet, str] | None:
    """The GCPs a run uses: --gcp's text, else the project's gcp_list.txt; None with --use-exif or no file.
    Returns the GCPs marked in at least MIN_VIEWS photos and where they came from; logs the others.

    Raises OdmInputError (see read_gcp_text), or when no GCP is marked in MIN_VIEWS photos.
    """
    if use_exif:
        if gcp_option is not None or project_file.is_file():
            log.warning("--use-exif: the GCP file is ignored; the photos' GPS georeferences the model")
        return None
    if gcp_option is not None:
        text, source = gcp_option, "the --gcp file"
    elif project_file.is_file():
        text, source = project_file.read_text(encoding="utf-8-sig"), str(project_file)
    else:
        return None
    gcps = read_gcp_text(text, source, sizes)
    kept, unused = usable(gcps)
    if unused:
        log.warning(
            "%d GCP(s) in %s are marked in fewer than %d photos and are used for nothing (mark them in "
            "more photos): %s",
            len(unused),
            source,
            MIN_VIEWS,
            ", ".join(p.name for p in unused),
        )
    if not kept:
        raise OdmInputError(
            f"{source}: no GCP is marked in {MIN_VIEWS} or more photos, so none can be used; mark each "
            "GCP in at least 2 photos (3 or more is better), or pass --use-exif to ignore the file"
        )
    marks = sum(len(p.observations) for p in kept)
    log.warning(
        "Using %s: %d GCP(s), %d marks in the photos, georeference the model", source, len(kept), marks
    )
    return GcpSet(gcps.crs, tuple(kept)), source
