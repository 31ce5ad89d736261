"""The stages' extra raster outputs on small synthetic GeoTIFFs: XYZ tiles, KMZ, COG or GeoTIFF, relief."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import cv2
import morecantile
import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from odm_core.artifacts import atomic_dir
from odm_core.errors import OdmStageError
from odm_core.option_specs import pipeline_options_from_odm
from odm_core.raster import relief as dem_relief
from odm_core.raster import xyz_tiles
from odm_core.raster.geotiff import overview_factors, write_geotiff, write_kmz

WEST_M, NORTH_M, PIXEL_M = 500_000.0, 5_000_000.0, 0.5  # UTM 32N, near 9 E 45 N
WIDTH_PX, HEIGHT_PX = 300, 200
TMS = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture
def rgba_tif(tmp_path: Path) -> Path:
    """A 150 x 100 m RGBA orthophoto: data (red ramp, green 200) in all but a 20-column strip on the east."""
    rgba = np.zeros((4, HEIGHT_PX, WIDTH_PX), np.uint8)
    rgba[0] = (np.arange(WIDTH_PX) % 256)[None, :]
    rgba[1], rgba[2] = 200, 30
    rgba[3, :, : WIDTH_PX - 20] = 255
    path = tmp_path / "ortho.tif"
    profile = {
        "driver": "GTiff",
        "width": WIDTH_PX,
        "height": HEIGHT_PX,
        "count": 4,
        "dtype": "uint8",
        "crs": CRS.from_epsg(32632),
        "transform": from_origin(WEST_M, NORTH_M, PIXEL_M, PIXEL_M),
        "photometric": "RGB",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
        dst.write(rgba)
    return path


def _to_3857(x_m: float, y_m: float) -> tuple[float, float]:
    return Transformer.from_crs(32632, 3857, always_xy=True).transform(x_m, y_m)


def test_zoom_range_and_tile_counts_follow_the_raster(rgba_tif: Path) -> None:
    ranges = xyz_tiles.plan_tiles(rgba_tif)
    zmax, zmin = ranges[0].zoom, ranges[-1].zoom
    # 0.5 m at 45 N is about 0.71 m in EPSG:3857: zoom 18 (0.60 m) is the first finer one
    assert zmax == 18 and xyz_tiles.pixel_size_m(18) < 0.5 / np.cos(
        np.radians(45.15)
    ) < xyz_tiles.pixel_size_m(17)
    assert ranges[-1].count <= 4  # the whole raster fits about one tile at the lowest zoom
    assert [r.zoom for r in ranges] == list(range(zmax, zmin - 1, -1))
    lonlat = transform_bounds(
        32632, 4326, WEST_M, NORTH_M - HEIGHT_PX * PIXEL_M, WEST_M + WIDTH_PX * PIXEL_M, NORTH_M
    )
    for r in ranges:  # the same tiles as morecantile finds for the raster's bounds
        expected = {(t.x, t.y) for t in TMS.tiles(*lonlat, zooms=[r.zoom])}
        assert {(x, y) for x in range(r.x0, r.x1 + 1) for y in range(r.y0, r.y1 + 1)} == expected


def test_tile_formulas_match_morecantile() -> None:
    for lon, lat, zoom in ((9.0, 45.15, 18), (-122.4, 37.8, 12), (151.2, -33.9, 3)):
        x_m, y_m = Transformer.from_crs(4326, 3857, always_xy=True).transform(lon, lat)
        tile = TMS.tile(lon, lat, zoom)
        assert xyz_tiles.tile_of(x_m, y_m, zoom) == (tile.x, tile.y)
        assert xyz_tiles.tile_bounds_m(zoom, tile.x, tile.y) == pytest.approx(tuple(TMS.xy_bounds(tile)))


def test_a_known_pixel_lands_in_its_tile_and_nodata_is_transparent(rgba_tif: Path, tmp_path: Path) -> None:
    out = tmp_path / "orthophoto_tiles"
    result = xyz_tiles.write_xyz_tiles(rgba_tif, out)
    assert (result.min_zoom, result.max_zoom) == (xyz_tiles.plan_tiles(rgba_tif)[-1].zoom, 18)
    assert set(result.files) == set(out.rglob("*.png")) and not list(tmp_path.glob("*.part"))
    # the centre of column 100, row 50: red = 100, green = 200
    x_m, y_m = _to_3857(WEST_M + 100.5 * PIXEL_M, NORTH_M - 50.5 * PIXEL_M)
    for zoom in (result.max_zoom, result.max_zoom - 1):
        x, y = xyz_tiles.tile_of(x_m, y_m, zoom)
        bgra = cv2.imread(str(out / str(zoom) / str(x) / f"{y}.png"), cv2.IMREAD_UNCHANGED)
        left, _, _, top = xyz_tiles.tile_bounds_m(zoom, x, y)
        col = int((x_m - left) / xyz_tiles.pixel_size_m(zoom))
        row = int((top - y_m) / xyz_tiles.pixel_size_m(zoom))
        b, g, r, a = bgra[row, col].astype(int)
        assert a == 255 and g == 200 and b == 30 and abs(r - 100) <= 3
    # the strip without data on the east, and the world outside the raster, are transparent
    x_m, y_m = _to_3857(WEST_M + (WIDTH_PX - 5) * PIXEL_M, NORTH_M - 100 * PIXEL_M)
    x, y = xyz_tiles.tile_of(x_m, y_m, 18)
    path = out / "18" / str(x) / f"{y}.png"
    bgra = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    left, _, _, top = xyz_tiles.tile_bounds_m(18, x, y)
    px = xyz_tiles.pixel_size_m(18)
    assert bgra[int((top - y_m) / px), int((x_m - left) / px), 3] == 0
    alpha = bgra[..., 3]
    assert (alpha == 0).any() and (alpha == 255).any()


def test_tiles_replace_an_earlier_folder_only_when_complete(rgba_tif: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiles"
    (out / "99").mkdir(parents=True)
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("killed")
    assert (out / "99").is_dir() and not list(tmp_path.glob("*.part"))
    xyz_tiles.write_xyz_tiles(rgba_tif, out)
    assert not (out / "99").exists() and (out / "18").is_dir()


def test_tiles_need_an_rgba_raster(tmp_path: Path) -> None:
    path = tmp_path / "grey.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=8, height=8, count=1, dtype="float32", crs="EPSG:32632",
        transform=from_origin(WEST_M, NORTH_M, 1, 1),
    ) as dst:  # fmt: skip
        dst.write(np.zeros((1, 8, 8), np.float32))
    with pytest.raises(OdmStageError, match="RGBA"):
        xyz_tiles.write_xyz_tiles(path, tmp_path / "t")


def test_kmz_holds_a_kml_with_the_orthophotos_wgs84_bounds(rgba_tif: Path, tmp_path: Path) -> None:
    out = write_kmz(rgba_tif, tmp_path / "odm_orthophoto.kmz")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([rgba_tif.name, out.name])  # no temporaries
    with zipfile.ZipFile(out) as kmz:
        assert kmz.testzip() is None
        kml = kmz.read("doc.kml").decode()
        images = [n for n in kmz.namelist() if n.endswith((".png", ".jpg"))]
    assert images
    box = {
        k: float(re.search(f"<{k}>([-0-9.]+)</{k}>", kml).group(1))
        for k in ("north", "south", "east", "west")
    }
    with rasterio.open(rgba_tif) as src:
        west, south, east, north = transform_bounds(src.crs, 4326, *src.bounds, densify_pts=21)
    pixel_deg = PIXEL_M / 111_000 / np.cos(np.radians(45.2))  # one pixel, in longitude degrees (the larger)
    assert box["north"] == pytest.approx(north, abs=pixel_deg)
    assert box["south"] == pytest.approx(south, abs=pixel_deg)
    assert box["east"] == pytest.approx(east, abs=pixel_deg)
    assert box["west"] == pytest.approx(west, abs=pixel_deg)
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("cog", [True, False])
def test_geotiff_writer_cog_or_tiled_with_overviews(rgba_tif: Path, tmp_path: Path, cog: bool) -> None:
    from rio_cogeo.cogeo import cog_validate

    big = tmp_path / "big.tif"
    with rasterio.open(rgba_tif) as src:
        profile = src.profile | {
            "width": 1300,
            "height": 1100,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
        }
        data = np.zeros((4, 1100, 1300), np.uint8)
        data[:, :200, :300] = src.read()
    with rasterio.open(big, "w", **profile) as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
        dst.write(data)
    out = write_geotiff(big, tmp_path / "out.tif", cog, "DEFLATE")
    with rasterio.open(out) as dst:
        assert dst.profile["tiled"] and dst.profile["blockxsize"] == 512
        assert dst.overviews(1) == [2, 4] and dst.colorinterp[3] == ColorInterp.alpha
        assert np.array_equal(dst.read(), data)
    if cog:  # --no-cog need not be a valid COG
        assert cog_validate(str(out))[0]
    assert overview_factors(1300, 1100) == [2, 4] and overview_factors(500, 300) == []


def test_colored_hillshade_is_the_same_in_blocks_and_transparent_at_nodata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    yy, xx = np.mgrid[0:90, 0:70].astype(np.float32)
    z = 100 + 0.2 * xx + 5 * np.exp(-((xx - 35) ** 2 + (yy - 45) ** 2) / 50)
    z[:10, :10] = -9999.0
    dem = tmp_path / "dsm.tif"
    with rasterio.open(
        dem, "w", driver="GTiff", width=70, height=90, count=1, dtype="float32", crs="EPSG:32632",
        transform=from_origin(WEST_M, NORTH_M, 0.5, 0.5), nodata=-9999.0,
    ) as dst:  # fmt: skip
        dst.write(z[None])

    def relief(block_rows: int, name: str) -> np.ndarray:
        monkeypatch.setattr(dem_relief, "BLOCK_ROWS", block_rows)
        with rasterio.open(dem_relief.write_colored_hillshade(dem, tmp_path / name)) as src:
            assert src.crs.to_epsg() == 32632 and src.transform == from_origin(WEST_M, NORTH_M, 0.5, 0.5)
            return src.read()

    whole, blocks = relief(1024, "whole.tif"), relief(7, "blocks.tif")
    assert np.array_equal(whole, blocks)
    assert (whole[3, :10, :10] == 0).all() and (whole[3, 10:, :] == 255).all()
    lit, shaded = whole[:3, 45, 30].astype(int).sum(), whole[:3, 45, 40].astype(int).sum()
    assert lit > shaded  # light from the north-west: the hill's west side is brighter than its east side


def test_shared_output_options_set_both_stages() -> None:
    opts = pipeline_options_from_odm({"tiles": "true", "cog": "false", "orthophoto-kmz": "true"})
    assert opts.odm_dem.tiles and opts.odm_orthophoto.tiles
    assert not opts.odm_dem.cog and not opts.odm_orthophoto.cog and opts.odm_orthophoto.orthophoto_kmz
    defaults = pipeline_options_from_odm({})
    assert defaults.odm_dem.cog and defaults.odm_orthophoto.cog and not defaults.odm_dem.tiles


def test_cli_sets_the_output_flags_of_both_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from odmflow import runner
    from odmflow.cli import app

    seen = []
    monkeypatch.setattr(runner, "run_pipeline", lambda target, options, verbose: seen.append(options))
    (tmp_path / "images").mkdir()
    args = ["run", str(tmp_path), "--tiles", "--no-cog", "--orthophoto-kmz"]
    assert CliRunner().invoke(app, args).exit_code == 0
    dem, ortho = seen[0].odm_dem, seen[0].odm_orthophoto
    assert dem.tiles and ortho.tiles and not dem.cog and not ortho.cog and ortho.orthophoto_kmz
    assert CliRunner().invoke(app, ["run", str(tmp_path)]).exit_code == 0
    assert seen[1].odm_dem.cog and seen[1].odm_orthophoto.cog and not seen[1].odm_orthophoto.tiles
