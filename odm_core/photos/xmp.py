"""DJI and tiff fields from a photo's XMP packet (ODM's `ODM_Photo.parse_xmp`, the fields odmflow uses)."""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

log = logging.getLogger("odm_core.photos.xmp")

_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_XMP_PREFIXES = {"http://www.dji.com/drone-dji/1.0/": "drone-dji", "http://ns.adobe.com/tiff/1.0/": "tiff"}


def read_xmp(path: Path, data: bytes) -> dict[str, str]:
    """'prefix:Name' -> value of the DJI and tiff fields in the file's XMP packet (attributes or elements)."""
    start, end = data.find(b"<x:xmpmeta"), data.find(b"</x:xmpmeta>")
    if start < 0 or end < start:
        return {}
    try:
        root = ET.fromstring(data[start : end + len(b"</x:xmpmeta>")].decode("utf-8", "replace"))
    except ET.ParseError as e:
        log.warning("%s: malformed XMP packet (%s); ignoring it", path.name, e)
        return {}
    out: dict[str, str] = {}
    for desc in root.iter(f"{{{_RDF}}}Description"):
        for key, value in desc.attrib.items():
            _put(out, key, value)
        for child in desc:
            _put(out, child.tag, (child.text or "").strip())
    return out


def _put(out: dict[str, str], qname: str, value: str) -> None:
    if not qname.startswith("{") or not value:
        return
    uri, _, local = qname[1:].partition("}")
    prefix = _XMP_PREFIXES.get(uri) or ("drone-dji" if "drone-dji" in uri else None)
    if prefix:
        out.setdefault(f"{prefix}:{local}", value)


def xmp_fields(xmp: dict[str, str]) -> dict[str, Any]:
    """Photo fields from DJI XMP: relative altitude, gimbal angles; position/altitude override EXIF (ODM)."""
    names = {
        "relative_altitude": "RelativeAltitude",
        "yaw": "GimbalYawDegree",
        "pitch": "GimbalPitchDegree",
        "roll": "GimbalRollDegree",
        "altitude": "AbsoluteAltitude",
        "latitude": "Latitude",
        "longitude": "Longitude",
    }
    out: dict[str, Any] = {}
    for field, name in names.items():
        value = _xmp_float(xmp.get(f"drone-dji:{name}"))
        if value is not None:
            out[field] = value
    return out


def _xmp_float(text: str | None) -> float | None:
    """'+40.20', '-89.9', '1/2' -> float; None when absent or not a finite number."""
    if not text:
        return None
    num, _, den = text.strip().partition("/")
    try:
        value = float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        return None
    return value if math.isfinite(value) else None
