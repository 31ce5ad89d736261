"""Read one photo's metadata (EXIF here, DJI XMP in xmp.py) into a `Photo`, checking that it decodes.

Follows ODM's `ODM_Photo.parse_exif_values` (opendm/photo.py) where it matters: width/height as stored
(EXIF orientation is recorded, not applied), altitude ref 1 = below sea level, DJI XMP AbsoluteAltitude
overrides the EXIF altitude, focal_ratio = focal_35mm / 36 or focal_mm / sensor width, and
--gps-accuracy sets both GPS standard deviations (ODM's `override_gps_dop`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from odm_core.errors import OdmInputError
from odm_core.options import DatasetOptions
from odm_core.photos.photo import Photo
from odm_core.photos.xmp import read_xmp, xmp_fields

log = logging.getLogger("odm_core.photos.exif")

# Pillow format names we decode (MPO: DJI's multi-picture JPEG).
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "TIFF", "BMP"})

_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_MAKE, _MODEL, _ORIENTATION = 0x010F, 0x0110, 0x0112
_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL = 0x9003, 0x9011
_SUBSEC_TIME, _SUBSEC_TIME_ORIGINAL = 0x9290, 0x9291
_FOCAL_LENGTH, _FOCAL_35MM = 0x920A, 0xA405
_FOCAL_PLANE_XRES, _FOCAL_PLANE_UNIT = 0xA20E, 0xA210
_PIXEL_X_DIMENSION = 0xA002  # the width the camera recorded (a downscaled copy may keep it)
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON, _GPS_ALT_REF, _GPS_ALT = 1, 2, 3, 4, 5, 6

_MM_PER_UNIT = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # EXIF FocalPlaneResolutionUnit: inch, cm, mm, um


class UnreadablePhoto(OdmInputError):
    """A file in images/ that cannot be used as a photo (empty, not an image, truncated, unsupported)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path.name}: {reason}")
        self.path = path
        self.reason = reason


def read_photo(path: Path, opts: DatasetOptions) -> Photo:
    """Read one photo's size, EXIF and DJI XMP; raise UnreadablePhoto if it is not a decodable image."""
    data = _read_bytes(path)
    width, height, exif, pixel_digest = _decode_checked(path, data)
    fields: dict[str, Any] = {"filename": path.name, "width": width, "height": height}
    fields.update(_exif_fields(path, exif, width))
    xmp = read_xmp(path, data)
    fields.update(xmp_fields(xmp))
    for field, name in (("camera_make", "tiff:Make"), ("camera_model", "tiff:Model")):
        if not fields.get(field) and xmp.get(name):
            fields[field] = xmp[name].strip()  # some cameras write make/model only in XMP (ODM)
    if fields.get("altitude") is not None:
        fields["altitude"] += opts.gps_z_offset
    if fields.get("latitude") == 0 and fields.get("longitude") == 0:
        log.warning("%s: GPS position is (0, 0), a missing fix; ignoring it", path.name)
        fields["latitude"] = fields["longitude"] = None
    fields["gps_xy_stddev"] = fields["gps_z_stddev"] = opts.gps_accuracy
    fields["pixel_digest"] = pixel_digest
    return Photo(**fields)


# --- decoding ---------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()  # opens read-only
    except OSError as e:
        raise UnreadablePhoto(path, f"cannot be read ({e.strerror or e})") from e
    if not data:
        raise UnreadablePhoto(path, "empty file (0 bytes)")
    return data


