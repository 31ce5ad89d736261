"""A textured model seen straight down, as an orthophoto: for comparing texturing with the truth.

Every cell of a reference raster's grid (our odm_orthophoto.tif) casts a vertical ray into the textured
OBJ (model frame = UTM minus the coords.txt offset); the first face hit and its barycentrics give the
texture coordinate, read from that face's texture image (bilinear). Cells that hit nothing are
transparent. The result goes through ortho_truth.ortho_accuracy like our orthophoto does.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import rasterio

from odm_core.photos.decode import read_image
from odm_core.texturing.objfile import read_obj


def render_top_down(obj: Path, offset: np.ndarray, like: Path, out: Path) -> Path:
    """Write `out`, an RGBA GeoTIFF on `like`'s grid and CRS, of the OBJ seen from above; `offset` (3,)
    is the model frame's origin in the raster's CRS (coords.txt's)."""
    import open3d as o3d

    model = read_obj(obj)
    names = sorted(model.groups)
    corners = np.concatenate([model.groups[n] for n in names])  # (M, 3, 2) [vertex, vt]
    material = np.concatenate([np.full(len(model.groups[n]), i) for i, n in enumerate(names)])
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(model.vertices.astype(np.float32), corners[:, :, 0].astype(np.uint32))
    with rasterio.open(like) as src:
        profile, transform, shape = src.profile, src.transform, (src.height, src.width)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    x, y = rasterio.transform.xy(transform, rows.ravel(), cols.ravel())
    top = model.vertices[:, 2].max() + 10.0
    origin = np.column_stack([np.asarray(x) - offset[0], np.asarray(y) - offset[1], np.full(rows.size, top)])
    rays = np.hstack([origin, np.tile([0.0, 0.0, -1.0], (rows.size, 1))]).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    face = hit["primitive_ids"].numpy().astype(np.int64)
    bary = hit["primitive_uvs"].numpy().astype(np.float64)
    ok = face != scene.INVALID_ID
    rgba = np.zeros((rows.size, 4), np.uint8)
    tex = model.vt[corners[face[ok], :, 1]]  # (K, 3, 2) V up
    u, v = bary[ok, 0:1], bary[ok, 1:2]
    uv = (1 - u - v) * tex[:, 0] + u * tex[:, 1] + v * tex[:, 2]
    colours = np.zeros((int(ok.sum()), 3), np.uint8)
    for i, name in enumerate(names):
        sel = material[face[ok]] == i
        if sel.any():
            colours[sel] = _sample(model.textures[name], uv[sel])
    rgba[ok, :3], rgba[ok, 3] = colours, 255
    profile.update(count=4, dtype="uint8", nodata=None, photometric="RGB", compress="deflate")
    profile.pop("jpeg_quality", None)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(rgba.reshape(*shape, 4).transpose(2, 0, 1))
    return out


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
