"""The synthetic ground-truth generator: determinism, EXIF, geometry of projection vs rendering, rasters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import rasterio
from PIL import Image

from odm_core.geo.georef import lla_to_utm, utm_epsg
from odm_core.synthetic import (
    ROOF,
    WALL,
    CameraPose,
    Intrinsics,
    SyntheticTruth,
    SyntheticWorld,
    cast_rays,
    generate_synthetic,
    make_world,
    read_gps,
    visible,
)
from odm_core.synthetic.exif import EXIF_IFD, GPS_IFD
from tests.conftest import SMALL

OPTS = SMALL  # 3 x 2 nadir photos and 2 obliques at 640 x 480, 4 buildings


@pytest.fixture(scope="module")
def project(small_survey: SyntheticTruth) -> SyntheticTruth:
    """The session's small survey, generated with OPTS (shared with the end-to-end tests)."""
    return small_survey


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return make_world(OPTS)


@pytest.fixture(scope="module")
def cameras(project: SyntheticTruth) -> dict[str, Any]:
    return json.loads(project.cameras_json.read_text())


def _dsm_points(project: SyntheticTruth, world: SyntheticWorld, n: int, seed: int) -> np.ndarray:
    """Random DSM cell centres as local 3D points (the truth raster read back)."""
    with rasterio.open(project.dsm_tif) as src:
        z = src.read(1)
        rng = np.random.default_rng(seed)
        rows, cols = rng.integers(0, src.height, n), rng.integers(0, src.width, n)
        xs, ys = rasterio.transform.xy(src.transform, rows, cols)
    utm = np.column_stack([xs, ys, z[rows, cols].astype(np.float64)])
    return world.local_from_utm(utm)


def test_layout_and_determinism(project: SyntheticTruth, tmp_path: Path) -> None:
    names = sorted(p.name for p in project.images_dir.glob("*.JPG"))
    assert names == [f"IMG_{i:04d}.JPG" for i in range(1, 9)] and project.n_photos == 8
    # the same options give the same bytes, whatever the number of render threads (checked on the same
    # flight at a quarter of the image size, whose truth rasters are coarser too: 16x fewer pixels)
    tiny = OPTS.model_copy(update={"image_width": 160, "image_height": 120})
    one = generate_synthetic(tmp_path / "one", tiny)
    again = generate_synthetic(tmp_path / "again", tiny.model_copy(update={"workers": 1}))
    assert one.n_photos == 8
    files = [p for p in one.project_dir.rglob("*") if p.is_file()]
    assert len(files) == 8 + 4
    for f in files:
        assert f.read_bytes() == (again.project_dir / f.relative_to(one.project_dir)).read_bytes(), f
    summary = json.loads(project.truth_json.read_text())
    assert summary["epsg"] == project.epsg and summary["n_photos"] == 8
    assert summary["options"] == OPTS.model_dump(exclude={"workers"})


def test_exif_round_trip(project: SyntheticTruth, cameras: dict[str, Any]) -> None:
    epsg = cameras["epsg"]
    for i, photo in enumerate(cameras["photos"]):
        path = project.images_dir / photo["filename"]
        img = Image.open(path)
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (640, 480)
        exif = img.getexif()
        sub, gps = exif.get_ifd(EXIF_IFD), exif.get_ifd(GPS_IFD)
        assert (exif[0x010F], exif[0x0110]) == (OPTS.camera_make, OPTS.camera_model)
        assert float(sub[0x920A]) == pytest.approx(OPTS.focal_mm, abs=1e-3)
        assert sub[0xA405] == 24 and (sub[0xA002], sub[0xA003]) == (640, 480)
        assert sub[0x9003] == f"2024:06:01 10:00:{i:02d}"
        assert (gps[1], gps[3]) == ("N", "E")
        fix = read_gps(path)
        written = photo["exif_gps"]
        assert (fix.lat, fix.lon, fix.alt) == pytest.approx(
            (written["lat"], written["lon"], written["alt"]), abs=1e-9
        )
        utm = lla_to_utm(epsg, np.array([fix.lat]), np.array([fix.lon]), np.array([fix.alt]))[0]
        c = photo["centre_utm"]
        err = utm - [c["easting"], c["northing"], c["altitude"]]
        assert np.all(np.abs(err[:2]) < 5 * OPTS.gps_sigma_h_m) and abs(err[2]) < 5 * OPTS.gps_sigma_v_m
        assert err == pytest.approx(list(photo["exif_gps_error_m"].values()), abs=0.01)
    assert cameras["intrinsics"]["colmap_params"] == [OPTS.focal_px, 320.0, 240.0, OPTS.k1, OPTS.k2]


def test_gps_tags_can_be_left_out() -> None:
    from odm_core.synthetic.exif import photo_exif

    with_gps, _ = photo_exif(OPTS, 0, 46.5, 6.6, 460.0)
    without, _ = photo_exif(OPTS.model_copy(update={"gps_tags": False}), 0, 46.5, 6.6, 460.0)
    assert len(with_gps.get_ifd(GPS_IFD)) == 7 and len(without.get_ifd(GPS_IFD)) == 0
    assert without.get_ifd(EXIF_IFD)[0xA405] == 24  # the camera's tags stay


