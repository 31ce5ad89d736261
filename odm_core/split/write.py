"""The one writer of a merged raster: block results into a staging GeoTIFF, batch by batch, then the
atomic COG (or tiled GeoTIFF) copy of odm_core.raster.geotiff.write_geotiff."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio

from odm_core.raster.geotiff import write_geotiff
from odm_core.worker import MapUnits

BATCH_PX = 2**26  # pixels of block results the writer holds at once (64 blocks of 1024 x 1024)


class BlockUnit(Protocol):
    """What the writer needs of a unit: where its result goes in the merged grid."""

    @property
    def window(self) -> rasterio.windows.Window: ...

    @property
    def pixels(self) -> int: ...


def batches(units: Sequence[BlockUnit], batch_px: int) -> Iterator[list[BlockUnit]]:
    """Consecutive runs of units of at most batch_px pixels together (at least one unit each)."""
    batch: list[BlockUnit] = []
    size = 0
    for unit in units:
        if batch and size + unit.pixels > batch_px:
            yield batch
            batch, size = [], 0
        batch.append(unit)
        size += unit.pixels
    if batch:
        yield batch


def write_merged(
    units: Sequence[BlockUnit],
    fn: Callable[[Any], np.ndarray],
    map_units: MapUnits,
    profile: dict[str, object],
    out: Path,
    *,
    cog: bool,
    compress: str,
    predictor: bool,
    batch_px: int = BATCH_PX,
    colorinterp: Sequence[object] | None = None,
) -> Path:
    """Map `fn` over the units a batch at a time and write each (bands, rows, cols) result at its
    unit's window into a staging GeoTIFF of `profile` (cells no unit covers keep the profile's
    nodata, or 0); then copy it to `out` atomically with write_geotiff. The writer holds one batch
    of results (batch_px pixels), never the whole raster. On any error nothing is left at `out` (if it
    was not there before) nor beside it: the staging folder is removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.merge.", suffix=".part", dir=out.parent))
    try:
        staging = work / "staging.tif"
        with rasterio.open(staging, "w", **profile) as dst:
            if colorinterp is not None:
                dst.colorinterp = colorinterp
            for batch in batches(units, batch_px):
                results = map_units(fn, batch)
                for unit, data in zip(batch, results, strict=True):
                    dst.write(data, window=unit.window)
                del results
        return write_geotiff(staging, out, cog, compress, predictor)
    finally:
        shutil.rmtree(work, ignore_errors=True)
