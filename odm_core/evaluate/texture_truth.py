"""A textured model seen from above, as an orthophoto (for comparing texturing with the truth), or through a
pinhole camera (pictures of the model), by ray casting into the textured OBJ.

Each ray's first face hit (open3d's RaycastingScene) and its barycentrics give the texture coordinate,
read from that face's texture image (bilinear). Rays that hit nothing are transparent. The top-down
render is on a reference raster's grid (our odm_orthophoto.tif) and goes through
ortho_truth.ortho_accuracy as our orthophoto does.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import rasterio

from odm_core.photos.decode import read_image
from odm_core.texturing.objfile import read_obj


class TexturedScene:
    """A textured OBJ (model frame), ready for rays."""

    def __init__(self, obj: Path) -> None:
        import open3d as o3d

        model = read_obj(obj)
        self.names = sorted(model.groups)
        self.corners = np.concatenate([model.groups[n] for n in self.names])  # (M, 3, 2) [vertex, vt]
        self.material = np.concatenate([np.full(len(model.groups[n]), i) for i, n in enumerate(self.names)])
        self.vertices, self.vt, self.textures = model.vertices, model.vt, model.textures
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(
            o3d.core.Tensor.from_numpy(self.vertices.astype(np.float32)),
            o3d.core.Tensor.from_numpy(np.ascontiguousarray(self.corners[:, :, 0], np.uint32)),
        )

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """RGBA (K, 4) uint8 of rays from origins (K, 3) along directions (K, 3), model frame."""
        import open3d as o3d

        rays = np.hstack([origins, directions]).astype(np.float32)
        hit = self.scene.cast_rays(o3d.core.Tensor.from_numpy(rays))
        face = hit["primitive_ids"].numpy().astype(np.int64)
        bary = hit["primitive_uvs"].numpy().astype(np.float64)
        ok = face != self.scene.INVALID_ID
        rgba = np.zeros((len(rays), 4), np.uint8)
        tex = self.vt[self.corners[face[ok], :, 1]]  # (K, 3, 2) V up
        u, v = bary[ok, 0:1], bary[ok, 1:2]
        uv = (1 - u - v) * tex[:, 0] + u * tex[:, 1] + v * tex[:, 2]
        colours = np.zeros((int(ok.sum()), 3), np.uint8)
        for i, name in enumerate(self.names):
            sel = self.material[face[ok]] == i
            if sel.any():
                colours[sel] = _sample(self.textures[name], uv[sel])
        rgba[ok, :3], rgba[ok, 3] = colours, 255
        return rgba


def render_top_down(obj: Path, offset: np.ndarray, like: Path, out: Path) -> Path:
    """Write `out`, an RGBA GeoTIFF on `like`'s grid and CRS, of the OBJ seen from above; `offset` (3,)
    is the model frame's origin in the raster's CRS (coords.txt's)."""
    scene = TexturedScene(obj)
    with rasterio.open(like) as src:
        profile, transform, shape = src.profile, src.transform, (src.height, src.width)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    x, y = rasterio.transform.xy(transform, rows.ravel(), cols.ravel())
    top = scene.vertices[:, 2].max() + 10.0
    origin = np.column_stack([np.asarray(x) - offset[0], np.asarray(y) - offset[1], np.full(rows.size, top)])
    rgba = scene.cast(origin, np.tile([0.0, 0.0, -1.0], (rows.size, 1)))
    profile.update(count=4, dtype="uint8", nodata=None, photometric="RGB", compress="deflate")
    profile.pop("jpeg_quality", None)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(rgba.reshape(*shape, 4).transpose(2, 0, 1))
    return out


def render_view(
    scene: TexturedScene, eye: np.ndarray, target: np.ndarray, size: tuple[int, int], fov_deg: float = 50.0
) -> np.ndarray:
    """RGBA image (height, width, 4) of the scene from `eye` looking at `target` (model frame, Z up),
    a pinhole of horizontal field of view fov_deg; size is (width, height)."""
    width, height = size
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    f = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
    u, v = np.meshgrid(np.arange(width) + 0.5 - width / 2, np.arange(height) + 0.5 - height / 2)
    dirs = forward + (u.ravel()[:, None] * right + v.ravel()[:, None] * down) / f
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return scene.cast(np.tile(eye, (len(dirs), 1)), dirs).reshape(height, width, 4)


def _sample(texture: Path, uv: np.ndarray) -> np.ndarray:
    """RGB (K, 3) of `texture` at OBJ texture coordinates uv (K, 2; V up), bilinear."""
    image = read_image(str(texture), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read texture {texture}")
    h, w = image.shape[:2]
    cols = 1024  # OpenCV's remap takes maps of fewer than 32,767 rows: the samples as rows of this many
    n = len(uv)
    pad = -n % cols
    map_x = np.pad(uv[:, 0] * w - 0.5, (0, pad)).astype(np.float32).reshape(-1, cols)
    map_y = np.pad((1.0 - uv[:, 1]) * h - 0.5, (0, pad)).astype(np.float32).reshape(-1, cols)
    bgr = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return bgr.reshape(-1, 3)[:n, ::-1]
