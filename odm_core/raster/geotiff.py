"""Writing the stages' finished rasters: COG or tiled GeoTIFF with overviews (--cog), and the KMZ.

One writer for odm_dem and odm_orthophoto. odmflow writes Cloud-Optimized GeoTIFFs by default (ODM only
with --cog); with --no-cog it writes what ODM's --build-overviews gives: a tiled GeoTIFF with internal
overviews. The KMZ is GDAL's KMLSUPEROVERLAY, as ODM's `gdal_translate -of KMLSUPEROVERLAY`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling

from odm_core.artifacts import atomic_path
from odm_core.errors import OdmStageError

BLOCK_PX = 512
JPEG_QUALITY = 90


RGBA = (ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha)


def staging_profile(
    width: int, height: int, crs: CRS, transform: Affine, count: int, dtype: str, **extra: object
) -> dict[str, object]:
    """The profile of a tiled, DEFLATE-compressed staging GeoTIFF that write_geotiff then copies."""
    return {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        "tiled": True,
        "blockxsize": BLOCK_PX,
        "blockysize": BLOCK_PX,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
        **extra,
    }


def rgba_profile(width: int, height: int, crs: CRS, transform: Affine) -> dict[str, object]:
    """staging_profile of an 8-bit RGBA image (set its bands' colour interpretation to RGBA)."""
    return staging_profile(width, height, crs, transform, 4, "uint8", photometric="RGB")


def overview_factors(width: int, height: int, block_px: int = BLOCK_PX) -> list[int]:
    """Powers of two until the overview fits in one block (GDAL's OVERVIEWS=AUTO rule)."""
    factors, factor = [], 2
    while max(width, height) / (factor // 2) > block_px:
        factors.append(factor)
        factor *= 2
    return factors


def write_geotiff(
    staging: Path, out: Path, cog: bool, compress: str = "DEFLATE", predictor: bool = False
) -> Path:
    """Copy a staging GeoTIFF to `out` atomically: a COG (cog=True) or a tiled GeoTIFF with internal
    overviews (ODM's --build-overviews). `predictor` turns on the predictor suited to the data type."""
    with rasterio.open(staging) as src:
        floating = src.dtypes[0].startswith("float")
        width, height = src.width, src.height
    options: dict[str, object] = {"COMPRESS": compress, "BIGTIFF": "IF_SAFER"}
    if compress == "JPEG":
        options["QUALITY"] = JPEG_QUALITY
    with atomic_path(out) as tmp:
        if cog:
            if predictor:
                options["PREDICTOR"] = "YES"
            options.update(BLOCKSIZE=BLOCK_PX, OVERVIEWS="AUTO", RESAMPLING="AVERAGE")
            rasterio.shutil.copy(staging, tmp, driver="COG", **options)
        else:
            if predictor:
                options["PREDICTOR"] = 3 if floating else 2
            options.update(TILED="YES", BLOCKXSIZE=BLOCK_PX, BLOCKYSIZE=BLOCK_PX)
            rasterio.shutil.copy(staging, tmp, driver="GTiff", **options)
            factors = overview_factors(width, height)
            if factors:
                with rasterio.open(tmp, "r+") as dst:
                    dst.build_overviews(factors, Resampling.average)
                    dst.update_tags(ns="rio_overview", resampling="average")
    return out


def write_kmz(orthophoto: Path, out: Path) -> Path:
    """The orthophoto as a KMZ super-overlay for Google Earth (GDAL KMLSUPEROVERLAY; warped to WGS84 by
    the driver, PNG where a tile has transparency, JPEG elsewhere)."""
    with rasterio.Env() as env:
        if "KMLSUPEROVERLAY" not in env.drivers():
            raise OdmStageError(
                f"--orthophoto-kmz: rasterio's GDAL {rasterio.__gdal_version__} has no KMLSUPEROVERLAY "
                "driver; install a rasterio wheel built with it, or drop --orthophoto-kmz"
            )
    with rasterio.open(orthophoto) as src:
        if src.dtypes[0] != "uint8" or src.count not in (3, 4):
            raise OdmStageError(
                f"{orthophoto}: the KMZ needs an 8-bit RGB or RGBA orthophoto, not {src.count} bands of "
                f"{src.dtypes[0]}; re-run odm_orthophoto"
            )
    with atomic_path(out) as tmp:
        # the driver zips only for a name ending .kmz, and GDAL's /vsizip/ splits at any earlier ".kmz":
        # it writes into a folder of its own, named *.part like every temporary (a killed run's is removed)
        work = Path(tempfile.mkdtemp(prefix=f".{out.stem}-kmz.", suffix=".part", dir=out.parent))
        try:
            kmz = work / "doc.kmz"
            rasterio.shutil.copy(orthophoto, kmz, driver="KMLSUPEROVERLAY", FORMAT="AUTO", NAME=out.stem)
            kmz.replace(tmp)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return out
