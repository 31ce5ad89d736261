"""UTM zones, WGS84 <-> UTM, and ODM's coords.txt / proj.txt georeference files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyproj import CRS, Transformer

from odm_core.artifacts import write_text

_UTM_NAME = re.compile(r"^WGS84 UTM (\d{1,2})([NS])$", re.IGNORECASE)


def odm_crs(text: str) -> CRS:
    """A CRS as ODM's text files write it (coords.txt, geo.txt, gcp_list.txt): `WGS84 UTM 32N`, an EPSG
    code (`EPSG:4326`) or a PROJ string. Raises pyproj.exceptions.CRSError for anything else."""
    text = text.strip()
    utm = _UTM_NAME.match(text)
    if utm:
        zone, hemi = int(utm.group(1)), utm.group(2).upper()
        return CRS.from_epsg((32600 if hemi == "N" else 32700) + zone)
    return CRS.from_user_input(text)


def utm_epsg(lat: float, lon: float) -> int:
    """EPSG code of the WGS84 UTM zone holding (lat, lon), e.g. 32615 for UTM 15N."""
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def _utm_zone(epsg: int) -> tuple[int, str]:
    return epsg % 100, "N" if epsg // 100 == 326 else "S"


def lla_to_utm(epsg: int, lat: np.ndarray, lon: np.ndarray, alt: np.ndarray) -> np.ndarray:
    """WGS84 latitude, longitude (degrees) and altitude to UTM easting, northing, altitude (N x 3)."""
    t = Transformer.from_crs(4326, epsg, always_xy=True)
    x, y = t.transform(np.asarray(lon, float), np.asarray(lat, float))
    return np.column_stack([x, y, np.asarray(alt, float)])


def utm_to_lla(epsg: int, xyz: np.ndarray) -> np.ndarray:
    """UTM (N x 3) to longitude, latitude (degrees), altitude (N x 3; GeoJSON's axis order)."""
    t = Transformer.from_crs(epsg, 4326, always_xy=True)
    xyz = np.atleast_2d(xyz)
    lon, lat = t.transform(xyz[:, 0], xyz[:, 1])
    return np.column_stack([lon, lat, xyz[:, 2]])


@dataclass(frozen=True)
class GeoReference:
    """A project's CRS and the offset subtracted from UTM coordinates (ODM's coords.txt)."""

    epsg: int
    offset_x: float
    offset_y: float

    @property
    def proj4(self) -> str:
        zone, hemi = _utm_zone(self.epsg)
        south = " +south" if hemi == "S" else ""
        return f"+proj=utm +zone={zone}{south} +datum=WGS84 +units=m +no_defs"

    @property
    def crs(self) -> CRS:
        return CRS.from_epsg(self.epsg)

    @property
    def offset(self) -> np.ndarray:
        return np.array([self.offset_x, self.offset_y, 0.0])

    @property
    def zone_name(self) -> str:
        """ODM's name of the UTM zone, e.g. 'WGS84 UTM 15N'."""
        zone, hemi = _utm_zone(self.epsg)
        return f"WGS84 UTM {zone}{hemi}"

    def write(self, coords_txt: Path, proj_txt: Path) -> None:
        """Write ODM's coords.txt ('WGS84 UTM 15N' then the offset) and proj.txt (proj4)."""
        write_text(coords_txt, f"{self.zone_name}\n{self.offset_x:.0f} {self.offset_y:.0f}\n")
        write_text(proj_txt, self.proj4 + "\n")

    @classmethod
    def read(cls, coords_txt: Path) -> GeoReference:
        """Read ODM's coords.txt."""
        return cls.from_text(coords_txt.read_text(), str(coords_txt))

    @classmethod
    def from_text(cls, text: str, source: str) -> GeoReference:
        """Parse the text of ODM's coords.txt; ValueError names `source` when it is not a UTM zone."""
        lines = text.split("\n")
        epsg = odm_crs(lines[0]).to_epsg()
        if epsg is None:
            raise ValueError(f"{source}: {lines[0]!r} is not a UTM zone")
        ox, oy = (float(v) for v in lines[1].split()[:2])
        return cls(epsg=epsg, offset_x=ox, offset_y=oy)

    @classmethod
    def of_model(cls, coords_txt: Path, reference_lla_json: Path) -> GeoReference | None:
        """The georeference of the reconstruction: coords.txt's, when structure from motion aligned the
        model to it (it writes reference_lla.json only then); None for a model in a local frame."""
        if not (coords_txt.is_file() and reference_lla_json.is_file()):
            return None
        return cls.read(coords_txt)

    @classmethod
    def from_lla(cls, lat: np.ndarray, lon: np.ndarray) -> GeoReference:
        """UTM zone of the photos' mean position; offset = their rounded mean UTM position (as ODM)."""
        epsg = utm_epsg(float(np.mean(lat)), float(np.mean(lon)))
        xyz = lla_to_utm(epsg, lat, lon, np.zeros(len(lat)))
        return cls(epsg, float(np.round(xyz[:, 0].mean())), float(np.round(xyz[:, 1].mean())))