def test_pose_conventions(world: SyntheticWorld, cameras: dict[str, Any]) -> None:
    for pose, photo in zip(world.poses, cameras["photos"], strict=True):
        rot = np.array(photo["world_from_cam"])
        assert rot.T @ rot == pytest.approx(np.eye(3), abs=1e-12) and np.linalg.det(rot) == pytest.approx(1.0)
        tilt = np.degrees(np.arccos(-rot[2, 2]))
        h = np.radians(photo["heading_deg"])
        up_in_image = -rot[:, 1]  # image top, i.e. the camera's -y axis
        assert (
            np.degrees(np.arccos(up_in_image[:2] @ [np.sin(h), np.cos(h)] / np.hypot(*up_in_image[:2]))) < 5
        )
        if pose.kind == "nadir":
            assert tilt < 4 and photo["heading_deg"] in (90.0, 270.0)
        else:
            assert 15 < tilt < 35
        assert photo["centre_utm"]["altitude"] - OPTS.ground_alt_m == pytest.approx(
            OPTS.flying_height_m, abs=2
        )
    headings = [p["heading_deg"] for p in cameras["photos"][:6]]
    assert headings == [90.0] * 3 + [270.0] * 3  # serpentine: east, then back west


def test_projection_lands_where_rays_hit(project: SyntheticTruth, world: SyntheticWorld) -> None:
    corners = []  # roof corners, 0.4 m inside along the diagonals
    for b in world.scene.buildings:
        inward = np.array([b.cx, b.cy]) - b.corners()
        xy = b.corners() + 0.4 * inward / np.linalg.norm(inward, axis=1, keepdims=True)
        corners.append(np.column_stack([xy, np.full(4, b.roof_z)]))
    pts = np.vstack([_dsm_points(project, world, 400, seed=1), *corners])
    intr = world.intrinsics
    n_checked = 0
    for pose in world.poses:
        seen = visible(world.scene, pose, intr, pts)
        pix = intr.project(pose.cam_from_world(pts[seen]))
        hits = cast_rays(world.scene, pose.centre, pose.rays_world(intr.pixel_rays(pix)))
        assert np.abs(hits.points - pts[seen]).max() < 0.01, pose.name
        n_checked += int(seen.sum())
    assert n_checked > 1000


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of the fine detail (band-passed) of two 80 x 80 patches."""
    a, b = (cv2.GaussianBlur(v, (0, 0), 1.0) - cv2.GaussianBlur(v, (0, 0), 5.0) for v in (a, b))
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _ortho_patch(project: SyntheticTruth, world: SyntheticWorld, pose: CameraPose, pixel: np.ndarray) -> Any:
    """80 x 80 truth cells around where `pixel` looks: their local 3D points and orthophoto gray."""
    ray = pose.rays_world(world.intrinsics.pixel_rays(pixel[None]))
    centre = cast_rays(world.scene, pose.centre, ray).points[0] + world.utm_origin
    with rasterio.open(project.orthophoto_tif) as ortho, rasterio.open(project.dsm_tif) as dsm:
        row, col = ortho.index(centre[0], centre[1])
        window = rasterio.windows.Window(col - 40, row - 40, 80, 80)
        gray, z = ortho.read(window=window).mean(axis=0), dsm.read(1, window=window).astype(np.float64)
        rr, cc = np.mgrid[row - 40 : row + 40, col - 40 : col + 40]
        xs, ys = rasterio.transform.xy(ortho.transform, rr.ravel(), cc.ravel())
    return world.local_from_utm(np.column_stack([xs, ys, z.ravel()])), gray.ravel()


def test_photo_shows_the_true_orthophoto_there(project: SyntheticTruth, world: SyntheticWorld) -> None:
    """Orthophoto patches near the corners, projected with the truth camera, match the photo there,
    and would not without the distortion (shifted ~8 px there)."""
    pose, intr = world.poses[4], world.intrinsics  # middle photo of the second line
    undistorted = Intrinsics(intr.width, intr.height, intr.focal_px, intr.cx, intr.cy, 0.0, 0.0)
    photo = np.asarray(Image.open(project.images_dir / pose.name).convert("L"), np.float32)
    for corner in ([60, 60], [580, 60], [60, 420], [580, 420]):
        for step in range(6):  # the first patch near the corner that is all visible ground or roof
            pixel = np.array(corner) + np.sign([320, 240] - np.array(corner)) * 30 * step
            pts, gray = _ortho_patch(project, world, pose, pixel.astype(float))
            if visible(world.scene, pose, intr, pts).all():
                break
        scores = []
        for camera in (intr, undistorted):
            pix = camera.project(pose.cam_from_world(pts)).astype(np.float32) - 0.5
            seen = cv2.remap(photo, pix[:, 0:1], pix[:, 1:2], cv2.INTER_LINEAR)
            scores.append(_ncc(seen.reshape(80, 80), gray.reshape(80, 80).astype(np.float32)))
        assert scores[0] > 0.85 and scores[1] < 0.5, (corner, scores)


def test_dsm_and_orthophoto(project: SyntheticTruth, world: SyntheticWorld) -> None:
    with rasterio.open(project.dsm_tif) as dsm, rasterio.open(project.orthophoto_tif) as ortho:
        assert dsm.crs.to_epsg() == utm_epsg(OPTS.center_lat, OPTS.center_lon) == project.epsg
        assert dsm.dtypes == ("float32",) and dsm.nodata == -9999.0
        assert (ortho.crs, ortho.transform, ortho.shape) == (dsm.crs, dsm.transform, dsm.shape)
        assert ortho.count == 3 and ortho.dtypes[0] == "uint8"
        assert dsm.res == (project.resolution_m, project.resolution_m)
        z = dsm.read(1)
        summary = json.loads(project.truth_json.read_text())
        for b in summary["buildings"]:
            (roof,) = next(dsm.sample([b["centre_utm"]]))
            assert roof == pytest.approx(b["roof_altitude"], abs=1e-3)
            out = np.asarray(b["corners_utm"]) * 1.6 - 0.6 * np.asarray(b["centre_utm"])  # around it
            ground = np.array([v[0] for v in dsm.sample([tuple(p) for p in out])])
            assert np.all(roof - ground > 3.5) and 4.0 <= b["height_m"] <= 12.0 + OPTS.relief_m
    pts = _dsm_points(project, world, 2000, seed=2)
    truth = world.scene.surface_height(pts[:, 0], pts[:, 1])
    assert np.abs(pts[:, 2] - truth).max() < 1e-3  # the DSM sits on the scene, cell centres exact
    ground = z[z < np.percentile(z, 95)]
    assert 0.5 * OPTS.relief_m < np.ptp(ground) < 2.0 * OPTS.relief_m


def test_oblique_occlusion(world: SyntheticWorld) -> None:
    """Ground just behind a building (seen from an oblique) is hidden; the ray meets the building."""
    scene, intr = world.scene, world.intrinsics
    found = 0
    for pose in (p for p in world.poses if p.kind == "oblique"):
        for i, b in enumerate(scene.buildings):
            away = np.array([b.cx, b.cy]) - pose.centre[:2]
            away /= np.linalg.norm(away)
            reach = np.hypot(b.half_u, b.half_v) + 1.5
            behind, front = np.array([b.cx, b.cy]) + reach * away, np.array([b.cx, b.cy]) - reach * away
            pts = np.array([[*behind, 0.0], [*front, 0.0]])
            pts[:, 2] = scene.terrain.height(pts[:, 0], pts[:, 1])
            seg = pose.centre + np.linspace(0, 1, 4000)[:, None] * (pts[0] - pose.centre)
            blocked = np.any(b.inside(seg[:, 0], seg[:, 1]) & (seg[:, 2] <= b.roof_z))
            pix = intr.project(pose.cam_from_world(pts))
            in_image = np.all((pix >= 0) & (pix < [intr.width, intr.height]), axis=1)
            seen = visible(scene, pose, intr, pts)
            assert seen[1] or not in_image[1]  # the ground in front of the building shows
            if not (blocked and in_image[0]):
                continue
            found += 1
            assert not seen[0]
            d = (pts[0] - pose.centre) / np.linalg.norm(pts[0] - pose.centre)
            hit = cast_rays(scene, pose.centre, d[None])
            assert hit.building[0] == i and hit.kind[0] in (ROOF, WALL)
    assert found >= 3
    oblique = next(p for p in world.poses if p.kind == "oblique")
    jj, ii = np.meshgrid(np.arange(0, 640, 4) + 0.5, np.arange(0, 480, 4) + 0.5)
    rays = oblique.rays_world(intr.pixel_rays(np.column_stack([jj.ravel(), ii.ravel()])))
    assert np.count_nonzero(cast_rays(scene, oblique.centre, rays).kind == WALL) > 20  # walls show


def test_neighbours_match_with_sift(project: SyntheticTruth) -> None:
    sift = cv2.SIFT_create()
    gray = [
        cv2.imread(str(project.images_dir / n), cv2.IMREAD_GRAYSCALE)
        for n in ("IMG_0001.JPG", "IMG_0002.JPG")
    ]
    (k1, d1), (k2, d2) = (sift.detectAndCompute(g, None) for g in gray)
    assert len(k1) > 1500 and len(k2) > 1500
    pairs = cv2.BFMatcher().knnMatch(d1, d2, k=2)
    good = [m for m, n in pairs if m.distance < 0.8 * n.distance]
    p1 = np.float32([k1[m.queryIdx].pt for m in good])
    p2 = np.float32([k2[m.trainIdx].pt for m in good])
    _, inliers = cv2.findFundamentalMat(p1, p2, cv2.FM_RANSAC, 1.5, 0.999)
    assert int(inliers.sum()) > 300
