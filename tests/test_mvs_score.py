"""Multi-view photo-consistency picks the candidate depth the partners' photos agree with."""

from __future__ import annotations

import cv2
import numpy as np

from odm_core.camera.view import ViewCamera
from odm_core.dense.depthmap import best_supported, consensus
from odm_core.dense.score import photo_score

HEIGHT_M = 40.0
NOISE = np.random.default_rng(1).uniform(0, 255, (800, 800)).astype(np.float32)
TEXTURE = cv2.GaussianBlur(NOISE, (0, 0), 0.8)
TEXTURE_M_PER_PX = 0.1  # the ground texture covers 80 x 80 m around the origin


def nadir_view(index: int, x_m: float) -> ViewCamera:
    """A camera HEIGHT_M above the ground (z = 0) at (x_m, 0), looking straight down."""
    rotation = np.diag([1.0, -1.0, -1.0])
    translation = -rotation @ np.array([x_m, 0.0, HEIGHT_M])
    pose = np.hstack([rotation, translation[:, None]])
    return ViewCamera(
        index, f"v{index}", "", "PINHOLE", (300.0, 300.0, 160.0, 120.0), 320, 240,
        tuple(pose.ravel()), 320, 240, 300.0, 20.0, 80.0,
    )  # fmt: skip


def render(view: ViewCamera) -> np.ndarray:
    """The ground texture as the view sees it (grey, float32)."""
    ground = view.world_points(np.full((view.dm_height, view.dm_width), HEIGHT_M))
    map_x = (ground[..., 0] / TEXTURE_M_PER_PX + 400).astype(np.float32)
    map_y = (ground[..., 1] / TEXTURE_M_PER_PX + 400).astype(np.float32)
    return cv2.remap(TEXTURE, map_x, map_y, cv2.INTER_LINEAR)


def test_photo_consistency_outvotes_a_wrong_majority() -> None:
    ref, left, right = nadir_view(0, 0.0), nadir_view(1, -8.0), nadir_view(2, 8.0)
    partners = [(left, render(left)), (right, render(right))]
    shape = (ref.dm_height, ref.dm_width)
    truth = np.full(shape, HEIGHT_M, np.float32)
    wrong = [np.full(shape, 1.5 * HEIGHT_M, np.float32), np.full(shape, 1.52 * HEIGHT_M, np.float32)]
    estimates = [*wrong, truth, wrong[0] * 1.001]
    scores = [photo_score(ref, render(ref), d, partners) for d in estimates]

    depth, support = best_supported(estimates, scores, shape)

    inner = (slice(20, -20), slice(40, -40))
    assert np.mean(np.abs(depth[inner] - HEIGHT_M) < 0.01) > 0.95
    assert np.all(support[inner][depth[inner] > 0] == 1)
    voted, _ = consensus(estimates, shape, min_support=1)  # the median vote follows the majority
    assert np.mean(np.abs(voted[inner] - HEIGHT_M) < 0.01) < 0.05


def test_candidates_the_partner_sees_but_contradicts_are_dropped() -> None:
    ref, right = nadir_view(0, 0.0), nadir_view(2, 8.0)
    shape = (ref.dm_height, ref.dm_width)
    wrong = np.full(shape, 1.5 * HEIGHT_M, np.float32)
    score = photo_score(ref, render(ref), wrong, [(right, render(right))])

    depth, _ = best_supported([wrong], [score], shape)

    seen = np.isfinite(score)  # the partner sees the wrong points (elsewhere none can judge them)
    assert seen.mean() > 0.5
    assert np.mean(depth[seen] > 0) < 0.05
