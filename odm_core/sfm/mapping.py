"""Incremental mapping: COLMAP's incremental pipeline with bundle adjustment, GPS positions as priors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pycolmap

from odm_core.errors import OdmStageError

Progress = Callable[[float, str], None]
GLOBAL_BA_GROWTH = 1.4
MAPPING_SEED = 0


def incremental_mapping(
    db: Path,
    images: Path,
    out: Path,
    use_priors: bool,
    n_photos: int,
    progress: Progress,
    hold_focal: bool = False,
) -> pycolmap.Reconstruction:
    """Incremental mapping with bundle adjustment; the largest model is kept. `hold_focal`: the focal
    lengths stay at the database's (EXIF) values (focal.py says why and frees them after).

    One thread and a fixed seed, so a run repeats: with COLMAP's random seed, or 2 threads, the 8-photo
    strip of ../shared/cases mapped to a worse model (0.172 against 0.147 px) in 1 to 2 runs of 8 from the
    same database; on Brighton one thread costs about 1 s (mapping 10.9-11.8 s against 9.5-10.8 s)."""
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = 1
    opts.random_seed = opts.mapper.random_seed = MAPPING_SEED
    opts.ba_refine_focal_length = opts.mapper.abs_pose_refine_focal_length = not hold_focal
    opts.use_prior_position = use_priors
    opts.use_robust_loss_on_prior_position = use_priors
    opts.min_model_size = min(opts.min_model_size, max(2, n_photos // 2))
    # a global bundle adjustment each time the model grew by 40% (COLMAP: 10%): on Brighton the same
    # 18 photos, points and 0.736 px, with a fifth less mapping CPU time (16.0 -> 12.9 s, one thread)
    opts.ba_global_frames_ratio = opts.ba_global_points_ratio = GLOBAL_BA_GROWTH
    # global adjustments skip points that add no coverage (COLMAP 3.12's pruning): the 300-photo
    # synthetic survey maps to the same model to 4 digits, its mapping peaking at 1,701 MiB, not 2,169
    opts.mapper.ba_global_ignore_redundant_points3D = True
    opts.extract_colors = False  # odm_core.sfm.colors does it from reduced photos, after the adjustments
    out.mkdir(parents=True, exist_ok=True)
    registered = [0]

    def on_next_image() -> None:
        registered[0] += 1
        progress(0.7 + 0.25 * min(registered[0] / n_photos, 1.0), f"registered {registered[0]} photos")

    models = pycolmap.incremental_mapping(db, images, out, opts, next_image_callback=on_next_image)
    if not models:
        raise OdmStageError(
            "structure from motion found no model: the photos share too few matching features "
            "(check overlap, or raise --min-num-features / --feature-quality)"
        )
    return max(models.values(), key=lambda r: r.num_reg_images())
