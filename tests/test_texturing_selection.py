"""Per-face view selection (odm_core/texturing: data_term, outliers, mrf, selection) on tiny scenes built
here: quad-grid meshes, pinhole / SIMPLE_RADIAL ViewCameras, photos rendered by ray casting a texture
fixed in the world (so every photo agrees on each point's colour)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import pytest

from odm_core.camera.view import ViewCamera
from odm_core.mesh.ply import TriangleMesh, write_mesh_ply
from odm_core.texturing import data_term as dt
from odm_core.texturing.data_term import data_term, plan_data_term
from odm_core.texturing.labeling import UNSEEN
from odm_core.texturing.mrf import face_edges
from odm_core.texturing.outliers import gauss_clamping
from odm_core.texturing.selection import load_face_views, run_selection, select_views
from odm_core.worker import load_arrays, serial_map

W, H, F = 120, 90, 100.0


def _grid(origin, ax, ay, n: int) -> TriangleMesh:
    """n x n quads spanning origin + [0,1] ax + [0,1] ay; faces' normals along ax x ay."""
    s = np.linspace(0, 1, n + 1)
    a, b = np.meshgrid(s, s, indexing="ij")
    verts = np.asarray(origin) + a.reshape(-1, 1) * np.asarray(ax) + b.reshape(-1, 1) * np.asarray(ay)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    v00, v10, v01, v11 = idx[:-1, :-1], idx[1:, :-1], idx[:-1, 1:], idx[1:, 1:]
    faces = np.concatenate([np.stack([v00, v10, v11], -1), np.stack([v00, v11, v01], -1)]).reshape(-1, 3)
    return TriangleMesh(verts.astype(float), faces.astype(np.int64))


def _merge(*meshes: TriangleMesh) -> TriangleMesh:
    offsets = np.cumsum([0] + [m.n_vertices for m in meshes[:-1]])
    return TriangleMesh(
        np.concatenate([m.vertices for m in meshes]),
        np.concatenate([m.faces + o for m, o in zip(meshes, offsets, strict=True)]),
    )


