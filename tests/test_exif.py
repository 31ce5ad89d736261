"""read_photo: EXIF GPS/focal/time, DJI XMP, and the reasons bad files are refused."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odm_core.errors import OdmInputError
from odm_core.options import DatasetOptions
from odm_core.photos.exif import UnreadablePhoto, read_photo

DJI_XMP_ATTRS = b"""<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="DJI Meta Data"
    xmlns:tiff="http://ns.adobe.com/tiff/1.0/"
    xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/"
   tiff:Make="DJI"
   drone-dji:AbsoluteAltitude="+123.45"
   drone-dji:RelativeAltitude="+40.20"
   drone-dji:GimbalRollDegree="+0.50"
   drone-dji:GimbalYawDegree="-12.30"
   drone-dji:GimbalPitchDegree="-89.90">
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""

DJI_XMP_ELEMENTS = b"""<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/">
   <drone-dji:RelativeAltitude>+55.5</drone-dji:RelativeAltitude>
   <drone-dji:GimbalYawDegree>+170.0</drone-dji:GimbalYawDegree>
   <drone-dji:GimbalPitchDegree>-45.0</drone-dji:GimbalPitchDegree>
   <drone-dji:GimbalRollDegree>0/1</drone-dji:GimbalRollDegree>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>"""

OPTS = DatasetOptions()


def make_exif(
    lat: tuple[float, float, float] | None = (46.0, 50.0, 33.3855),
    lat_ref: str = "N",
    lon: tuple[float, float, float] | None = (91.0, 59.0, 40.4156),
    lon_ref: str = "W",
    alt: float | None = 198.309,
    alt_ref: int = 0,
    **tags: object,
) -> Image.Exif:
    """EXIF with a GPS IFD; more tags by number: tag_0x010F=... (IFD0), exif_0x920A=... (Exif IFD)."""
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    if lat is not None:
        gps[1], gps[2] = lat_ref, lat
    if lon is not None:
        gps[3], gps[4] = lon_ref, lon
    if alt is not None:
        gps[5], gps[6] = bytes([alt_ref]), alt
    sub = exif.get_ifd(0x8769)
    for key, value in tags.items():
        kind, number = key.split("_")
        (exif if kind == "tag" else sub)[int(number, 16)] = value
    return exif


def make_jpeg(
    path: Path, exif: Image.Exif | None = None, xmp: bytes | None = None, size: tuple[int, int] = (64, 48)
) -> Path:
    """A small noisy JPEG (noise so that its compressed data is most of the file)."""
    rng = np.random.default_rng(list(path.name.encode()))  # pixels differ by name
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    kwargs: dict[str, object] = {"quality": 90}
    if exif is not None:
        kwargs["exif"] = exif
    if xmp is not None:
        kwargs["xmp"] = xmp
    Image.fromarray(pixels).save(path, "JPEG", **kwargs)
    return path


def test_reads_gps_camera_focal_time_and_dji_xmp(tmp_path: Path) -> None:
    exif = make_exif(
        tag_0x010F="DJI\x00\x00",
        tag_0x0110="FC300S",
        tag_0x0112=6,
        exif_0x9003="2016:06:23 16:31:59",
        exif_0x9291="25",
        exif_0x9011="+02:00",
        exif_0x920A=3.61,
        exif_0xA405=20,
    )
    photo = read_photo(make_jpeg(tmp_path / "DJI_0001.JPG", exif, DJI_XMP_ATTRS, (80, 60)), OPTS)

    assert (photo.filename, photo.width, photo.height) == ("DJI_0001.JPG", 80, 60)  # stored size
    assert photo.orientation == 6
    assert (photo.camera_make, photo.camera_model) == ("DJI", "FC300S")
    assert photo.latitude == pytest.approx(46 + 50 / 60 + 33.3855 / 3600)
    assert photo.longitude == pytest.approx(-(91 + 59 / 60 + 40.4156 / 3600))
    assert photo.altitude == pytest.approx(123.45)  # XMP AbsoluteAltitude overrides EXIF, as in ODM
    assert photo.relative_altitude == pytest.approx(40.2)
    assert (photo.yaw, photo.pitch, photo.roll) == pytest.approx((-12.3, -89.9, 0.5))
    assert photo.focal_length_mm == pytest.approx(3.61)
    assert photo.focal_length_35mm == 20
    assert photo.focal_ratio == pytest.approx(20 / 36)
    expected = datetime(2016, 6, 23, 16, 31, 59, 250000, tzinfo=timezone(timedelta(hours=2)))
    assert photo.utc_time == pytest.approx(expected.timestamp() * 1000)
    assert photo.gps_xy_stddev == photo.gps_z_stddev == OPTS.gps_accuracy
    assert photo.has_gps


