"""Rendering a photo: one ray per (distorted) pixel centre, then gain, vignetting, blur and noise."""

from __future__ import annotations

import cv2
import numpy as np

from odm_core.synthetic.camera import CameraPose, Intrinsics, image_rays
from odm_core.synthetic.raycast import cast_rays
from odm_core.synthetic.scene import Scene
from odm_core.synthetic.surface import pixel_footprint_m, surface_colour

CHUNK_RAYS = 1 << 17
PSF_SIGMA_PX = 0.5  # the lens and sensor blur (also softens geometric aliasing)
TEXTURE_SHARPEN = 0.75  # texture filter width per pixel footprint (< 1: a little crisper)


def render_radiance(scene: Scene, pose: CameraPose, intr: Intrinsics) -> np.ndarray:
    """Surface colour seen by each pixel (H x W x 3 float32), no camera effects."""
    rays = image_rays(intr)
    out = np.empty((len(rays), 3), np.float32)
    for start in range(0, len(rays), CHUNK_RAYS):
        cam_rays = rays[start : start + CHUNK_RAYS]
        dirs = pose.rays_world(cam_rays)
        hits = cast_rays(scene, pose.centre, dirs)
        fp = TEXTURE_SHARPEN * pixel_footprint_m(hits, dirs, cam_rays[:, 2], intr.focal_px)
        out[start : start + len(dirs)] = surface_colour(scene, hits, fp)
    return out.reshape(intr.height, intr.width, 3)


def camera_effects(
    radiance: np.ndarray, intr: Intrinsics, rng: np.random.Generator, exposure_sigma: float, noise_dn: float
) -> np.ndarray:
    """8-bit photo: per-photo gain and white balance, mild vignetting, lens blur, sensor noise."""
    gain = (1.0 + exposure_sigma * rng.standard_normal()) * (1.0 + 0.01 * rng.standard_normal(3))
    cos_axis = image_rays(intr)[:, 2].reshape(intr.height, intr.width)
    vignette = (0.8 + 0.2 * cos_axis**4).astype(np.float32)
    img = radiance * (gain.astype(np.float32) * 255.0) * vignette[..., None]
    img = cv2.GaussianBlur(img, (0, 0), PSF_SIGMA_PX)
    img += (noise_dn * rng.standard_normal(img.shape)).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_photo(
    scene: Scene,
    pose: CameraPose,
    intr: Intrinsics,
    rng: np.random.Generator,
    exposure_sigma: float = 0.03,
    noise_dn: float = 1.0,
) -> np.ndarray:
    """The photo (H x W x 3 uint8 RGB) taken from `pose`."""
    return camera_effects(render_radiance(scene, pose, intr), intr, rng, exposure_sigma, noise_dn)