def _box(lo, hi) -> TriangleMesh:
    """The closed outward-facing surface of an axis-aligned box, 4 x 4 quads a side."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    d = hi - lo
    ex, ey, ez = np.diag(d)
    return _merge(
        _grid(lo, ey, ex, 4), _grid(lo + ez, ex, ey, 4),  # bottom (down), top (up)
        _grid(lo, ex, ez, 4), _grid(lo + ey, ez, ex, 4),  # front (-y), back (+y)
        _grid(lo, ez, ey, 4), _grid(lo + ex, ey, ez, 4),  # left (-x), right (+x)
    )  # fmt: skip


def _view(tmp: Path, name: str, centre, target, model="PINHOLE", k=0.0, index=0) -> ViewCamera:
    z = np.asarray(target, float) - centre
    z /= np.linalg.norm(z)
    hint = np.array([0.0, -1.0, 0.0]) if abs(z[2]) > 0.9 else np.array([0.0, 0.0, -1.0])
    x = np.cross(hint, z)
    x /= np.linalg.norm(x)
    rot = np.stack([x, np.cross(z, x), z])
    pose = np.hstack([rot, (-rot @ np.asarray(centre, float))[:, None]])
    params = (F, F, W / 2, H / 2) if model == "PINHOLE" else (F, W / 2, H / 2, k)
    return ViewCamera(
        index, name, str(tmp / name), model, params, W, H, tuple(pose.ravel()), W, H, F, 0.1, 100.0
    )


def _texture(points: np.ndarray) -> np.ndarray:
    """RGB uint8 of world points: a pattern fine enough for gradients, the same in every photo."""
    x, y, z = points.T
    base = 0.5 + 0.25 * np.sin(7 * x + 3 * z) * np.cos(5 * y) + 0.2 * np.sin(17 * (x + y - z))
    rgb = np.stack([base, 0.6 * base + 0.2, 1 - 0.7 * base], axis=1)
    return np.clip(rgb * 255, 0, 255).astype(np.uint8)


def _render(mesh: TriangleMesh, view: ViewCamera, blur: float = 0.0, paint=None) -> None:
    """Write view.photo: the mesh seen through the view's lens, textured by _texture; grey background."""
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor.from_numpy(mesh.vertices.astype(np.float32)),
        o3d.core.Tensor.from_numpy(mesh.faces.astype(np.uint32)),
    )
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    xy = view.lens().cam_from_img(np.column_stack([u.ravel(), v.ravel()]))
    dirs = np.column_stack([xy, np.ones(len(xy))]) @ view.rotation
    rays = np.hstack([np.broadcast_to(view.centre, dirs.shape), dirs]).astype(np.float32)
    t = scene.cast_rays(o3d.core.Tensor.from_numpy(rays))["t_hit"].numpy()
    image = np.full((W * H, 3), 90, np.uint8)
    hit = np.isfinite(t)
    points = view.centre + dirs[hit] * t[hit][:, None]
    image[hit] = _texture(points)
    if paint is not None:  # (lo, hi): a red "car" in this world box, in this photo only
        inside = np.all((points >= paint[0]) & (points <= paint[1]), axis=1)
        car = image[np.flatnonzero(hit)[inside]]
        car[:, 0] = 255
        car[:, 1:] //= 4
        image[np.flatnonzero(hit)[inside]] = car
    image = image.reshape(H, W, 3)
    if blur:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    cv2.imwrite(view.photo, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _select(tmp: Path, mesh: TriangleMesh, views: list[ViewCamera], nadir=False, outliers=True):
    path = write_mesh_ply(tmp / "mesh.ply", mesh)
    units = plan_data_term(path, views, tmp / "units", "key", cast_width=W, nadir=nadir)
    paths = [data_term(u) for u in units]
    return select_views(mesh, views, paths, outliers=outliers), paths


def test_occluded_faces_are_not_given_to_a_view_that_cannot_see_them(tmp_path):
    wall = _grid((-4, 5, -1), (8, 0, 0), (0, 0, 6), 40)  # y = 5, facing -y
    box = _box((-1, 1.5, 0.5), (1, 2.5, 2.5))
    mesh = _merge(wall, box)
    front = _view(tmp_path, "front.png", (0, -5, 1.5), (0, 5, 1.5))
    side = _view(tmp_path, "side.png", (4, -4, 1.5), (0, 5, 1.5), index=1)
    for v in (front, side):
        _render(mesh, v)
    sel, paths = _select(tmp_path, mesh, [front, side])
    centre = mesh.face_centres()[: wall.n_faces]
    # where the ray from the front camera to a wall face crosses the box's front plane (y = 1.5)
    cross = front.centre + (centre - front.centre) * ((1.5 - front.centre[1]) / (5 - front.centre[1]))
    behind = (np.abs(cross[:, 0]) < 0.9) & (cross[:, 2] > 0.6) & (cross[:, 2] < 2.4)  # not straddling
    clear = (np.abs(cross[:, 0]) > 1.3) | (cross[:, 2] < 0.2) | (cross[:, 2] > 2.8)
    seen_front = np.zeros(mesh.n_faces, bool)
    seen_front[load_arrays(paths[0])["face"]] = True
    assert behind.sum() > 50 and not seen_front[: wall.n_faces][behind].any()
    in_frame = np.isfinite(sel.labeling.uv_px[: wall.n_faces]).all(axis=(1, 2))
    assert seen_front[: wall.n_faces][clear & in_frame].mean() > 0.9
    assert np.all(sel.labeling.labels[: wall.n_faces][behind] != 0)


def test_a_face_goes_to_the_view_that_sees_it_larger_or_sharper(tmp_path):
    ground = _grid((-3, -3, 0), (6, 0, 0), (0, 6, 0), 30)
    near = _view(tmp_path, "near.png", (0.3, 0, 4), (0.3, 0, 0))
    far = _view(tmp_path, "far.png", (-0.3, 0, 6), (-0.3, 0, 0), index=1)
    _render(ground, near)
    _render(ground, far)
    sel, paths = _select(tmp_path, ground, [near, far])
    both = np.isin(np.arange(ground.n_faces), load_arrays(paths[0])["face"])
    both &= np.isin(np.arange(ground.n_faces), load_arrays(paths[1])["face"])
    assert both.sum() > 200 and (sel.labeling.labels[both] == 0).mean() > 0.95

    sharp = _view(tmp_path, "sharp.png", (0.3, 0, 5), (0.3, 0, 0))
    blurred = _view(tmp_path, "blurred.png", (-0.3, 0, 5), (-0.3, 0, 0), index=1)
    _render(ground, sharp)
    _render(ground, blurred, blur=2.0)
    (tmp_path / "b").mkdir()
    sel, _ = _select(tmp_path / "b", ground, [blurred, sharp])
    seen = sel.labeling.seen()
    assert (sel.labeling.labels[seen] == 1).mean() > 0.9


def test_the_mrf_makes_fewer_patches_than_each_face_taking_its_best_view(tmp_path):
    ground = _grid((-2, -2, 0), (4, 0, 0), (0, 4, 0), 30)
    views = [
        _view(tmp_path, f"v{i}.png", (0.05 * i, 0.03 * i, 6), (0.05 * i, 0, 0), index=i) for i in range(3)
    ]
    for v in views:
        _render(ground, v)
    sel, _ = _select(tmp_path, ground, views)
    assert sel.seen > 0.9 * ground.n_faces
    assert sel.patches_best_view > 100
    assert sel.patches * 10 < sel.patches_best_view
    assert sel.patches == _count_patches(ground, sel.labeling.labels)


def _count_patches(mesh: TriangleMesh, labels: np.ndarray) -> int:
    """Connected pieces of equal labels, by flood fill (an independent count)."""
    edges = face_edges(mesh.faces)
    nbrs: dict[int, list[int]] = {}
    for a, b in edges:
        if labels[a] == labels[b] != UNSEEN:
            nbrs.setdefault(int(a), []).append(int(b))
            nbrs.setdefault(int(b), []).append(int(a))
    done = labels == UNSEEN
    count = 0
    for start in range(len(labels)):
        if done[start]:
            continue
        count += 1
        stack = [start]
        done[start] = True
        while stack:
            for n in nbrs.get(stack.pop(), []):
                if not done[n]:
                    done[n] = True
                    stack.append(n)
    return count


def test_gauss_clamping_drops_the_odd_colour_only_with_enough_views():
    rng = np.random.default_rng(1)
    agree = 0.5 + 0.01 * rng.standard_normal((13, 3))
    odd = np.array([[0.9, 0.2, 0.8]])
    keep = gauss_clamping(np.zeros(14, np.int64), np.vstack([agree, odd]))
    assert not keep[-1] and keep[:-1].sum() >= 12
    few = gauss_clamping(np.zeros(4, np.int64), np.vstack([agree[:3], odd]))
    assert few.all()  # texrecon: under 13 views the Gaussian of 4+ cannot exclude one
    faces = np.repeat([0, 1], 14)  # the same per face, faces interleaved
    order = np.random.default_rng(2).permutation(28)
    both = gauss_clamping(faces[order], np.vstack([agree, odd, agree, odd])[order])
    assert (~both).sum() >= 2 and not both[np.flatnonzero(order % 14 == 13)].any()


def test_outlier_removal_drops_a_car_painted_in_one_photo(tmp_path):
    ground = _grid((-2, -2, 0), (4, 0, 0), (0, 4, 0), 24)
    car = ((-0.6, -0.4, -0.1), (0.6, 0.4, 0.1))
    views = [_view(tmp_path, "car.png", (0, 0, 3), (0, 0, 0))]
    for i in range(13):
        a = 2 * np.pi * i / 13
        c = (0.8 * np.cos(a), 0.8 * np.sin(a), 6.0)
        views.append(_view(tmp_path, f"v{i}.png", c, (c[0], c[1], 0), index=i + 1))
    _render(ground, views[0], paint=car)
    for v in views[1:]:
        _render(ground, v)
    centre = ground.face_centres()
    on_car = np.all((centre >= car[0]) & (centre <= car[1]), axis=1)
    plain, paths = _select(tmp_path, ground, views, outliers=False)
    assert (plain.labeling.labels[on_car] == 0).mean() > 0.8  # nearest and sharpest: it would win
    sel = select_views(ground, views, paths)
    assert sel.outliers > 0
    assert (sel.labeling.labels[on_car] == 0).mean() < 0.1
    pairs = load_face_views(paths, ground.n_faces)
    assert on_car[pairs.face[pairs.view == 0]].sum() > 20


def test_uv_px_lands_on_the_pixels_the_lens_gives(tmp_path):
    ground = _grid((-2, -2, 0), (4, 0, 0), (0, 4, 0), 10)
    view = _view(tmp_path, "r.png", (0.2, 0.1, 5), (0.2, 0.1, 0), model="SIMPLE_RADIAL", k=0.08)
    _render(ground, view)
    sel, _ = _select(tmp_path, ground, [view])
    seen = sel.labeling.seen()
    assert seen.sum() > 20
    cam = ground.vertices[ground.faces[seen]].reshape(-1, 3) @ view.rotation.T + view.translation
    x, y = cam[:, 0] / cam[:, 2], cam[:, 1] / cam[:, 2]
    radial = 1 + 0.08 * (x * x + y * y)
    expected = np.stack([F * x * radial + W / 2, F * y * radial + H / 2], axis=1).reshape(-1, 3, 2)
    np.testing.assert_allclose(sel.labeling.uv_px[seen], expected, atol=1e-3)
    # the point under the camera's axis is the principal point, (W/2, H/2) in COLMAP's convention
    target = np.array([[0.2, 0.1, 0.0]])
    assert np.allclose(dt.project(view, target)[0], W / 2) and np.allclose(dt.project(view, target)[1], H / 2)


def test_faces_no_photo_sees_are_unseen(tmp_path):
    ground = _grid((-8, -8, 0), (16, 0, 0), (0, 16, 0), 32)
    view = _view(tmp_path, "a.png", (0, 0, 4), (0, 0, 0))
    _render(ground, view)
    sel, _ = _select(tmp_path, ground, [view])
    centre = ground.face_centres()
    far = np.abs(centre[:, 0]) > 4
    near = (np.abs(centre[:, 0]) < 1.5) & (np.abs(centre[:, 1]) < 1)
    assert np.all(sel.labeling.labels[far] == UNSEEN) and np.isnan(sel.labeling.uv_px[far]).all()
    assert np.all(sel.labeling.labels[near] == 0) and not np.isnan(sel.labeling.uv_px[near]).any()
    assert 0 < sel.seen < ground.n_faces and sel.share[0][0] == "a.png"


def test_nadir_mode_gives_vertical_faces_to_the_nearest_photo(tmp_path):
    ground = _grid((-3, -3, 0), (6, 0, 0), (0, 6, 0), 12)
    wall = _grid((0, -1, 0), (0, 2, 0), (0, 0, 1), 6)  # x = 0, facing +x
    mesh = _merge(ground, wall)
    near = _view(tmp_path, "near.png", (-0.5, 0, 5), (-0.5, 0, 0))  # behind the wall: sees its back
    far = _view(tmp_path, "far.png", (2.5, 0, 8), (0.5, 0, 0), index=1)
    _render(mesh, near)
    _render(mesh, far)
    is_wall = np.arange(mesh.n_faces) >= ground.n_faces
    plain, _ = _select(tmp_path, mesh, [near, far])
    assert np.all(plain.labeling.labels[is_wall] != 0)
    (tmp_path / "n").mkdir()
    nadir, paths = _select(tmp_path / "n", mesh, [near, far], nadir=True)
    assert (nadir.labeling.labels[is_wall] == 0).mean() > 0.9
    arrays = load_arrays(paths[0])
    wall_rows = is_wall[arrays["face"]]
    d2 = ((mesh.face_centres()[arrays["face"][wall_rows]] - near.centre) ** 2).sum(axis=1)
    np.testing.assert_allclose(arrays["quality"][wall_rows], 1e-4 + 65535 / d2, rtol=1e-5)


def test_the_unit_reuses_its_checkpoint_for_the_same_key_only(tmp_path, monkeypatch):
    ground = _grid((-1, -1, 0), (2, 0, 0), (0, 2, 0), 6)
    view = _view(tmp_path, "a.png", (0, 0, 3), (0, 0, 0))
    _render(ground, view)
    path = write_mesh_ply(tmp_path / "mesh.ply", ground)
    (unit,) = plan_data_term(path, [view], tmp_path / "units", "fingerprint-1", cast_width=W)
    out = data_term(unit)
    first = load_arrays(out)["face"]
    calls = []

    def counted(*args):
        calls.append(1)
        return {"face": np.zeros(1, np.int32), "quality": np.ones(1, np.float32),
                "colour": np.zeros((1, 3), np.float32), "area_px": np.ones(1, np.float32)}  # fmt: skip

    monkeypatch.setattr(dt, "view_face_infos", counted)
    assert data_term(unit) == out and not calls
    np.testing.assert_array_equal(load_arrays(out)["face"], first)
    (changed,) = plan_data_term(path, [view], tmp_path / "units", "fingerprint-2", cast_width=W)
    data_term(changed)
    assert calls == [1] and len(load_arrays(out)["face"]) == 1
    (wider,) = plan_data_term(path, [view], tmp_path / "units", "fingerprint-2", cast_width=W // 2)
    data_term(wider)
    assert calls == [1, 1]


def test_run_selection_and_clear_errors(tmp_path):
    ground = _grid((-1, -1, 0), (2, 0, 0), (0, 2, 0), 6)
    view = _view(tmp_path, "a.png", (0, 0, 3), (0, 0, 0))
    _render(ground, view)
    path = write_mesh_ply(tmp_path / "mesh.ply", ground)
    sel = run_selection(ground, path, [view], tmp_path / "units", "k", W, map_units=serial_map)
    assert sel.seen == ground.n_faces and "faces textured" in sel.summary()[0]
    missing = _view(tmp_path, "missing.png", (0, 0, 3), (0, 0, 0))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        run_selection(ground, path, [missing], tmp_path / "u2", "k", W)
    with pytest.raises(FileNotFoundError, match="nothing.ply"):
        run_selection(ground, tmp_path / "nothing.ply", [view], tmp_path / "u3", "k", W)


def test_face_edges_pairs_faces_sharing_an_edge():
    faces = np.array([[0, 1, 2], [2, 1, 3], [1, 2, 4], [5, 6, 7]])  # edge 1-2 shared by three faces
    assert face_edges(faces).tolist() == [[0, 1], [0, 2], [1, 2]]


def _texrecon_outliers(colours: np.ndarray) -> np.ndarray:
    """One face's kept views, as texrecon's photometric_outlier_detection loops (calculate_data_costs.cpp):
    the reference the vectorised gauss_clamping must match."""
    inlier = np.ones(len(colours), bool)
    for _ in range(10):
        if inlier.sum() < 4:
            return np.ones(len(colours), bool)
        cols = colours[inlier]
        mean = cols.mean(axis=0)
        cov = np.cov(cols.T, ddof=1)
        if np.abs(cov).max() < 5e-4:
            return inlier
        eig = np.linalg.eigvalsh(cov)
        if eig[0] <= 1e-12 * max(eig[2], 1e-300):
            return np.ones(len(colours), bool)
        diff = colours - mean
        d2 = np.einsum("wi,ij,wj->w", diff, np.linalg.inv(cov), diff)
        inlier = np.exp(-0.5 * d2) >= 6e-3
    return inlier


def test_gauss_clamping_matches_texrecons_loop_face_by_face():
    rng = np.random.default_rng(7)
    counts = rng.integers(1, 18, 3000)
    face = np.repeat(np.arange(len(counts)), counts)
    spread = rng.choice([1e-3, 1e-2, 0.05, 0.2], len(counts))[face][:, None]
    colour = rng.random((len(counts), 3))[face] + rng.standard_normal((len(face), 3)) * spread
    odd = rng.random(len(face)) < 0.08
    colour[odd] += 0.5 * rng.standard_normal((odd.sum(), 3))
    colour[: len(face) // 2] = np.round(colour[: len(face) // 2], 2)  # ties: settled and singular faces
    order = rng.permutation(len(face))
    keep = gauss_clamping(face[order], colour[order])
    expected = np.concatenate([_texrecon_outliers(colour[face == f]) for f in range(len(counts))])
    assert (~expected).sum() > 100  # the data has outliers to find
    assert (keep == expected[order]).all()
