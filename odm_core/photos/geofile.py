"""ODM's geo.txt (`--geo`): photo positions that replace the EXIF GPS.

Format (ODM's opendm/geo.py, GeoFile): the first line a CRS (`EPSG:4326`, `WGS84 UTM 32N`, or a PROJ
string); then one line per photo, `image_name x y [z [yaw pitch roll [horizontal_accuracy
vertical_accuracy]]]`, x/y in the CRS's easting/northing (longitude/latitude for geographic CRSs), angles
in degrees as DJI records its gimbal (pitch -90 = nadir), accuracies in metres. `#` starts a comment.
A name may contain spaces: the numbers are read from the end of the line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from odm_core.errors import OdmInputError
from odm_core.geo.georef import odm_crs
from odm_core.photos.photo import Photo

_COUNTS = (8, 6, 3, 2)  # numbers after the name: x y [z [yaw pitch roll [h v]]]


@dataclass(frozen=True)
class GeoEntry:
    """One photo's line: WGS84 position (degrees, metres) and what else it gave."""

    latitude: float
    longitude: float
    altitude: float | None
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    horizontal_accuracy: float | None = None
    vertical_accuracy: float | None = None


def geo_file_text(path: Path) -> str:
    """A --geo file's text, its CRS line checked; OdmInputError naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise OdmInputError(f"--geo {path}: cannot be read ({e}); give ODM's geo.txt file") from None
    parse_crs(_content(text, path)[0][1], path)
    return text


def parse_crs(text: str, path: Path) -> CRS:
    """The CRS of geo.txt's (or gcp_list.txt's) first line; OdmInputError naming the file otherwise."""
    try:
        return odm_crs(text)
    except CRSError as e:
        raise OdmInputError(
            f"{path}, line 1: {text!r} is not a CRS ({e}); "
            "write e.g. EPSG:4326, WGS84 UTM 32N or a PROJ string"
        ) from None


def read_geo_text(text: str, path: Path, names: set[str]) -> dict[str, GeoEntry]:
    """Image name -> its entry, from geo.txt's text (`path` names it in errors); OdmInputError naming the
    file and line for anything malformed or a photo that images/ does not hold."""
    content = _content(text, path)
    crs = parse_crs(content[0][1], path)
    to_wgs84 = Transformer.from_crs(crs, 4326, always_xy=True)
    entries: dict[str, GeoEntry] = {}
    for number, line in content[1:]:
        name, values = _split(line, path, number)
        if name not in names:
            raise OdmInputError(f"{path}, line {number}: {name!r} is not a photo in images/")
        lon, lat = to_wgs84.transform(values[0], values[1])
        entries[name] = _entry(lat, lon, values[2:])
    return entries


def _content(text: str, path: Path) -> list[tuple[int, str]]:
    """(line number, text without its comment) of every non-blank line; OdmInputError when none."""
    lines = text.lstrip("\ufeff").splitlines()
    content = [(n, line.split("#", 1)[0].strip()) for n, line in enumerate(lines, start=1)]
    content = [(n, line) for n, line in content if line]
    if not content:
        raise OdmInputError(f"{path} is empty: its first line must be a CRS, e.g. EPSG:4326")
    return content


def _split(line: str, path: Path, number: int) -> tuple[str, list[float]]:
    """The image name and the numbers after it (as many of x y z yaw pitch roll h v as the line gives)."""
    for count in _COUNTS:
        match = re.match(rf"^(.+?)((?:\s+\S+){{{count}}})\s*$", line)
        if match and all(_is_number(t) for t in match.group(2).split()):
            return match.group(1).strip(), [float(t) for t in match.group(2).split()]
    raise OdmInputError(
        f"{path}, line {number}: expected `image_name x y [z [yaw pitch roll [h_acc v_acc]]]`, got {line!r}"
    )


def _entry(lat: float, lon: float, rest: list[float]) -> GeoEntry:
    padded = rest + [math.nan] * (6 - len(rest))
    z, yaw, pitch, roll, h, v = (None if math.isnan(x) else x for x in padded)
    return GeoEntry(lat, lon, z, yaw, pitch, roll, h, v)


def _is_number(token: str) -> bool:
    try:
        return math.isfinite(float(token))
    except ValueError:
        return False


def apply_geo(photo: Photo, entry: GeoEntry, default_accuracy: float) -> Photo:
    """The photo with geo.txt's position (and attitude and accuracies where given) instead of its EXIF's."""
    has_angles = entry.pitch is not None
    return replace(
        photo,
        latitude=entry.latitude,
        longitude=entry.longitude,
        altitude=entry.altitude,
        hemisphere_assumed=False,
        gps_xy_stddev=entry.horizontal_accuracy or default_accuracy,
        gps_z_stddev=entry.vertical_accuracy or default_accuracy,
        yaw=entry.yaw if has_angles else photo.yaw,
        pitch=entry.pitch if has_angles else photo.pitch,
        roll=entry.roll if has_angles else photo.roll,
    )