def _decode_checked(path: Path, data: bytes) -> tuple[int, int, Image.Exif | None, str]:
    """Size, EXIF and a digest of the decoded pixels (at the reduced size; equal for copies of the same
    photo whatever their name or metadata) of the image in `data`, after checking that it decodes."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format not in SUPPORTED_FORMATS:
                raise UnreadablePhoto(path, f"unsupported image format {im.format}; use JPEG, PNG or TIFF")
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            exif = _safe_exif(path, im)
            # A reduced-size decode still reads every compressed byte, so truncation is caught cheaply.
            im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            im.load()
            digest = hashlib.sha1(f"{width}x{height}:{im.mode}:{im.size}".encode() + im.tobytes()).hexdigest()
    except UnreadablePhoto:
        raise
    except UnidentifiedImageError as e:
        raise UnreadablePhoto(path, "not an image (Pillow does not recognise its content)") from e
    except Image.DecompressionBombError as e:
        raise UnreadablePhoto(path, f"image too large to decode safely ({e})") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise UnreadablePhoto(path, f"truncated or corrupt image ({e})") from e
    return width, height, exif, digest


def _safe_exif(path: Path, im: Image.Image) -> Image.Exif | None:
    try:
        return im.getexif()
    except Exception as e:  # corrupt EXIF must not make a decodable photo unusable
        log.warning("%s: cannot read EXIF (%s); using the photo without it", path.name, e)
        return None


# --- EXIF -------------------------------------------------------------------------------------


def _exif_fields(path: Path, exif: Image.Exif | None, width: int) -> dict[str, Any]:
    if exif is None:
        return {}
    try:
        sub = exif.get_ifd(_EXIF_IFD)
        gps = exif.get_ifd(_GPS_IFD)
    except Exception as e:
        log.warning("%s: cannot read EXIF sub-directories (%s)", path.name, e)
        sub, gps = {}, {}
    focal = _pos(sub.get(_FOCAL_LENGTH))
    focal_35 = _pos(sub.get(_FOCAL_35MM))
    lat, lon, alt = _gps(gps)
    refs_missing = (
        lat is not None
        and lon is not None
        and not (_text(gps.get(_GPS_LAT_REF)) and _text(gps.get(_GPS_LON_REF)))
    )
    return {
        "hemisphere_assumed": refs_missing,
        "camera_make": _text(exif.get(_MAKE)),
        "camera_model": _text(exif.get(_MODEL)),
        "orientation": _int(exif.get(_ORIENTATION)) or 1,
        "latitude": lat,
        "longitude": lon,
        "altitude": alt,
        "utc_time": _utc_ms(path, sub),
        "focal_length_mm": focal,
        "focal_length_35mm": focal_35,
        "focal_ratio": _focal_ratio(
            focal, focal_35, _sensor_width_mm(sub, _int(sub.get(_PIXEL_X_DIMENSION)) or width)
        ),
    }


def _gps(gps: dict[int, Any]) -> tuple[float | None, float | None, float | None]:
    """Latitude, longitude (degrees, signed by their refs) and altitude (negative for ref 1)."""
    lat = _dms(gps.get(_GPS_LAT), _text(gps.get(_GPS_LAT_REF)), "S", 90.0)
    lon = _dms(gps.get(_GPS_LON), _text(gps.get(_GPS_LON_REF)), "W", 180.0)
    alt = _num(gps.get(_GPS_ALT))
    if alt is not None and _int(gps.get(_GPS_ALT_REF)) == 1:
        alt = -alt
    return lat, lon, alt


def _dms(value: Any, ref: str | None, negative_ref: str, limit: float) -> float | None:
    parts = value if isinstance(value, tuple | list) else (value,)
    nums = [_num(v) for v in parts[:3]]
    if not nums or None in nums:
        return None
    deg = sum(n / 60**i for i, n in enumerate(nums) if n is not None)
    if ref and ref[0].upper() == negative_ref:
        deg = -deg
    return deg if abs(deg) <= limit else None


def _utc_ms(path: Path, sub: dict[int, Any]) -> float | None:
    """DateTimeOriginal (+ sub-seconds, + offset; UTC when no offset) as ms since the epoch."""
    text = _text(sub.get(_DATETIME_ORIGINAL))
    if not text:
        return None
    try:
        t = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        log.warning("%s: unreadable DateTimeOriginal %r", path.name, text)
        return None
    subsec = _text(sub.get(_SUBSEC_TIME_ORIGINAL)) or _text(sub.get(_SUBSEC_TIME))
    if subsec and subsec.isdigit():
        t += timedelta(seconds=float(f"0.{subsec}"))
    return t.replace(tzinfo=_tz(_text(sub.get(_OFFSET_TIME_ORIGINAL)))).timestamp() * 1000.0


def _tz(offset: str | None) -> timezone:
    """EXIF OffsetTime ('+02:00', '-0530', 'Z') as a timezone; UTC when absent or unreadable."""
    if not offset or offset[0] not in "+-":
        return UTC
    digits = offset[1:].replace(":", "")
    if len(digits) != 4 or not digits.isdigit():
        return UTC
    minutes = int(digits[:2]) * 60 + int(digits[2:])
    return timezone(timedelta(minutes=-minutes if offset[0] == "-" else minutes))


def _sensor_width_mm(sub: dict[int, Any], width: int) -> float | None:
    """Sensor width from FocalPlaneXResolution and its unit (ODM's rule), if the EXIF has them. `width` is
    the EXIF PixelXDimension where recorded: the resolution refers to the camera's pixels, and a photo
    downscaled with its EXIF kept would otherwise get a sensor (and focal ratio) off by the scale."""
    unit = _MM_PER_UNIT.get(_int(sub.get(_FOCAL_PLANE_UNIT)) or 0)
    pixels_per_unit = _pos(sub.get(_FOCAL_PLANE_XRES))
    if unit is None or pixels_per_unit is None:
        return None
    return width / pixels_per_unit * unit


def _focal_ratio(focal: float | None, focal_35: float | None, sensor_mm: float | None) -> float | None:
    """ODM's focal ratio: focal_35mm / 36 when known, else focal / sensor width; None if neither."""
    if focal_35:
        return focal_35 / 36.0
    if focal and sensor_mm:
        return focal / sensor_mm
    return None


# --- value helpers ----------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    """A finite float from an EXIF number (int, IFDRational, (num, den) pair), else None."""
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        value = value[0] / value[1] if value[1] else math.nan
    try:
        f = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if math.isfinite(f) else None


def _pos(value: Any) -> float | None:
    f = _num(value)
    return f if f is not None and f > 0 else None


def _int(value: Any) -> int | None:
    if isinstance(value, bytes):
        if not value:
            return None
        value = value[0] - 48 if value[0] in (48, 49) else value[0]  # ASCII '0'/'1' or a raw byte
    if isinstance(value, tuple | list):
        value = value[0] if value else None
    f = _num(value)
    return int(f) if f is not None else None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.strip("\x00 \t\r\n")
    return value or None
