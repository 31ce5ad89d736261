"""The data term of view selection, one unit per photo: which faces a photo sees, and how well.

As mvs-texturing's `calculate_data_costs.cpp` (ODM's fork, `texrecon -d gmi -o gauss_clamping`), for one
view and every face: backface and frustum culling, faces seen more than 75 deg from their normal rejected,
the three corners inside the photo (and its mask), no mesh triangle between a corner and the camera
(texrecon's ray test, tnear = 1e-4 of the distance), and quality = GMI: the photo's Sobel gradient
magnitude (luminance, clipped to 255, / 255) averaged over the face's pixels times the face's projected
area in full-size pixels. The face's pixels come from ray casting: one ray per pixel of the photo decoded
at `cast_width` px wide, from the lens (`cam_from_img`, the distorted photo as it is on disk) into an
open3d RaycastingScene; the first triangle hit owns the pixel (z-buffer for free). A face hit by no ray
but under 4 cast pixels is sampled at its corners (texrecon's sub-pixel branch); a larger face no ray hits
is hidden. Mean colour (YCbCr, 0-1, texrecon's) over the same pixels feeds the outlier removal.

Nadir mode (`--nadir_mode`, ODM's 2.5D mesh): faces within 60 deg of vertical (|n_z| < 0.5) skip the
culling and the occlusion test and take quality 1e-4 + 65535 / distance^2 (the nearest photo wins),
exactly as ODM's fork of texrecon does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import pycolmap

from odm_core.artifacts import unit_checkpoint_valid
from odm_core.camera.view import REDUCED_DECODE, ViewCamera
from odm_core.dem.gridding import bilinear
from odm_core.mesh.ply import TriangleMesh, read_mesh_ply
from odm_core.ortho.render import project
from odm_core.photos.decode import read_image
from odm_core.worker import prepare_unit, save_arrays

MAX_ANGLE_DEG = 75.0  # texrecon: faces seen more obliquely are not candidates
NADIR_VERTICAL_NZ = 0.5  # nadir mode: |n_z| below this is a vertical face
NADIR_WEIGHT = 65535.0  # texrecon's --nadir_weight default
OCCLUSION_TNEAR = 1e-4  # texrecon: a corner's ray to the camera starts this fraction of the way along
SUBPIXEL_FACE_PX = 4.0  # faces smaller than this (cast pixels) may be missed by every ray
RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)  # mve::image::color_rgb_to_ycbcr, plus 0.5 on Cb and Cr


@dataclass(frozen=True)
class DataTermUnit:
    """One photo's data term: the mesh and photo by path, the output file and its checkpoint key."""

    mesh: str
    view: ViewCamera
    out: str
    key: str
    cast_width: int = 1000  # px: the photo is decoded and ray cast at this width (never above full size)
    nadir: bool = False


def plan_data_term(
    mesh_path: Path,
    views: list[ViewCamera],
    workdir: Path,
    key: str,
    cast_width: int = 1000,
    nadir: bool = False,
) -> list[DataTermUnit]:
    """One unit per view, in `views` order, each writing workdir/data_<position>.npz. The checkpoint key
    is `key` (the caller's fingerprint: mesh and photos) with the unit's own parameters appended."""
    if cast_width < 16:
        raise ValueError(f"cast_width {cast_width} px is too small to ray cast a photo")
    units = []
    for i, view in enumerate(views):
        unit_key = f"{key}|{view.name}|{view.cam_from_world}|{view.params}|w{cast_width}|nadir{int(nadir)}"
        out = workdir / f"data_{i:05d}.npz"
        units.append(DataTermUnit(str(mesh_path), view, str(out), unit_key, cast_width, nadir))
    return units


def data_term(unit: DataTermUnit) -> Path:
    """Run (or reuse, when its checkpoint names the same key) one view's data term; the Dask unit.

    Writes unit.out (.npz, atomically, with its checkpoint sidecar): `face` (K,) int32 face ids,
    `quality` (K,) float32 (GMI x full-size px, or the nadir weight), `colour` (K, 3) float32 mean YCbCr
    in 0-1, `area_px` (K,) float32 projected area in full-size photo pixels."""
    out = Path(unit.out)
    if unit_checkpoint_valid(out, unit.key):
        return out
    prepare_unit()
    mesh_path = Path(unit.mesh)
    if not mesh_path.is_file():
        raise FileNotFoundError(f"the mesh {mesh_path} is missing: run the odm_meshing stage first")
    mesh = read_mesh_ply(mesh_path)
    arrays = view_face_infos(mesh, unit.view, unit.cast_width, unit.nadir)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_arrays(out, unit.key, **arrays)
    return out


