"""The texture atlas and the textured-model files (odm_core/texturing/atlas.py and its modules), on a
20 x 20 m plane of 3,200 faces seen by two nadir pinhole photos written in the test."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pygltflib
import pytest
from scipy.spatial import cKDTree

from odm_core.camera.view import ViewCamera
from odm_core.mesh.ply import TriangleMesh
from odm_core.ortho.render import project
from odm_core.texturing.atlas import AtlasOptions, AtlasResult, texture_model
from odm_core.texturing.bake import bake_page
from odm_core.texturing.labeling import UNSEEN, Labeling
from odm_core.texturing.objfile import LEGACY_MTL, read_obj
from odm_core.texturing.raster import sample_bilinear

SIZE_M, QUADS = 20.0, 40
Scene = tuple[TriangleMesh, list[ViewCamera], Labeling]
W, H, FOCAL, ALTITUDE = 320, 240, 300.0, 30.0
DARKER = 40.0  # the second photo is this much darker: the seam levelling's job
RTC = (512345.0, 4123456.0)


def pattern(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The ground's BGR colour (0-255) at model-frame x, y: smooth and asymmetric (a mirrored or shifted
    lookup shows)."""
    return np.stack([128 + 60 * np.sin(x / 0.8), 128 + 60 * np.cos(y / 0.7), 110 + 3 * x + 2 * y], axis=-1)


def nadir_view(index: int, x: float, photo: Path, darker: float) -> ViewCamera:
    """A pinhole camera looking straight down from (x, 0, ALTITUDE), its photo of the pattern written."""
    rotation = np.diag([1.0, -1.0, -1.0])
    t = -rotation @ np.array([x, 0.0, ALTITUDE])
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    gx = x + (u - W / 2) * ALTITUDE / FOCAL
    gy = -(v - H / 2) * ALTITUDE / FOCAL
    cv2.imwrite(str(photo), np.clip(np.rint(pattern(gx, gy) - darker), 0, 255).astype(np.uint8))
    return ViewCamera(
        index=index, name=photo.name, photo=str(photo), model="PINHOLE",
        params=(FOCAL, FOCAL, W / 2, H / 2), width=W, height=H,
        cam_from_world=tuple(np.hstack([rotation, t[:, None]]).ravel()),
        dm_width=W, dm_height=H, dm_focal_px=FOCAL, depth_min=1.0, depth_max=100.0,
    )  # fmt: skip


def plane() -> TriangleMesh:
    g = np.linspace(-SIZE_M / 2, SIZE_M / 2, QUADS + 1)
    x, y = np.meshgrid(g, g)
    vertices = np.column_stack([x.ravel(), y.ravel(), np.zeros(x.size)])
    i = (np.arange(QUADS)[:, None] * (QUADS + 1) + np.arange(QUADS)[None, :]).ravel()
    quads = np.stack([i, i + 1, i + QUADS + 2, i + QUADS + 1], axis=1)
    return TriangleMesh(vertices, np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]]))


def label_nearest(mesh: TriangleMesh, views: list[ViewCamera]) -> Labeling:
    """Each face to the view whose centre is nearest above it; its corners projected into that photo."""
    centres = mesh.face_centres()
    cams = np.array([v.centre for v in views])
    labels = np.argmin(np.linalg.norm(centres[:, None, :2] - cams[None, :, :2], axis=2), axis=1)
    uv = np.full((mesh.n_faces, 3, 2), np.nan, np.float32)
    for k, view in enumerate(views):
        sel = labels == k
        u, v, _ = project(view, mesh.vertices[mesh.faces[sel]].reshape(-1, 3))
        uv[sel] = np.column_stack([u, v]).reshape(-1, 3, 2)
    return Labeling(labels.astype(np.int32), uv)


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    views = [nadir_view(0, -5.0, tmp_path / "a.png", 0.0), nadir_view(1, 5.0, tmp_path / "b.png", DARKER)]
    mesh = plane()
    return mesh, views, label_nearest(mesh, views)


def run(
    tmp_path: Path, scene: Scene, opts: AtlasOptions, name: str = "out", gltf: bool = False
) -> AtlasResult:
    mesh, views, labeling = scene
    work, out = tmp_path / f"{name}-work", tmp_path / name
    return texture_model(mesh, views, labeling, opts, work, out, "key", rtc_offset=RTC, gltf=gltf)


def texture_at_face_centres(obj_path: Path) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(face centres (F, 3), the texture's BGR at each through the OBJ's vt (V flipped back), material
    index per face) for every face of the OBJ."""
    obj = read_obj(obj_path)
    centres, colours, material = [], [], []
    for name, corners in obj.groups.items():
        image = cv2.imread(str(obj.textures[name]), cv2.IMREAD_COLOR)
        vt = obj.vt[corners[:, :, 1]].mean(axis=1)
        xy = np.column_stack([vt[:, 0] * image.shape[1], (1 - vt[:, 1]) * image.shape[0]])
        colours.append(sample_bilinear(image, xy.astype(np.float32)))
        centres.append(obj.vertices[corners[:, :, 0]].mean(axis=1))
        material += [int(name[len("material") :])] * len(corners)
    return np.concatenate(centres), np.concatenate(colours), material


def true_colour(views: list[ViewCamera], labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each face centre's colour in its labelled photo (bilinear)."""
    out = np.zeros((len(centres), 3), np.float32)
    for k, view in enumerate(views):
        sel = labels == k
        u, v, _ = project(view, centres[sel])
        out[sel] = sample_bilinear(cv2.imread(view.photo), np.column_stack([u, v]).astype(np.float32))
    return out


