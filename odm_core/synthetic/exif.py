"""EXIF of the synthetic photos, written with Pillow: camera, time, focal lengths and GPS rationals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from odm_core.synthetic.options import SyntheticOptions

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
_SEC_DEN = 10000  # GPS seconds written to 1e-4 arcsecond (~3 mm)
_ALT_DEN = 1000  # GPS altitude to the millimetre
_TIME_FORMAT = "%Y:%m:%d %H:%M:%S"


@dataclass(frozen=True)
class GpsFix:
    """A position as written in EXIF (the exact values its rationals decode to)."""

    lat: float
    lon: float
    alt: float


def _dms(value_deg: float) -> tuple[tuple[IFDRational, IFDRational, IFDRational], float]:
    """|value| as degrees, minutes, seconds rationals, and the exact value they decode to."""
    units = round(abs(value_deg) * 3600 * _SEC_DEN)
    deg, rest = divmod(units, 3600 * _SEC_DEN)
    minutes, sec = divmod(rest, 60 * _SEC_DEN)
    exact = deg + minutes / 60 + sec / _SEC_DEN / 3600
    return (IFDRational(deg, 1), IFDRational(minutes, 1), IFDRational(sec, _SEC_DEN)), exact


def gps_ifd(lat: float, lon: float, alt: float) -> tuple[dict[int, object], GpsFix]:
    """GPS IFD tags and the fix they encode."""
    lat_r, lat_x = _dms(lat)
    lon_r, lon_x = _dms(lon)
    alt_units = round(abs(alt) * _ALT_DEN)
    tags: dict[int, object] = {
        0: b"\x02\x03\x00\x00",
        1: "N" if lat >= 0 else "S",
        2: lat_r,
        3: "E" if lon >= 0 else "W",
        4: lon_r,
        5: b"\x00" if alt >= 0 else b"\x01",
        6: IFDRational(alt_units, _ALT_DEN),
    }
    fix = GpsFix(
        lat_x if lat >= 0 else -lat_x,
        lon_x if lon >= 0 else -lon_x,
        (1 if alt >= 0 else -1) * alt_units / _ALT_DEN,
    )
    return tags, fix


def capture_time(opts: SyntheticOptions, index: int) -> str:
    """EXIF time of photo `index` (one second apart)."""
    return (datetime.strptime(opts.start_time, _TIME_FORMAT) + timedelta(seconds=index)).strftime(
        _TIME_FORMAT
    )


def photo_exif(
    opts: SyntheticOptions, index: int, lat: float, lon: float, alt: float
) -> tuple[Image.Exif, GpsFix]:
    """The EXIF block of photo `index` with its GPS position (left out with gps_tags False), and the fix."""
    exif = Image.Exif()
    when = capture_time(opts, index)
    exif.update({0x010F: opts.camera_make, 0x0110: opts.camera_model, 0x0112: 1, 0x0132: when})
    px_per_cm = opts.image_width / (opts.sensor_width_mm / 10.0)
    exif.get_ifd(EXIF_IFD).update(
        {
            0x9003: when,
            0x9004: when,
            0x920A: IFDRational(round(opts.focal_mm * 1000), 1000),
            0xA405: round(opts.focal_35mm),
            0xA002: opts.image_width,
            0xA003: opts.image_height,
            0xA20E: IFDRational(round(px_per_cm * 1000), 1000),
            0xA20F: IFDRational(round(px_per_cm * 1000), 1000),
            0xA210: 3,  # focal plane resolution in pixels per centimetre
        }
    )
    tags, fix = gps_ifd(lat, lon, alt)
    if opts.gps_tags:
        exif.get_ifd(GPS_IFD).update(tags)
    return exif, fix


def read_gps(path: Path) -> GpsFix:
    """The GPS fix of a JPEG, decoded with Pillow."""
    gps = Image.open(path).getexif().get_ifd(GPS_IFD)

    def deg(values: tuple[float, float, float], ref: str, neg: str) -> float:
        v = float(values[0]) + float(values[1]) / 60 + float(values[2]) / 3600
        return -v if ref == neg else v

    alt = float(gps[6]) * (-1 if gps.get(5) == b"\x01" else 1)
    return GpsFix(deg(gps[2], gps[1], "S"), deg(gps[4], gps[3], "W"), alt)
