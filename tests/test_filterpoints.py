"""odm_filterpoints on small generated clouds: outliers, thinning, --boundary and --auto-boundary."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from pyproj import Transformer
from scipy.spatial.transform import Rotation

from odm_core.camera.view import ViewCamera
from odm_core.cloud.ply import empty_points, read_ply, write_ply
from odm_core.errors import OdmStageError
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options import FilterpointsOptions
from odm_core.sfm.export import write_ply as write_sparse_ply
from odm_core.stages.odm_filterpoints import odm_filterpoints

GEOREF = GeoReference(32615, 576000, 5188000)


def labelled(pos: np.ndarray) -> np.ndarray:
    """Points at pos whose colour encodes their index, with normals and views derived from it."""
    pts = empty_points(len(pos))
    idx = np.arange(len(pos))
    pts["x"], pts["y"], pts["z"] = pos.T
    pts["red"], pts["green"], pts["blue"] = idx >> 16, (idx >> 8) & 255, idx & 255
    pts["nx"], pts["ny"], pts["nz"] = 0.0, np.sin(idx), np.cos(idx)
    pts["views"] = idx % 7 + 2
    return pts


def index_of(pts: np.ndarray) -> np.ndarray:
    return (pts["red"].astype(int) << 16) | (pts["green"].astype(int) << 8) | pts["blue"].astype(int)


def grid(half: float, step: float) -> np.ndarray:
    """Points at cell centres of a square grid over [-half, half]^2 on z = 0."""
    c = np.arange(-half + step / 2, half, step)
    gx, gy = np.meshgrid(c, c)
    return np.column_stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)])


def project(tmp_path: Path, pos: np.ndarray, georeferenced: bool = True) -> tuple[ProjectTree, np.ndarray]:
    tree = ProjectTree(tmp_path)
    pts = labelled(pos)
    write_ply(tree.openmvs_model, pts)
    if georeferenced:
        GEOREF.write(tree.coords_txt, tree.proj_txt)
    return tree, pts


def run(tree: ProjectTree, **opts: object) -> tuple[np.ndarray, dict]:
    result = odm_filterpoints(tree, FilterpointsOptions.model_validate({"pc_filter": 0.0, **opts}))
    assert result.outputs == (tree.filtered_point_cloud, tree.filtered_point_cloud_stats)
    out = read_ply(tree.filtered_point_cloud)
    stats = json.loads(tree.filtered_point_cloud_stats.read_text())
    assert result.n_points == stats["count"] == len(out)
    assert result.n_input == stats["input_count"]
    assert result.spacing_m == stats["spacing"]
    return out, stats


def plane_with_outliers(n_outliers: int = 20) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(1)
    plane = grid(5.0, 0.1)
    plane[:, 2] = rng.normal(0, 0.01, len(plane))
    outliers = np.column_stack([rng.uniform(-5, 5, (n_outliers, 2)), rng.uniform(5, 10, n_outliers)])
    return np.vstack([plane, outliers]), len(plane)


def test_outliers_removed_inliers_kept(tmp_path: Path) -> None:
    pos, n_plane = plane_with_outliers()
    tree, pts = project(tmp_path, pos)
    out, stats = run(tree, pc_filter=5.0)
    assert len(out) == n_plane
    assert np.all(np.abs(out["z"]) < 0.1)
    np.testing.assert_array_equal(out, pts[index_of(out)])  # every field kept, order kept
    assert stats["input_count"] == len(pos)
    assert stats["spacing"] == pytest.approx(0.1, rel=0.1)


def test_pc_filter_zero_keeps_everything(tmp_path: Path) -> None:
    pos, _ = plane_with_outliers()
    tree, pts = project(tmp_path, pos)
    out, _ = run(tree, pc_filter=0.0)
    np.testing.assert_array_equal(out, pts)


def test_pc_sample_thins_to_one_point_per_cell(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    pos = np.column_stack([rng.uniform(0, 10, (40000, 2)), rng.normal(0, 0.005, 40000)])
    tree, pts = project(tmp_path, pos)
    out, stats = run(tree, pc_sample=0.5)
    density = len(out) / 100.0  # points per square metre over the 10 x 10 m square
    assert density == pytest.approx(1 / 0.5**2, rel=0.02)
    assert stats["spacing"] == pytest.approx(0.5, rel=0.15)
    np.testing.assert_array_equal(out, pts[index_of(out)])
    cells = np.floor((np.column_stack([out["x"], out["y"]]) - pos[:, :2].min(axis=0)) / 0.5)
    assert len(np.unique(cells, axis=0)) == len(out)  # at most one point per cell


def lonlat_square(x0: float, y0: float, x1: float, y1: float, dx: float = 0.0) -> str:
    """GeoJSON polygon (lon/lat) of a square in the model frame, shifted dx metres east."""
    to_ll = Transformer.from_crs(GEOREF.epsg, 4326, always_xy=True)
    xs = np.array([x0, x1, x1, x0, x0]) + GEOREF.offset_x + dx
    ys = np.array([y0, y0, y1, y1, y0]) + GEOREF.offset_y
    lon, lat = to_ll.transform(xs, ys)
    return json.dumps({"type": "Polygon", "coordinates": [np.column_stack([lon, lat]).tolist()]})


def test_boundary_keeps_exactly_the_points_inside(tmp_path: Path) -> None:
    tree, pts = project(tmp_path, grid(50.0, 1.0))
    out, _ = run(tree, boundary=lonlat_square(-20, -10, 30, 25))
    inside = (pts["x"] > -20) & (pts["x"] < 30) & (pts["y"] > -10) & (pts["y"] < 25)
    assert len(out) == inside.sum() == 50 * 35
    np.testing.assert_array_equal(out, pts[inside])


def test_boundary_missing_the_cloud_raises(tmp_path: Path) -> None:
    tree, _ = project(tmp_path, grid(50.0, 1.0))
    with pytest.raises(OdmStageError, match="--boundary"):
        run(tree, boundary=lonlat_square(-20, -10, 30, 25, dx=10000))
    assert not tree.filtered_point_cloud.exists()


def write_reconstruction(tree: ProjectTree, half: float = 10.0, height: float = 100.0) -> None:
    """Four nadir cameras at (+-half, +-half, height) over sparse points on z = 0 (GSD 10 cm)."""
    rot = np.array([np.pi, 0.0, 0.0])  # camera looking down
    shots = {}
    for i, (cx, cy) in enumerate([(-half, -half), (half, -half), (half, half), (-half, half)]):
        t = -Rotation.from_rotvec(rot).apply([cx, cy, height])
        shots[f"{i}.jpg"] = {"rotation": rot.tolist(), "translation": t.tolist(), "camera": "c"}
    recon = {
        "cameras": {"c": {"projection_type": "perspective", "width": 1000, "height": 800, "focal": 1.0}},
        "shots": shots,
        "points": {str(i): {"coordinates": [float(i), 0.0, 0.0], "color": [0, 0, 0]} for i in range(5)},
    }
    tree.reconstruction_json.parent.mkdir(parents=True, exist_ok=True)
    tree.reconstruction_json.write_text(json.dumps([recon]))


@pytest.mark.parametrize(("distance", "reach"), [(5.0, 15.0), (0.0, 20.0)])
def test_auto_boundary_crops_far_from_cameras(tmp_path: Path, distance: float, reach: float) -> None:
    tree, pts = project(tmp_path, grid(50.0, 1.0))
    write_reconstruction(tree)
    out, _ = run(tree, auto_boundary=True, auto_boundary_distance=distance)
    assert np.all((np.abs(out["x"]) < reach) & (np.abs(out["y"]) < reach))
    # the cameras' square grown by the margin holds both bands (|x| or |y| < reach, the other < 10)
    ax, ay = np.abs(pts["x"]), np.abs(pts["y"])
    bands = ((ax < reach - 0.2) & (ay < 10)) | ((ay < reach - 0.2) & (ax < 10))
    assert set(index_of(pts[bands])) <= set(index_of(out))
    assert len(out) < len(pts) / 4


def test_auto_boundary_needs_georeference(tmp_path: Path) -> None:
    tree, pts = project(tmp_path, grid(50.0, 1.0), georeferenced=False)
    write_reconstruction(tree)
    out, _ = run(tree, auto_boundary=True, auto_boundary_distance=5.0)
    assert len(out) == len(pts)  # ignored with a warning, as in ODM


def test_fast_orthophoto_reads_sparse_cloud(tmp_path: Path) -> None:
    tree = ProjectTree(tmp_path)
    pos = grid(5.0, 0.5)
    write_sparse_ply(tree.sparse_ply, pos, np.full((len(pos), 3), 7, np.uint8))
    with pytest.raises(OdmStageError, match="openmvs"):
        run(tree)
    out, stats = run(tree, fast_orthophoto=True)
    assert stats["input_count"] == len(out) == len(pos)
    assert np.all(out["red"] == 7)


def test_empty_input_raises(tmp_path: Path) -> None:
    tree = ProjectTree(tmp_path)
    write_ply(tree.openmvs_model, empty_points(0))
    with pytest.raises(OdmStageError, match="no points"):
        run(tree)


def test_tiny_cloud_survives_pc_filter(tmp_path: Path) -> None:
    tree, pts = project(tmp_path, np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    out, stats = run(tree, pc_filter=5.0)
    np.testing.assert_array_equal(out, pts)
    assert stats["spacing"] == pytest.approx(1.0)


def test_depthmap_sampling_is_depth_over_the_depth_maps_focal_length(tmp_path: Path) -> None:
    """Two views 50 m and 80 m above the points, depth maps of 500 px focal length: they sample the
    ground every 0.1 and 0.16 m (the median of the two: 0.13 m); points outside a view's frame or
    behind it do not count. Recorded for a dense cloud, absent without the dense plan."""
    tree, _ = project(tmp_path, grid(5.0, 0.25))
    _, stats = run(tree)
    assert "depthmap_sampling" not in stats

    def view(pose: np.ndarray) -> dict:  # as the dense plan's views.json holds it
        camera = ViewCamera(0, "v", "", "PINHOLE", (500.0,) * 4, 400, 300, tuple(pose.ravel()), 400, 300,
                            500.0, 1.0, 1000.0)  # fmt: skip
        return {**asdict(camera), "stereo_neighbours": [], "fusion_neighbours": []}

    def looking_down(height_m: float) -> np.ndarray:
        return np.hstack([np.diag([1.0, -1.0, -1.0]), [[0.0], [0.0], [height_m]]])

    views = [view(looking_down(h)) for h in (50.0, 80.0)] + [view(-looking_down(50.0))]
    tree.openmvs_views.write_text(json.dumps(views))
    _, stats = run(tree)
    assert stats["depthmap_sampling"] == pytest.approx(0.13)