def nearest_label(views: list[ViewCamera], centres: np.ndarray) -> np.ndarray:
    cams = np.array([v.centre for v in views])
    return np.argmin(np.linalg.norm(centres[:, None, :2] - cams[None, :, :2], axis=2), axis=1)


def test_texture_through_obj_uvs_reproduces_the_photos(tmp_path: Path, scene: Scene) -> None:
    """Baking, packing, the OBJ's vt (V flipped) agree: the texture at each face centre is the labelled
    photo's colour there. Faces two or more rings from the seam (no levelling offset there)."""
    result = run(tmp_path, scene, AtlasOptions(skip_global_seam_leveling=True))
    centres, colours, _ = texture_at_face_centres(result.outputs[0])
    far = np.abs(centres[:, 0]) > 1.5
    expected = true_colour(scene[1], nearest_label(scene[1], centres), centres)
    error = np.abs(colours - expected)[far]
    assert far.sum() > 2500 and result.pages == 1 and result.faces == scene[0].n_faces
    assert np.median(error) < 1.0 and np.percentile(error, 99) < 3, np.percentile(error, [50, 99, 100])


def side_error(result: AtlasResult) -> tuple[float, float]:
    """Mean signed difference texture - ground pattern on either side of the seam (x = 0), 1-3 m from it."""
    centres, colours, _ = texture_at_face_centres(result.outputs[0])
    diff = (colours - pattern(centres[:, 0], centres[:, 1])).mean(axis=1)
    band = (np.abs(centres[:, 0]) > 1) & (np.abs(centres[:, 0]) < 3)
    return float(diff[band & (centres[:, 0] < 0)].mean()), float(diff[band & (centres[:, 0] > 0)].mean())


def test_global_levelling_closes_the_jump_between_photos(tmp_path: Path, scene: Scene) -> None:
    levelled = run(tmp_path, scene, AtlasOptions(), "levelled")
    skipped = run(tmp_path, scene, AtlasOptions(skip_global_seam_leveling=True), "skipped")
    left, right = side_error(skipped)
    assert abs(left - right - DARKER) < 4  # without it the second photo's 40 levels stay
    assert skipped.seam_after < 2  # the local step still matches the seam itself (texrecon runs it too)
    left, right = side_error(levelled)
    assert abs(left - right) < 5, (left, right)
    assert levelled.seam_before > 30 and levelled.seam_after < 2


def test_obj_and_mtl_parse_with_every_material_and_texture(tmp_path: Path, scene: Scene) -> None:
    result = run(tmp_path, scene, AtlasOptions())
    out = tmp_path / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([
        "odm_textured_model_geo.obj", "odm_textured_model_geo.mtl", LEGACY_MTL,
        "odm_textured_model_geo_material0000_map_Kd.png",
    ])  # fmt: skip
    obj = read_obj(result.outputs[0])  # raises on an undefined material or a missing texture
    assert list(obj.groups) == ["material0000"] and sum(len(g) for g in obj.groups.values()) == 3200
    assert (obj.vt >= 0).all() and (obj.vt <= 1).all()
    mtl = (out / "odm_textured_model_geo.mtl").read_text()
    assert mtl == (out / LEGACY_MTL).read_text()
    assert mtl.splitlines()[:2] == ["newmtl material0000", "Ka 1.000000 1.000000 1.000000"]
    assert "map_Kd odm_textured_model_geo_material0000_map_Kd.png" in mtl
    text = result.outputs[0].read_text()
    assert text.startswith("mtllib odm_textured_model_geo.mtl\nv ") and "\nusemtl material0000\nf " in text
    first_face = next(ln for ln in text.splitlines() if ln.startswith("f "))
    assert len(first_face.split()) == 4 and all(c.count("/") == 2 for c in first_face.split()[1:])


def test_unseen_faces_dropped_or_kept_black(tmp_path: Path, scene: Scene) -> None:
    mesh, views, labeling = scene
    centres = mesh.face_centres()
    hole = (centres[:, 0] > 6) & (centres[:, 1] > 6)
    labels = np.where(hole, UNSEEN, labeling.labels).astype(np.int32)
    uv = np.where(hole[:, None, None], np.nan, labeling.uv_px).astype(np.float32)
    holed = (mesh, views, Labeling(labels, uv))
    dropped = run(tmp_path, holed, AtlasOptions(), "dropped")
    kept = run(tmp_path, holed, AtlasOptions(keep_unseen_faces=True), "kept")
    assert dropped.faces == 3200 - hole.sum() and dropped.unseen_faces == 0
    assert kept.faces == 3200 and kept.unseen_faces == hole.sum() > 0
    c, colours, _ = texture_at_face_centres(kept.outputs[0])
    unseen = (c[:, 0] > 6) & (c[:, 1] > 6)
    assert unseen.sum() == hole.sum() and (colours[unseen] == 0).all()  # texrecon's black unseen patch
    assert (colours[~unseen].mean(axis=1) > 20).all()