def view_face_infos(mesh: TriangleMesh, view: ViewCamera, cast_width: int, nadir: bool) -> dict:
    """The arrays data_term writes, for one view of `mesh` (see data_term)."""
    image, usable = _decode(view, cast_width)
    sx, sy = image.shape[1] / view.width, image.shape[0] / view.height
    gradient = _gradient(image)
    usable &= _eroded_border(usable.shape)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor.from_numpy(mesh.vertices.astype(np.float32)),
        o3d.core.Tensor.from_numpy(mesh.faces.astype(np.uint32)),
    )
    hit = _cast_pixels(scene, view, image.shape[:2], usable)
    ok = hit >= 0
    n = np.bincount(hit[ok], minlength=mesh.n_faces).astype(np.float64)
    gmi_sum = np.bincount(hit[ok], gradient.ravel()[ok], minlength=mesh.n_faces)
    rgb = image.reshape(-1, 3)[ok].astype(np.float64) / 255.0
    rgb_sum = np.stack([np.bincount(hit[ok], rgb[:, c], minlength=mesh.n_faces) for c in range(3)], axis=1)

    corners = mesh.vertices[mesh.faces]  # (M, 3, 3)
    u, v, depth = project(view, corners.reshape(-1, 3))
    uv = np.stack([u, v], axis=1).reshape(-1, 3, 2)
    area = _triangle_area(uv)
    vertical, candidate = _geometric_tests(view, corners, nadir)
    candidate &= _corners_usable(uv, depth.reshape(-1, 3), usable, sx, sy, view)
    candidate &= vertical | _corners_unoccluded(scene, view, mesh, candidate & ~vertical)
    small = area * sx * sy < SUBPIXEL_FACE_PX
    candidate &= vertical | (n > 0) | small
    face = np.nonzero(candidate)[0]

    sampled = n[face] == 0
    mean_grad = np.where(sampled, 0.0, gmi_sum[face] / np.maximum(n[face], 1))
    mean_rgb = rgb_sum[face] / np.maximum(n[face], 1)[:, None]
    if sampled.any():
        cu = (uv[face[sampled], :, 0] * sx - 0.5).ravel()
        cv = (uv[face[sampled], :, 1] * sy - 0.5).ravel()
        mean_grad[sampled] = bilinear(gradient, cu, cv).reshape(-1, 3).mean(axis=1)
        mean_rgb[sampled] = (bilinear(image, cu, cv).reshape(-1, 3, 3) / 255.0).mean(axis=1)
    gmi = mean_grad * area[face]
    keep = gmi > 0  # texrecon drops a face of quality 0 before the nadir weight replaces it
    centre_dist2 = ((corners[face].mean(axis=1) - view.centre) ** 2).sum(axis=1)
    quality = np.where(vertical[face], 1e-4 + NADIR_WEIGHT / centre_dist2, gmi)[keep]
    colour = mean_rgb[keep] @ RGB_TO_YCBCR.T + np.array([0.0, 0.5, 0.5])
    return {
        "face": face[keep].astype(np.int32),
        "quality": quality.astype(np.float32),
        "colour": colour.astype(np.float32),
        "area_px": area[face][keep].astype(np.float32),
    }


