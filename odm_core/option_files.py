"""Options whose value is a file's text (--boundary, --geo, --gcp, --split-image-groups): each file read
and checked once, where the option is given, so a bad file is named before any stage runs."""

from __future__ import annotations

from pathlib import Path


def read_boundary(path: Path) -> str:
    """The text of a --boundary GeoJSON file, checked; ValueError names the file and what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--boundary {path}: cannot read it ({err}); give a GeoJSON polygon file") from None
    from odm_core.geo.boundary import parse_boundary

    try:
        parse_boundary(text)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return text


def read_geo(path: Path) -> str:
    """The text of a --geo file, its CRS line checked; ValueError names the file and what is wrong."""
    from odm_core.errors import OdmInputError
    from odm_core.photos.geofile import geo_file_text

    try:
        return geo_file_text(path)
    except OdmInputError as err:
        raise ValueError(str(err)) from None


def read_gcp(path: Path) -> str:
    """The text of a --gcp file, its CRS line checked; ValueError names the file and what is wrong."""
    from odm_core.errors import OdmInputError
    from odm_core.geo.gcp import gcp_file_text

    try:
        return gcp_file_text(path)
    except OdmInputError as err:
        raise ValueError(str(err)) from None


def read_image_groups_file(path: Path) -> str:
    """The text of a --split-image-groups file (a byte-order mark dropped), its lines checked; ValueError
    names the option, the file and the line."""
    from odm_core.errors import OdmInputError
    from odm_core.split.partition import image_groups_text, parse_image_groups

    label = f"--split-image-groups {path}"
    try:
        text = image_groups_text(path, label)
        parse_image_groups(text, label)
    except OdmInputError as err:
        raise ValueError(str(err)) from None
    return text