def test_pages_split_and_single_material(tmp_path: Path, scene: Scene) -> None:
    """A 128 px limit: several pages, each face's vt on its own page; single_material: one page, scaled."""
    paged = run(tmp_path, scene, AtlasOptions(max_texture_size=128, skip_global_seam_leveling=True), "paged")
    one = run(tmp_path, scene, AtlasOptions(max_texture_size=128, single_material=True), "one")
    assert paged.pages > 1 and paged.page_size == (128, 128)
    assert len(read_obj(paged.outputs[0]).groups) == paged.pages
    assert one.pages == 1 and max(one.page_size) <= 128
    centres, colours, _ = texture_at_face_centres(paged.outputs[0])
    far = np.abs(centres[:, 0]) > 1.5
    expected = true_colour(scene[1], nearest_label(scene[1], centres), centres)
    assert np.median(np.abs(colours - expected)[far]) < 1.5


def test_glb_layout(tmp_path: Path, scene: Scene) -> None:
    result = run(tmp_path, scene, AtlasOptions(max_texture_size=128), gltf=True)
    glb_path = result.outputs[-1]
    assert glb_path.name == "odm_textured_model_geo.glb"
    gltf = pygltflib.GLTF2().load(str(glb_path))
    assert "KHR_materials_unlit" in gltf.extensionsRequired
    assert all("KHR_materials_unlit" in m.extensions for m in gltf.materials)
    assert gltf.extensions["CESIUM_RTC"]["center"] == [RTC[0], RTC[1], 0.0]
    obj = read_obj(result.outputs[0])
    assert len(gltf.meshes[0].primitives) == len(obj.groups) == result.pages
    blob = gltf.binary_blob()
    positions, n_indices = [], 0
    for prim in gltf.meshes[0].primitives:
        acc = gltf.accessors[prim.attributes.POSITION]
        view = gltf.bufferViews[acc.bufferView]
        positions.append(np.frombuffer(blob, np.float32, acc.count * 3, view.byteOffset).reshape(-1, 3))
        n_indices += gltf.accessors[prim.indices].count
        image = gltf.images[
            gltf.textures[gltf.materials[prim.material].pbrMetallicRoughness.baseColorTexture.index].source
        ]
        assert image.mimeType == "image/jpeg"
    assert n_indices == 3 * 3200
    glb_vertices = np.unique(np.concatenate(positions), axis=0)  # written from the arrays, read: the OBJ's
    distance, _ = cKDTree(obj.vertices).query(glb_vertices)
    assert len(glb_vertices) == len(np.unique(obj.vertices, axis=0)) and distance.max() < 1e-5


def test_bake_unit_reuses_its_checkpoint(tmp_path: Path, scene: Scene) -> None:
    from odm_core.texturing.atlas import plan_atlas

    mesh, views, labeling = scene
    plan = plan_atlas(mesh, views, labeling, AtlasOptions(), tmp_path / "w", "key")
    first, again = bake_page(plan.units[0]), bake_page(plan.units[0])
    assert not first.reused and first.texels > 0 and again.reused
    assert json.loads(Path(plan.units[0].out + ".json").read_text())["key"] == plan.units[0].key


def test_degenerate_face_left_out_by_xatlas_still_written(tmp_path: Path, scene: Scene) -> None:
    """A face with no area (xatlas packs nothing for it) keeps a valid material and vt."""
    mesh, views, labeling = scene
    faces = np.vstack([mesh.faces, [[0, 1, 1]]])
    uv = np.concatenate([labeling.uv_px, labeling.uv_px[:1]])
    degenerate = (TriangleMesh(mesh.vertices, faces), views, Labeling(np.append(labeling.labels, 0), uv))
    result = run(tmp_path, degenerate, AtlasOptions(max_texture_size=128))
    obj = read_obj(result.outputs[0])
    assert sum(len(g) for g in obj.groups.values()) == 3201 and result.faces == 3201


def test_gutter_in_bands_equals_whole_page() -> None:
    from odm_core.texturing.bake import fill_gutter

    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (70, 50, 3), dtype=np.uint8)
    covered = rng.random((70, 50)) < 0.2
    image[~covered] = 0
    whole, banded = image.copy(), image.copy()
    fill_gutter(whole, covered, 3, band=1000)
    fill_gutter(banded, covered, 3, band=8)
    assert np.array_equal(whole, banded) and (whole[~covered] > 0).any()
    assert np.array_equal(whole[covered], image[covered])  # painted texels untouched
