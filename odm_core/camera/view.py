"""Views for dense matching: a photo's lens and pose, and its undistorted pinhole camera at depth-map size.

Pixel coordinates follow COLMAP: the centre of the top-left pixel is (0.5, 0.5). OpenCV's remap puts it
at (0, 0), so maps handed to OpenCV subtract 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pycolmap

from odm_core.photos.decode import read_image

REDUCED_DECODE = {  # libjpeg's reduced decoding, by its factor
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


@dataclass(frozen=True)
class ViewCamera:
    """A registered photo: lens (COLMAP model), pose, and the pinhole camera its depth map uses."""

    index: int
    name: str
    photo: str
    model: str
    params: tuple[float, ...]
    width: int
    height: int
    cam_from_world: tuple[float, ...]  # 3 x 4 row-major [R | t]
    dm_width: int
    dm_height: int
    dm_focal_px: float
    depth_min: float
    depth_max: float
    # depth_max near each cell of a coarse grid over the depth map (row-major; camera/reconstruction.py),
    # () for none
    local_depth_max: tuple[float, ...] = ()
    local_depth_cols: int = 0
    mask: str = ""  # the photo's mask file (ODM's <stem>_mask.<ext>; black = not used), "" for none

    @property
    def rotation(self) -> np.ndarray:
        """cam_from_world rotation (3 x 3)."""
        return np.asarray(self.cam_from_world, float).reshape(3, 4)[:, :3]

    @property
    def translation(self) -> np.ndarray:
        return np.asarray(self.cam_from_world, float).reshape(3, 4)[:, 3]

    @property
    def centre(self) -> np.ndarray:
        """Camera centre in the model frame."""
        return -self.rotation.T @ self.translation

    @property
    def K(self) -> np.ndarray:
        """Intrinsics of the undistorted depth-map camera (COLMAP pixel convention)."""
        f = self.dm_focal_px
        return np.array([[f, 0, self.dm_width / 2], [0, f, self.dm_height / 2], [0, 0, 1.0]])

    def in_depth_map(self, u: np.ndarray, v: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Which of project()'s results lie in front of the camera and inside the depth map."""
        return (z > 0) & (u >= 0) & (v >= 0) & (u < self.dm_width) & (v < self.dm_height)

    @classmethod
    def from_doc(cls, doc: dict) -> ViewCamera:
        """A view from its entry in the dense plan's views.json (extra keys ignored)."""
        fields = [k for k in cls.__dataclass_fields__ if k in doc]
        values: dict[str, Any] = {k: tuple(doc[k]) if isinstance(doc[k], list) else doc[k] for k in fields}
        return cls(**values)

    def depth_bound(self) -> np.ndarray:
        """The farthest depth allowed at each depth-map pixel (H x W): the local bound where one was
        found, else depth_max."""
        shape = (self.dm_height, self.dm_width)
        if not self.local_depth_max:
            return np.full(shape, self.depth_max, np.float32)
        cols = self.local_depth_cols
        grid = np.asarray(self.local_depth_max, np.float32).reshape(-1, cols)
        r = np.minimum(np.arange(shape[0]) * grid.shape[0] // shape[0], grid.shape[0] - 1)
        c = np.minimum(np.arange(shape[1]) * cols // shape[1], cols - 1)
        return grid[r[:, None], c[None, :]]

    def lens(self) -> pycolmap.Camera:
        return pycolmap.Camera(
            model=self.model, width=self.width, height=self.height, params=list(self.params)
        )

    def pixel_rays(self) -> np.ndarray:
        """Ray (x, y, 1) in the camera frame through the centre of every depth-map pixel (H x W x 3)."""
        u, v = np.meshgrid(np.arange(self.dm_width) + 0.5, np.arange(self.dm_height) + 0.5)
        f = self.dm_focal_px
        x = (u - self.dm_width / 2) / f
        y = (v - self.dm_height / 2) / f
        return np.dstack([x, y, np.ones_like(x)])

    def world_points(self, depth: np.ndarray) -> np.ndarray:
        """Model-frame point of every pixel (H x W x 3) for a depth map (z along the optical axis)."""
        cam = self.pixel_rays() * depth[..., None]
        return (cam - self.translation) @ self.rotation

    def project(self, world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Depth-map pixel coordinates (u, v; COLMAP convention) and depth of model-frame points (N x 3)."""
        cam = world @ self.rotation.T + self.translation
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.dm_focal_px * cam[:, 0] / z + self.dm_width / 2
            v = self.dm_focal_px * cam[:, 1] / z + self.dm_height / 2
        return u, v, z


@dataclass(frozen=True)
class SourceImage:
    """A photo decoded near depth-map size; scale maps photo pixels to this image's pixels."""

    pixels: np.ndarray
    scale_x: float
    scale_y: float


def load_photo(view: ViewCamera) -> SourceImage:
    """Decode the photo at (about) depth-map size: libjpeg's reduced decoding, then area resampling."""
    target = view.dm_width / view.width
    factor = max((k for k in REDUCED_DECODE if 1.0 / k >= target * 0.999), default=1)
    image = read_image(view.photo, REDUCED_DECODE[factor] | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise FileNotFoundError(f"cannot read photo {view.photo}")
    expected = (-(-view.width // factor), -(-view.height // factor))
    if abs(image.shape[1] - expected[0]) > 1 or abs(image.shape[0] - expected[1]) > 1:
        raise ValueError(
            f"{view.photo} is {image.shape[1] * factor}x{image.shape[0] * factor} px but was reconstructed "
            f"as {view.width}x{view.height}: the photo changed since the opensfm stage; re-run from opensfm"
        )
    size = (max(1, round(view.width * target)), max(1, round(view.height * target)))
    if size != (image.shape[1], image.shape[0]):
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return SourceImage(
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB), image.shape[1] / view.width, image.shape[0] / view.height
    )


def warp_rays(view: ViewCamera, source: SourceImage, rays_cam: np.ndarray, gray: bool) -> np.ndarray:
    """Sample the photo along camera-frame rays (H x W x 3): undistortion and any rotation in one remap."""
    h, w = rays_cam.shape[:2]
    flat = rays_cam.reshape(-1, 3)
    ahead = flat[:, 2] > 1e-6
    px = np.full((len(flat), 2), -1e6)
    px[ahead] = view.lens().img_from_cam(flat[ahead])
    map_x = (px[:, 0] * source.scale_x - 0.5).astype(np.float32).reshape(h, w)
    map_y = (px[:, 1] * source.scale_y - 0.5).astype(np.float32).reshape(h, w)
    image = cv2.cvtColor(source.pixels, cv2.COLOR_RGB2GRAY) if gray else source.pixels
    np.nan_to_num(map_x, copy=False, nan=-1e6)
    np.nan_to_num(map_y, copy=False, nan=-1e6)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def load_mask(view: ViewCamera) -> np.ndarray | None:
    """The photo's mask as the depth-map camera sees it (H x W bool, True = usable); None without one."""
    if not view.mask:
        return None
    mask = read_image(view.mask, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    if mask is None:
        raise FileNotFoundError(f"cannot read the mask {view.mask} of {view.photo}")
    pixels = np.repeat(mask[..., None], 3, axis=2)
    source = SourceImage(pixels, mask.shape[1] / view.width, mask.shape[0] / view.height)
    return warp_rays(view, source, view.pixel_rays(), gray=True) >= 128


def undistorted(view: ViewCamera, source: SourceImage) -> np.ndarray:
    """The photo as the undistorted depth-map camera sees it (H x W x 3 RGB)."""
    return warp_rays(view, source, view.pixel_rays(), gray=False)