def test_south_west_and_time_without_offset_is_utc(tmp_path: Path) -> None:
    exif = make_exif(
        lat=(33.0, 52.0, 4.0),
        lat_ref="S",
        lon=(151.0, 12.0, 36.0),
        lon_ref="W",
        exif_0x9003="2020:01:02 03:04:05",
    )
    photo = read_photo(make_jpeg(tmp_path / "sw.jpg", exif), OPTS)
    assert photo.latitude == pytest.approx(-(33 + 52 / 60 + 4 / 3600))
    assert photo.longitude == pytest.approx(-(151 + 12 / 60 + 36 / 3600))
    assert photo.altitude == pytest.approx(198.309)
    assert photo.utc_time == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp() * 1000


def test_altitude_below_sea_level_and_z_offset(tmp_path: Path) -> None:
    path = make_jpeg(tmp_path / "dead_sea.jpg", make_exif(alt=430.5, alt_ref=1))
    assert read_photo(path, OPTS).altitude == pytest.approx(-430.5)
    shifted = read_photo(path, DatasetOptions(gps_z_offset=10.0, gps_accuracy=0.05))
    assert shifted.altitude == pytest.approx(-420.5)
    assert shifted.gps_xy_stddev == shifted.gps_z_stddev == 0.05


def test_dji_xmp_element_form_and_no_absolute_altitude(tmp_path: Path) -> None:
    photo = read_photo(make_jpeg(tmp_path / "e.jpg", make_exif(), DJI_XMP_ELEMENTS), OPTS)
    assert photo.relative_altitude == pytest.approx(55.5)
    assert (photo.yaw, photo.pitch, photo.roll) == pytest.approx((170.0, -45.0, 0.0))
    assert photo.altitude == pytest.approx(198.309)  # EXIF altitude kept


def test_focal_ratio_from_focal_plane_resolution(tmp_path: Path) -> None:
    # 6000 px across a 23.5 mm sensor: FocalPlaneXResolution in pixels per cm (unit 3).
    exif = make_exif(exif_0x920A=16.0, exif_0xA20E=6000 / 2.35, exif_0xA210=3)
    photo = read_photo(make_jpeg(tmp_path / "f.jpg", exif, size=(6000 // 50, 4000 // 50)), OPTS)
    assert photo.focal_length_35mm is None
    assert photo.focal_ratio == pytest.approx(16.0 / ((6000 // 50) / (6000 / 2.35) * 10))


def test_png_without_exif(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (32, 24), (200, 10, 10)).save(path)
    photo = read_photo(path, OPTS)
    assert (photo.width, photo.height, photo.orientation) == (32, 24, 1)
    assert not photo.has_gps and photo.altitude is None
    assert photo.camera_make is None and photo.focal_ratio is None and photo.utc_time is None


def test_gps_zero_zero_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = make_jpeg(tmp_path / "nofix.jpg", make_exif(lat=(0.0, 0.0, 0.0), lon=(0.0, 0.0, 0.0)))
    with caplog.at_level(logging.WARNING, "odm_core.photos.exif"):
        assert not read_photo(path, OPTS).has_gps
    assert "(0, 0)" in caplog.text


def test_malformed_xmp_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><broken</x:xmpmeta>'
    with caplog.at_level(logging.WARNING, "odm_core.photos.xmp"):  # XMP is parsed there
        photo = read_photo(make_jpeg(tmp_path / "x.jpg", make_exif(), xmp), OPTS)
    assert photo.has_gps and photo.relative_altitude is None
    assert "malformed XMP" in caplog.text


def _reason(path: Path) -> str:
    with pytest.raises(UnreadablePhoto) as info:
        read_photo(path, OPTS)
    assert isinstance(info.value, OdmInputError)
    assert path.name in str(info.value)
    return info.value.reason


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").touch()
    assert _reason(tmp_path / "empty.jpg") == "empty file (0 bytes)"


def test_text_file_named_jpg(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("these are not pixels\n")
    assert "not an image" in _reason(tmp_path / "notes.jpg")


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = make_jpeg(tmp_path / "full.jpg", make_exif(), size=(400, 300)).read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _reason(tmp_path / "half.jpg")


def test_unsupported_format(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("P", (16, 16)).save(buf, "GIF")
    (tmp_path / "anim.jpg").write_bytes(buf.getvalue())
    assert "unsupported image format GIF" in _reason(tmp_path / "anim.jpg")