def _decode(view: ViewCamera, cast_width: int) -> tuple[np.ndarray, np.ndarray]:
    """(the photo as RGB uint8 at cast width, (H, W) bool usable pixels: the mask's white ones)."""
    width = min(cast_width, view.width)
    height = max(1, round(view.height * width / view.width))
    factor = max((k for k in REDUCED_DECODE if view.width / k >= width), default=1)
    image = read_image(view.photo, REDUCED_DECODE[factor] | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise FileNotFoundError(f"cannot read photo {view.photo}")
    expected = (-(-view.width // factor), -(-view.height // factor))
    if abs(image.shape[1] - expected[0]) > 1 or abs(image.shape[0] - expected[1]) > 1:
        raise ValueError(
            f"{view.photo} is {image.shape[1] * factor}x{image.shape[0] * factor} px but was reconstructed "
            f"as {view.width}x{view.height}: the photo changed since the opensfm stage; re-run from opensfm"
        )
    if (image.shape[1], image.shape[0]) != (width, height):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    usable = np.ones((height, width), bool)
    if view.mask:
        mask = read_image(view.mask, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
        if mask is None:
            raise FileNotFoundError(f"cannot read the mask {view.mask} of {view.photo}")
        usable = cv2.resize(mask, (width, height), interpolation=cv2.INTER_AREA) >= 128
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), usable


def _gradient(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 Sobel gradient magnitude of the luminance, clipped to 255, / 255 (mve sobel_edge)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return np.minimum(np.sqrt(gx * gx + gy * gy), 255.0) / 255.0


def _eroded_border(shape: tuple[int, ...]) -> np.ndarray:
    """(H, W) bool: every pixel but the outermost ring (texrecon's erode_validity_mask for GMI)."""
    inner = np.zeros(shape[:2], bool)
    inner[1:-1, 1:-1] = True
    return inner


def _cast_pixels(
    scene: o3d.t.geometry.RaycastingScene, view: ViewCamera, shape: tuple[int, ...], usable: np.ndarray
) -> np.ndarray:
    """(H*W,) int64: the face each usable cast pixel sees first, -1 for none (or an unusable pixel)."""
    h, w = shape[:2]
    xy = _pixel_rays(view, w, h)
    finite = np.isfinite(xy).all(axis=1) & usable.ravel()
    cam = np.column_stack([xy, np.ones(len(xy))])[finite]
    rays = np.empty((len(cam), 6), np.float32)
    rays[:, :3] = view.centre
    rays[:, 3:] = cam @ view.rotation  # R^T applied to each row
    ids = scene.cast_rays(o3d.core.Tensor.from_numpy(rays))["primitive_ids"].numpy().astype(np.int64)
    hit = np.full(h * w, -1, np.int64)
    hit[finite] = np.where(ids == o3d.t.geometry.RaycastingScene.INVALID_ID, -1, ids)
    return hit


def _pixel_rays(view: ViewCamera, w: int, h: int) -> np.ndarray:
    """(h*w, 2) normalised camera coordinates of the centres of a w x h grid over the photo; the same for
    every photo of one camera, so a worker computes it once (_lens_grid's cache)."""
    xy = _lens_grid(view.model, view.params, view.width, view.height, w, h)
    if xy is None:
        raise ValueError(f"the {view.model} lens of {view.name} cannot unproject its pixels")
    return xy


@functools.lru_cache(maxsize=4)
def _lens_grid(
    model: str, params: tuple[float, ...], width: int, height: int, w: int, h: int
) -> np.ndarray | None:
    u, v = np.meshgrid((np.arange(w) + 0.5) * width / w, (np.arange(h) + 0.5) * height / h)
    lens = pycolmap.Camera(model=model, width=width, height=height, params=list(params))
    xy = lens.cam_from_img(np.column_stack([u.ravel(), v.ravel()]))
    if xy is not None:
        xy.flags.writeable = False  # shared between calls
    return xy


def _triangle_area(uv: np.ndarray) -> np.ndarray:
    """(M,) area of (M, 3, 2) projected triangles (NaN where a corner did not project)."""
    a, b, c = uv[:, 0], uv[:, 1], uv[:, 2]
    return 0.5 * np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]))


def _geometric_tests(view: ViewCamera, corners: np.ndarray, nadir: bool) -> tuple[np.ndarray, np.ndarray]:
    """(vertical faces that skip the tests in nadir mode, faces passing backface, frustum and 75 deg)."""
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    length = np.linalg.norm(normal, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        normal /= length[:, None]
        to_view = view.centre - corners.mean(axis=1)
        to_view /= np.linalg.norm(to_view, axis=1)[:, None]
    cos_angle = (to_view * normal).sum(axis=1)
    ahead = (-to_view @ view.rotation[2]) >= 0  # the camera's optical axis is R's third row
    passed = (length > 0) & ahead & (cos_angle >= np.cos(np.radians(MAX_ANGLE_DEG)))
    vertical = (length > 0) & (np.abs(normal[:, 2]) < NADIR_VERTICAL_NZ) if nadir else np.zeros_like(passed)
    return vertical, passed | vertical


def _corners_usable(
    uv: np.ndarray, depth: np.ndarray, usable: np.ndarray, sx: float, sy: float, view: ViewCamera
) -> np.ndarray:
    """(M,) bool: all three corners in front of the camera, inside the photo where a bilinear sample is
    whole (0.5 .. size - 0.5, COLMAP pixels) and on usable (unmasked) pixels."""
    with np.errstate(invalid="ignore"):
        inside = (depth > 0) & (uv[..., 0] >= 0.5) & (uv[..., 1] >= 0.5)
        inside &= (uv[..., 0] <= view.width - 0.5) & (uv[..., 1] <= view.height - 0.5)
    col = np.clip(np.nan_to_num(uv[..., 0] * sx), 0, usable.shape[1] - 1).astype(np.int64)
    row = np.clip(np.nan_to_num(uv[..., 1] * sy), 0, usable.shape[0] - 1).astype(np.int64)
    return (inside & usable[row, col]).all(axis=1)


def _corners_unoccluded(
    scene: o3d.t.geometry.RaycastingScene, view: ViewCamera, mesh: TriangleMesh, faces: np.ndarray
) -> np.ndarray:
    """(M,) bool: for the faces flagged, no triangle lies between any of their corners and the camera
    (one ray per vertex used; texrecon's geometric visibility test)."""
    used = np.zeros(mesh.n_vertices, bool)
    used[mesh.faces[faces].ravel()] = True
    idx = np.nonzero(used)[0]
    rays = np.empty((len(idx), 6), np.float32)
    rays[:, :3] = mesh.vertices[idx]
    rays[:, 3:] = view.centre - mesh.vertices[idx]  # t = 1 at the camera
    blocked = scene.test_occlusions(o3d.core.Tensor.from_numpy(rays), tnear=OCCLUSION_TNEAR, tfar=1.0).numpy()
    clear = np.zeros(mesh.n_vertices, bool)
    clear[idx] = ~blocked
    return clear[mesh.faces].all(axis=1) & faces
