"""Split-merge: merging the submodels' DEMs and orthophotos on synthetic rasters (odm_core.split)."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import ndimage

from odm_core.dem.gridding import NODATA
from odm_core.errors import OdmStageError
from odm_core.split.colour import colour_gains
from odm_core.split.grid import merged_grid, plan_blocks
from odm_core.split.merge_dem import merge_dems
from odm_core.split.merge_ortho import merge_orthophotos
from odm_core.worker import serial_map

CRS = "EPSG:32633"
WEST, NORTH = 500_000.0, 4_600_000.0
DEM_RES = 0.5
ORTHO_RES = 0.2


def write_raster(
    path: Path, data: np.ndarray, west: float, north: float, res: float, crs: str = CRS, **extra: Any
) -> Path:
    """A (bands, rows, cols) array as a GeoTIFF with its top-left corner at (west, north)."""
    bands, rows, cols = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=cols,
        height=rows,
        count=bands,
        dtype=data.dtype,
        crs=crs,
        transform=Affine(res, 0, west, 0, -res, north),
        **extra,
    ) as dst:
        dst.write(data)
    return path


def read(path: Path) -> tuple[np.ndarray, Affine]:
    with rasterio.open(path) as src:
        return src.read(), src.transform


# --- DEM -----------------------------------------------------------------------------------------

DEM_SHAPE = (300, 300)  # rows, cols of each DEM
DEM_SHIFT = (7, 200)  # the second DEM's pixel (0, 0) in the first's grid: 100 columns overlap


def plane(rows: int, cols: int, west: float, north: float, offset: float) -> np.ndarray:
    """(1, rows, cols) float32 z = 0.03 x - 0.02 y + c at the cell centres (local metres)."""
    x = (np.arange(cols) + 0.5) * DEM_RES + west - WEST
    y = north - NORTH - (np.arange(rows) + 0.5) * DEM_RES
    return (0.03 * x[None, :] - 0.02 * y[:, None] + 120.0 + offset).astype(np.float32)[None]


@pytest.fixture
def dems(tmp_path: Path) -> tuple[Path, Path]:
    """Two DEMs of one plane, the second 0.2 m higher and shifted by whole pixels (7 rows, 200 cols)."""
    west2, north2 = WEST + DEM_SHIFT[1] * DEM_RES, NORTH - DEM_SHIFT[0] * DEM_RES
    one = write_raster(
        tmp_path / "dsm1.tif", plane(*DEM_SHAPE, WEST, NORTH, 0.0), WEST, NORTH, DEM_RES, nodata=NODATA
    )
    two = write_raster(
        tmp_path / "dsm2.tif", plane(*DEM_SHAPE, west2, north2, 0.2), west2, north2, DEM_RES, nodata=NODATA
    )
    return one, two


def test_dem_merge_fades_across_the_overlap(dems: tuple[Path, Path], tmp_path: Path) -> None:
    """Union of bounds; each DEM unchanged where it is alone; across the overlap the merge moves
    monotonically from one to the other in small steps; nodata only where neither has data."""
    out = merge_dems(dems, tmp_path / "out" / "dsm.tif", serial_map)
    merged, transform = read(out)
    merged = merged[0]
    (r2, c2), (h, w) = DEM_SHIFT, DEM_SHAPE
    assert merged.shape == (r2 + h, c2 + w)
    assert transform == Affine(DEM_RES, 0, WEST, 0, -DEM_RES, NORTH)
    one = np.full(merged.shape, np.nan, np.float32)
    two = one.copy()
    one[:h, :w] = read(dems[0])[0][0]
    two[r2:, c2:] = read(dems[1])[0][0]
    only_one, only_two = np.isfinite(one) & np.isnan(two), np.isnan(one) & np.isfinite(two)
    assert np.array_equal(merged[only_one], one[only_one])
    assert np.array_equal(merged[only_two], two[only_two])
    neither = np.isnan(one) & np.isnan(two)
    assert neither.any() and np.array_equal(merged == NODATA, neither)
    # rows far from the DEMs' top and bottom edges: the overlap's columns c2 .. w - 1
    rows = slice(100, 200)
    share = (merged[rows, c2 - 1 : w + 1] - one[rows, c2 - 1 : w + 1].astype(np.float64)) / 0.2
    share[:, -1] = (merged[rows, w] - two[rows, w] + 0.2) / 0.2  # one has no data there
    assert np.allclose(share[:, 0], 0) and np.allclose(share[:, -1], 1, atol=1e-5)
    steps = np.diff(share, axis=1)
    assert steps.min() > -1e-4, "the fade goes back"
    assert steps.max() * 0.2 <= 0.2 / 20, f"a step of {steps.max() * 0.2:.4f} m"
    assert ((share[:, 1:-1] > 0.01) & (share[:, 1:-1] < 0.99)).mean() > 0.9


def test_dem_blocks_give_the_same_raster_bit_for_bit(dems: tuple[Path, Path], tmp_path: Path) -> None:
    """64 px blocks, in batches of 3 blocks, give what one block does; the mapper never gets more
    than a batch, and each block only the sources it intersects."""
    calls: list[int] = []

    def recording_map(fn: Callable[[Any], Any], units: Iterable[Any]) -> list[Any]:
        units = list(units)
        calls.append(len(units))
        return serial_map(fn, units)

    small = merge_dems(
        dems, tmp_path / "a" / "dsm.tif", recording_map, cog=False, block_px=64, batch_px=3 * 64 * 64
    )
    whole = merge_dems(dems, tmp_path / "b" / "dsm.tif", serial_map, block_px=4096)
    assert np.array_equal(read(small)[0], read(whole)[0])
    assert max(calls) <= 3 and len(calls) > 10
    blocks = plan_blocks(merged_grid(dems), 64)
    assert sum(calls) == len(blocks) and {len(b.sources) for b in blocks} == {1, 2}


# --- orthophoto ----------------------------------------------------------------------------------

SCENE = (200, 500)  # rows, cols of the merged orthophoto: 40 m x 100 m
SPLIT = (300, 200)  # the first source's last column + 1, the second's first: 20 m overlap
GAIN = 1.2


def scene() -> np.ndarray:
    """(3, rows, cols) float: a smooth random texture, 60 .. 170 grey levels."""
    rng = np.random.default_rng(7)
    noise = ndimage.gaussian_filter(rng.normal(size=(3, *SCENE)), sigma=(0, 6, 6))
    lo, hi = noise.min(axis=(1, 2), keepdims=True), noise.max(axis=(1, 2), keepdims=True)
    return 60 + 110 * (noise - lo) / (hi - lo)


def cores(x0: float) -> np.ndarray:
    """(20, 2) core photo positions: x = x0 + 0, 10, .., 40 m, y = 5, 15, 25, 35 m south of NORTH."""
    x, y = np.meshgrid(WEST + x0 + np.arange(0, 50, 10), NORTH - 5 - np.arange(0, 40, 10))
    return np.column_stack([x.ravel(), y.ravel()])


CORES = (cores(5.0), cores(55.0))  # the cutline is x = 50 m, the overlap's middle (column 250)


def write_orthos(folder: Path, colour: np.ndarray, gain: float) -> tuple[Path, Path]:
    """The scene's columns :300 as the first RGBA orthophoto, 200: times `gain` as the second; the first
    transparent in rows :20, columns :50, the second in rows :20, columns 200:230."""
    folder.mkdir(parents=True, exist_ok=True)
    alpha = np.full((1, *SCENE), 255.0)
    one = np.concatenate([colour, alpha])[:, :, : SPLIT[0]].copy()
    two = np.concatenate([colour * gain, alpha])[:, :, SPLIT[1] :].copy()
    one[:, :20, :50] = 0
    two[:, :20, :30] = 0
    rgba = [np.clip(np.rint(a), 0, 255).astype(np.uint8) for a in (one, two)]
    west2 = WEST + SPLIT[1] * ORTHO_RES
    return (
        write_raster(folder / "ortho1.tif", rgba[0], WEST, NORTH, ORTHO_RES, photometric="RGB"),
        write_raster(folder / "ortho2.tif", rgba[1], west2, NORTH, ORTHO_RES, photometric="RGB"),
    )


def on_grid(path: Path, col: int) -> np.ndarray:
    """(4, rows, cols) float of a source placed on the merged grid at column `col` (0 elsewhere)."""
    data = read(path)[0].astype(float)
    out = np.zeros((4, *SCENE))
    out[:, :, col : col + data.shape[2]] = data
    return out


def test_ortho_merge_balances_colour_and_hides_the_seam(tmp_path: Path) -> None:
    """Gains even out the 20% brighter source; each source, after its gain, is alone deep inside its
    own Voronoi cell; no brightness step at the cutline; alpha is the union."""
    srcs = write_orthos(tmp_path / "in", scene(), GAIN)
    gains = colour_gains(srcs)
    assert gains.shape == (2, 3) and np.all(gains[1] < 1) and np.all(gains[0] > 1)
    one, two = on_grid(srcs[0], 0), on_grid(srcs[1], SPLIT[1])
    overlap = (one[3] > 0) & (two[3] > 0)
    m1 = (one[:3, overlap] * gains[0][:, None]).mean(axis=1)
    m2 = (two[:3, overlap] * gains[1][:, None]).mean(axis=1)
    assert np.all(np.abs(m1 / m2 - 1) < 0.02), (m1, m2)
    assert np.allclose(gains.prod(axis=0), 1, atol=0.01)  # the average brightness stays
    merged = read(merge_orthophotos(srcs, CORES, tmp_path / "out" / "ortho.tif", serial_map, feather_m=2.0))[
        0
    ]
    assert merged.shape == (4, *SCENE) and merged.dtype == np.uint8
    assert np.array_equal(merged[3] == 255, (one[3] > 0) | (two[3] > 0))
    assert np.array_equal(merged[3] == 0, (one[3] == 0) & (two[3] == 0)) and (merged[3] == 0).any()
    expect1 = np.clip(np.rint(one[:3] * gains[0][:, None, None]), 0, 255)
    expect2 = np.clip(np.rint(two[:3] * gains[1][:, None, None]), 0, 255)
    cell1 = (one[3] > 0) & (np.arange(SCENE[1]) < 240)  # >= 1 m (feather / 2) from the cutline
    cell2 = (two[3] > 0) & (np.arange(SCENE[1]) >= 260)
    assert np.abs(merged[:3] - expect1)[:, cell1].max() <= 1
    assert np.abs(merged[:3] - expect1)[:, cell1].mean() < 0.01
    assert np.abs(merged[:3] - expect2)[:, cell2].max() <= 1
    # the seam: adjacent columns differ no more there than elsewhere, and both corrected sources agree
    rows = slice(20, None)
    steps = np.abs(np.diff(merged[:3, rows].astype(float), axis=2)).mean(axis=(0, 1))
    elsewhere = np.r_[steps[20:230], steps[270:480]].max()  # the texture's own steepest columns
    assert steps[240:260].max() <= 1.1 * elsewhere, (steps[240:260], elsewhere)
    band = slice(240, 260)
    assert np.abs(merged[:3, rows, band] - expect1[:, rows, band]).max() <= 3


def test_ortho_feathers_across_the_cutline(tmp_path: Path) -> None:
    """Flat grey 100 and 140 with no colour balance: alone beyond feather / 2 of the cutline, a
    monotonic ramp of small steps across it (no hard cut)."""
    srcs = write_orthos(tmp_path / "in", np.full((3, *SCENE), 100.0), 1.4)
    out = merge_orthophotos(srcs, CORES, tmp_path / "ortho.tif", serial_map, 2.0, gains=np.ones((2, 3)))
    grey = read(out)[0][0].astype(int)
    row = grey[SCENE[0] // 2 + 25]  # the row of a core photo: the cutline crossed at right angles
    assert np.all(row[:245] == 100) and np.all(row[255:] == 140)
    steps = np.diff(row)
    assert steps.min() >= 0 and steps.max() <= 10, row[240:260]
    assert ((row > 100) & (row < 140)).sum() >= 6


def pickling_map(fn: Callable[[Any], Any], units: Iterable[Any]) -> list[Any]:
    """serial_map with the function and every unit pickled, as a Dask map sends them; a unit is
    small (paths, core positions and gains: no image data)."""
    sent = [pickle.dumps(u) for u in units]
    assert max(len(s) for s in sent) < 16_000
    return serial_map(pickle.loads(pickle.dumps(fn)), [pickle.loads(s) for s in sent])


def test_ortho_blocks_match_one_block(tmp_path: Path) -> None:
    """64 px blocks, pickled as for Dask, give what one block does, within one grey level."""
    srcs = write_orthos(tmp_path / "in", scene(), GAIN)
    small = merge_orthophotos(
        srcs, CORES, tmp_path / "a" / "o.tif", pickling_map, 2.0, block_px=64, batch_px=5 * 64 * 64
    )
    whole = merge_orthophotos(
        srcs, CORES, tmp_path / "b" / "o.tif", serial_map, 2.0, cog=False, block_px=4096
    )
    a, b = read(small)[0].astype(int), read(whole)[0].astype(int)
    assert np.abs(a - b).max() <= 1 and np.array_equal(a[3], b[3])


# --- grids and failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("res", "shift_px", "crs", "what"),
    [
        (DEM_RES * 1.01, 0.0, CRS, "pixel size"),
        (DEM_RES, 0.5, CRS, "whole number of pixels"),
        (DEM_RES, 0.0, "EPSG:32634", "CRS"),
    ],
)
def test_grid_mismatch_names_the_file(
    dems: tuple[Path, Path], tmp_path: Path, res: float, shift_px: float, crs: str, what: str
) -> None:
    west = WEST + (100 + shift_px) * DEM_RES
    bad = write_raster(
        tmp_path / "odd.tif", plane(50, 50, west, NORTH, 0.0), west, NORTH, res, crs, nodata=NODATA
    )
    with pytest.raises(OdmStageError, match="odd.tif") as err:
        merged_grid([dems[0], bad])
    assert what in str(err.value) and "same resolution and grid" in str(err.value)
    grid = merged_grid([dems[1], dems[0]])  # whole-pixel offsets are fine, in either order
    assert (grid.west, grid.north, grid.height, grid.width) == (WEST, NORTH, 307, 500)
    assert [(s.row, s.col) for s in grid.sources] == [DEM_SHIFT, (0, 0)]
    out = tmp_path / "out" / "dsm.tif"
    with pytest.raises(OdmStageError, match="odd.tif"):
        merge_dems([dems[0], bad], out, serial_map)
    assert not out.exists()


@pytest.mark.parametrize("product", ["dem", "ortho"])
def test_an_error_mid_merge_leaves_nothing(dems: tuple[Path, Path], tmp_path: Path, product: str) -> None:
    """The mapper fails on its third batch: no file at `out`, no staging left beside it."""
    calls = []

    def failing_map(fn: Callable[[Any], Any], units: Iterable[Any]) -> list[Any]:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("worker lost")
        return serial_map(fn, units)

    out = tmp_path / "out" / "merged.tif"
    with pytest.raises(RuntimeError, match="worker lost"):
        if product == "dem":
            merge_dems(dems, out, failing_map, block_px=64, batch_px=64 * 64)
        else:
            srcs = write_orthos(tmp_path / "in", scene(), GAIN)
            merge_orthophotos(srcs, CORES, out, failing_map, block_px=64, batch_px=64 * 64)
    assert len(calls) == 3 and not out.exists() and list(out.parent.iterdir()) == []


def test_only_the_dems_every_submodels_last_run_made_are_merged(tmp_path: Path) -> None:
    """A dtm.tif left in a submodel by an earlier run with --dtm is not its product now: the merge takes
    the DEMs each submodel's odm_dem manifest lists, not whatever files lie there."""
    from odm_core.artifacts import write_manifest, write_text
    from odm_core.layout import ProjectTree
    from odm_core.stages.merge import dem_kinds

    trees = [ProjectTree(tmp_path / name) for name in ("submodel_0000", "submodel_0001")]
    assert dem_kinds(trees) == []  # no odm_dem run finished
    for t in trees:
        made = [write_text(t.dem_tif(kind), kind) for kind in ("dsm", "dtm")]
        write_manifest(t.manifest("odm_dem"), "odm_dem", "fp", made, t.root)
    assert dem_kinds(trees) == ["dsm", "dtm"]
    write_manifest(trees[1].manifest("odm_dem"), "odm_dem", "fp", [trees[1].dem_tif("dsm")], trees[1].root)
    assert trees[1].dem_tif("dtm").is_file()  # stale, from the earlier run
    assert dem_kinds(trees) == ["dsm"]
