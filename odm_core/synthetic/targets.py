"""Ground targets of the synthetic survey: black-and-white checkered squares at surveyed positions.

A target's centre, where its four squares meet, is the surveyed point. Targets stand on open terrain
(away from buildings), spread over the nadir block by farthest-point order: the control points first (so
they reach the block's edges, as a surveyor places them), then the check points between them. Their
marks in the photos are the true projections plus Gaussian noise, written as ODM's gcp_list.txt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from odm_core.synthetic.landcover import GROUND_RES_M

GRID_CELLS = 8  # target centres on corners of 8 x 8 ground cells: symmetric in the first 3 mip levels
BORDER_M = 3.0  # clearance from building footprints


@dataclass(frozen=True)
class Target:
    """A surveyed target: centre (x, y, z) in the local frame, half its side (m), check point or not."""

    name: str
    x: float
    y: float
    z: float
    half_m: float
    check: bool

    @property
    def centre(self) -> np.ndarray:
        return np.array([self.x, self.y, self.z])


def target_half_m(gsd_m: float) -> float:
    """Half the side: about 7 GSD (a target some 14 px wide), whole ground cells."""
    return max(3, int(np.ceil(7 * gsd_m / GROUND_RES_M))) * GROUND_RES_M


def place_targets(
    rng: np.random.Generator,
    block: tuple[float, float, float, float],
    origin: tuple[float, float],
    free: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_controls: int,
    n_checks: int,
) -> list[tuple[str, float, float, bool]]:
    """(name, x, y, check) of the targets: candidates on the target grid inside the block's inner 60 %
    where `free(x, y)` (a callable over arrays) says the ground is open; farthest-point order."""
    step = GRID_CELLS * GROUND_RES_M
    mx, my = 0.2 * (block[2] - block[0]), 0.2 * (block[3] - block[1])
    xs = origin[0] + step * np.arange(
        np.ceil((block[0] + mx - origin[0]) / step), (block[2] - mx - origin[0]) / step
    )
    ys = origin[1] + step * np.arange(
        np.ceil((block[1] + my - origin[1]) / step), (block[3] - my - origin[1]) / step
    )
    gx, gy = np.meshgrid(xs, ys)
    cand = np.column_stack([gx.ravel(), gy.ravel()])
    cand = cand[free(cand[:, 0], cand[:, 1])]
    n = n_controls + n_checks
    if len(cand) < n:
        raise ValueError(f"only {len(cand)} open places for {n} targets; lower n_gcps/n_check_points")
    centre = np.array([(block[0] + block[2]) / 2, (block[1] + block[3]) / 2])
    chosen = [int(np.argmax(np.linalg.norm(cand - centre, axis=1) + rng.uniform(0, step, len(cand))))]
    dist = np.linalg.norm(cand - cand[chosen[0]], axis=1)
    while len(chosen) < n:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(cand - cand[nxt], axis=1))
    return [
        (f"CHK{k - n_controls + 1:02d}" if k >= n_controls else f"GCP{k + 1:02d}", *cand[i], k >= n_controls)
        for k, i in enumerate(chosen)
    ]


def paint_targets(
    rgb: np.ndarray, origin: tuple[float, float], targets: list[tuple[str, float, float, bool]], half_m: float
) -> None:
    """Paint each target into the ground albedo (rows x cols x 3, GROUND_RES_M cells from `origin`, row 0
    south): white where the cell's offsets from the centre have the same sign, black elsewhere."""
    half = int(round(half_m / GROUND_RES_M))
    for _, x, y, _ in targets:
        c0 = int(round((x - origin[0]) / GROUND_RES_M))
        r0 = int(round((y - origin[1]) / GROUND_RES_M))
        dr = np.arange(-half, half)[:, None] + 0.5
        dc = np.arange(-half, half)[None, :] + 0.5
        white = (dr > 0) == (dc > 0)
        rgb[r0 - half : r0 + half, c0 - half : c0 + half] = np.where(white[..., None], 0.92, 0.06)
