"""Textures: mip-mapped rasters sampled trilinearly (footprint-filtered) and their seeded synthesis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft


@dataclass(frozen=True, eq=False)
class Pyramid:
    """A raster and its 2x2-averaged levels, placed in the plane; `wrap` repeats it periodically.

    Level-0 cell (row r, col c) covers u in [c, c+1) * res_m and v in [r, r+1) * res_m, where
    (u, v) are the plane coordinates minus `origin`, rotated by -angle_rad.
    """

    flat: np.ndarray  # all levels concatenated row-major, (sum of cells, channels) float32
    shapes: np.ndarray  # (levels, 2) rows, cols
    offsets: np.ndarray  # (levels,) first row of each level in `flat`
    res_m: float
    origin: tuple[float, float]
    angle_rad: float
    wrap: bool

    @classmethod
    def build(
        cls,
        base: np.ndarray,
        res_m: float,
        origin: tuple[float, float] = (0.0, 0.0),
        angle_rad: float = 0.0,
        wrap: bool = False,
    ) -> Pyramid:
        level = base.reshape(base.shape[0], base.shape[1], -1).astype(np.float32)
        levels = [level]
        while min(level.shape[:2]) >= 8:
            if level.shape[0] % 2 or level.shape[1] % 2:
                level = np.pad(level, ((0, level.shape[0] % 2), (0, level.shape[1] % 2), (0, 0)), "edge")
            level = 0.25 * (level[::2, ::2] + level[1::2, ::2] + level[::2, 1::2] + level[1::2, 1::2])
            levels.append(level)
        shapes = np.array([lv.shape[:2] for lv in levels], dtype=np.int64)
        sizes = shapes[:, 0] * shapes[:, 1]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        flat = np.concatenate([lv.reshape(-1, lv.shape[2]) for lv in levels])
        return cls(flat, shapes, offsets, res_m, origin, angle_rad, wrap)

    def sample(self, x: np.ndarray, y: np.ndarray, footprint_m: np.ndarray | float) -> np.ndarray:
        """Trilinear sample (N x channels) at plane points, filtered to the footprint size."""
        c, s = np.cos(self.angle_rad), np.sin(self.angle_rad)
        dx, dy = x - self.origin[0], y - self.origin[1]
        u, v = c * dx + s * dy, -s * dx + c * dy
        lod = np.log2(np.maximum(np.broadcast_to(footprint_m, x.shape), 1e-9) / self.res_m)
        lod = np.clip(lod, 0.0, len(self.shapes) - 1.0)
        l0 = np.floor(lod).astype(np.int64)
        l1 = np.minimum(l0 + 1, len(self.shapes) - 1)
        w = (lod - l0).astype(np.float32)[:, None]
        a = self._bilinear(u, v, l0)
        b = self._bilinear(u, v, l1)
        return a + (b - a) * w

    def _bilinear(self, u: np.ndarray, v: np.ndarray, lvl: np.ndarray) -> np.ndarray:
        cell = self.res_m * np.exp2(lvl)
        rows, cols = self.shapes[lvl, 0], self.shapes[lvl, 1]
        ci, ri = u / cell - 0.5, v / cell - 0.5
        c0, r0 = np.floor(ci), np.floor(ri)
        fc = (ci - c0).astype(np.float32)[:, None]
        fr = (ri - r0).astype(np.float32)[:, None]
        c0, r0 = c0.astype(np.int64), r0.astype(np.int64)
        if self.wrap:
            c0, r0 = c0 % cols, r0 % rows
            c1, r1 = (c0 + 1) % cols, (r0 + 1) % rows
        else:
            c1, r1 = np.clip(c0 + 1, 0, cols - 1), np.clip(r0 + 1, 0, rows - 1)
            c0, r0 = np.clip(c0, 0, cols - 1), np.clip(r0, 0, rows - 1)
        base = self.offsets[lvl]
        top = self.flat[base + r0 * cols + c0] * (1 - fc) + self.flat[base + r0 * cols + c1] * fc
        bot = self.flat[base + r1 * cols + c0] * (1 - fc) + self.flat[base + r1 * cols + c1] * fc
        return top + (bot - top) * fr


def _freq(shape: tuple[int, int]) -> np.ndarray:
    """Radial frequency (cycles per cell) of an rfft2 spectrum."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    return np.hypot(fx, fy)


def band_noise(
    rng: np.random.Generator, shape: tuple[int, int], min_wavelength: float, max_wavelength: float
) -> np.ndarray:
    """Periodic 1/f noise with wavelengths (in cells) between the two bounds, unit std."""
    white = rng.standard_normal(shape).astype(np.float32)
    f = _freq(shape)
    lo, hi = 1.0 / max_wavelength, 1.0 / min_wavelength
    soft = np.clip((f - lo * 0.5) / (lo * 0.5), 0, 1) * np.clip((hi * 1.5 - f) / (hi * 0.5), 0, 1)
    gain = soft / np.maximum(f, lo * 0.5)
    out = scipy.fft.irfft2(scipy.fft.rfft2(white) * gain, s=shape).astype(np.float32)
    return out / max(float(out.std()), 1e-12)


def _disc_kernel(shape: tuple[int, int], radius: float) -> np.ndarray:
    """Soft-edged disc of the given radius (cells) centred on cell (0, 0), periodic."""
    dy = np.minimum(np.arange(shape[0]), shape[0] - np.arange(shape[0]))[:, None]
    dx = np.minimum(np.arange(shape[1]), shape[1] - np.arange(shape[1]))[None, :]
    d = np.hypot(dx, dy)
    return np.clip(radius + 0.5 - d, 0.0, 1.0).astype(np.float32)


def blob_field(
    rng: np.random.Generator, shape: tuple[int, int], radius: float, coverage: float
) -> np.ndarray:
    """Periodic field of soft discs with random signed amplitudes (stones, tufts) covering ~coverage."""
    count = int(coverage * shape[0] * shape[1] / (np.pi * radius**2))
    impulses = np.zeros(shape, np.float32)
    rows, cols = rng.integers(0, shape[0], count), rng.integers(0, shape[1], count)
    amps = rng.choice([-1.0, 1.0], count) * rng.uniform(0.4, 1.0, count)
    np.add.at(impulses, (rows, cols), amps.astype(np.float32))
    spec = scipy.fft.rfft2(impulses) * scipy.fft.rfft2(_disc_kernel(shape, radius))
    return scipy.fft.irfft2(spec, s=shape).astype(np.float32)


def detail_tile(rng: np.random.Generator, size: int = 2048) -> np.ndarray:
    """Periodic brightness modulation (mean ~1): multi-octave noise plus stones of three sizes."""
    shape = (size, size)
    m = 0.14 * band_noise(rng, shape, 3.0, size / 4)
    for radius, amp in ((2.5, 0.30), (5.0, 0.25), (10.0, 0.18)):
        m += amp * blob_field(rng, shape, radius, 0.06)
    return np.clip(1.0 + m, 0.3, 1.8)
