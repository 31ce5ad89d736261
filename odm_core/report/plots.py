"""The quality report's plots, drawn with matplotlib (Agg) into PNG files: error vectors, features and
matches per photo, track lengths, camera residual heat maps, the overlap map and raster previews with a
scale bar. Each function takes figures already computed by the stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from rasterio.enums import Resampling  # noqa: E402

PREVIEW_PX = 1200  # longer side of a raster preview
DPI = 150


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def error_vectors(residuals: dict[str, list[float]], title: str, path: Path) -> Path:
    """Horizontal error vectors (arrows from the origin) and the vertical errors, one point per item."""
    names = list(residuals)
    err = np.array([residuals[n] for n in names], dtype=float)
    fig, (top, side) = plt.subplots(1, 2, figsize=(8, 3.4), gridspec_kw={"width_ratios": [1, 1.4]})
    top.axhline(0, color="0.8", lw=0.8)
    top.axvline(0, color="0.8", lw=0.8)
    top.scatter(err[:, 0], err[:, 1], s=14, color="tab:blue")
    reach = max(float(np.nanmax(np.abs(err[:, :2]))), 1e-3) * 1.15
    top.set(
        xlim=(-reach, reach), ylim=(-reach, reach), xlabel="x error (m)", ylabel="y error (m)", aspect="equal"
    )
    top.set_title(f"{title}: horizontal", fontsize=9)
    z = np.nan_to_num(err[:, 2])
    side.bar(range(len(names)), z, color=np.where(z >= 0, "tab:red", "tab:blue"))
    side.axhline(0, color="0.5", lw=0.8)
    side.set_xticks(
        range(len(names)), names if len(names) <= 30 else [""] * len(names), rotation=90, fontsize=6
    )
    side.set(ylabel="z error (m)")
    side.set_title(f"{title}: vertical", fontsize=9)
    return _save(fig, path)


def per_photo(photo_stats: dict[str, dict[str, int]], path: Path) -> Path:
    """Detected and reconstructed features per photo, and the verified matches."""
    names = sorted(photo_stats)
    idx = np.arange(len(names))
    fig, (feat, match) = plt.subplots(2, 1, figsize=(8, 4.6), sharex=True)
    feat.bar(idx, [photo_stats[n]["detected"] for n in names], color="0.75", label="detected")
    feat.bar(
        idx,
        [photo_stats[n]["reconstructed"] for n in names],
        color="tab:green",
        label="in the reconstruction",
    )
    feat.set(ylabel="features")
    feat.legend(fontsize=7, loc="lower right")
    match.bar(idx, [photo_stats[n]["matches"] for n in names], color="tab:blue")
    match.set(ylabel="verified matches")
    match.set_xticks(idx, names if len(names) <= 40 else [""] * len(names), rotation=90, fontsize=5)
    return _save(fig, path)


def track_lengths(histogram: dict[str, int], path: Path) -> Path:
    """How many tie points each number of photos sees."""
    lengths = [int(k) for k in histogram]
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.bar(lengths, list(histogram.values()), color="tab:purple")
    ax.set(xlabel="track length (photos seeing the point)", ylabel="tie points")
    return _save(fig, path)


def residual_heatmap(grid: dict[str, Any], path: Path) -> Path:
    """A camera's mean residual over its image: magnitude as colour, direction as arrows (px)."""
    dx, dy = np.array(grid["dx_px"]), np.array(grid["dy_px"])
    magnitude = np.hypot(dx, dy)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    shown = ax.imshow(magnitude, cmap="viridis", origin="upper", vmin=0)
    rows, cols = magnitude.shape
    xx, yy = np.meshgrid(np.arange(cols), np.arange(rows))
    scale = max(float(magnitude.max()), 1e-6) * 1.5
    ax.quiver(xx, yy, dx, dy, color="white", angles="xy", scale_units="xy", scale=scale)
    ax.set(xticks=[], yticks=[])
    ax.set_title(grid["camera"], fontsize=9)
    fig.colorbar(shown, ax=ax, label="mean residual (px)")
    return _save(fig, path)


def overlap_map(overlap: dict[str, Any], path: Path) -> Path:
    """Photos seeing each ground cell."""
    counts = np.array(overlap["counts"], dtype=float)
    counts[counts == 0] = np.nan
    fig, ax = plt.subplots(figsize=(6, 5))
    cell = overlap["cell_m"]
    extent = (0, counts.shape[1] * cell, 0, counts.shape[0] * cell)
    shown = ax.imshow(counts, cmap="RdYlGn", vmin=1, vmax=max(5, np.nanmax(counts)), extent=extent)
    ax.set(xlabel="m", ylabel="m")
    fig.colorbar(shown, ax=ax, label="photos seeing the cell")
    return _save(fig, path)


def raster_preview(raster: Path, kind: str, path: Path) -> Path:
    """The orthophoto (RGB) or a DEM (colour ramp over hillshade) with a scale bar, from the overviews."""
    with rasterio.open(raster) as src:
        factor = max(1, int(np.ceil(max(src.width, src.height) / PREVIEW_PX)))
        shape = (max(1, src.height // factor), max(1, src.width // factor))
        data = src.read(out_shape=(src.count, *shape), resampling=Resampling.average, masked=True)
        cell_m = src.res[0] * src.width / shape[1]
    fig, ax = plt.subplots(figsize=(7, 7 * shape[0] / shape[1]))
    if kind == "orthophoto":
        rgb = np.moveaxis(np.asarray(data[:3].filled(255)), 0, -1).astype(np.uint8)
        if data.shape[0] == 4:
            rgb[np.asarray(data[3].filled(0)) == 0] = 255
        ax.imshow(rgb)
    else:
        band = data[0]
        shown = ax.imshow(band, cmap="terrain")
        fig.colorbar(shown, ax=ax, label=f"{kind.upper()} height (m)", shrink=0.7)
    _scale_bar(ax, cell_m, shape[1])
    ax.set(xticks=[], yticks=[])
    return _save(fig, path)


def _scale_bar(ax: Any, cell_m: float, width_px: int) -> None:
    """A bar of a round length, about a fifth of the image wide, in the lower left corner."""
    target = width_px * cell_m / 5
    length = float(10 ** np.floor(np.log10(target)))
    for step in (5, 2):
        if length * step <= target:
            length *= step
            break
    px = length / cell_m
    y = ax.get_ylim()[0] * 0.95
    ax.plot([width_px * 0.04, width_px * 0.04 + px], [y, y], color="black", lw=4, solid_capstyle="butt")
    label = f"{length:g} m" if length < 1000 else f"{length / 1000:g} km"
    ax.text(width_px * 0.04 + px / 2, y * 0.97, label, ha="center", va="bottom", fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.7, "lw": 0})  # fmt: skip
