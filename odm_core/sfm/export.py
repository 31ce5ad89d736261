"""Write a pycolmap reconstruction in ODM's formats: reconstruction.json, cameras.json, PLY and LAZ."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pycolmap
from scipy.spatial.transform import Rotation

from odm_core.artifacts import atomic_path, write_json
from odm_core.cloud.las import las_points, write_las
from odm_core.geo.georef import GeoReference, utm_to_lla
from odm_core.layout import ProjectTree
from odm_core.photos.photo import Photo

PROJECTION_TYPE: dict[str, str] = {
    "RADIAL": "perspective",
    "SIMPLE_RADIAL": "perspective",
    "OPENCV": "brown",
    "RADIAL_FISHEYE": "fisheye",
    "OPENCV_FISHEYE": "fisheye_opencv",
}


def write_all(
    tree: ProjectTree,
    rec: pycolmap.Reconstruction,
    photos: list[Photo],
    georef: GeoReference | None,
    camera_lens: str,
) -> list[Path]:
    """Every output of the opensfm stage except stats; returns the files written."""
    cam_ids = {cid: camera_id(cam, photos_of(rec, cid, photos)) for cid, cam in rec.cameras.items()}
    cameras = {cam_ids[cid]: opensfm_camera(cam) for cid, cam in rec.cameras.items()}
    outputs = write_colmap_model(rec, tree.colmap_model)
    doc = reconstruction_json(rec, photos, georef, cam_ids, cameras)
    outputs.append(write_json(tree.reconstruction_json, [doc]))
    outputs.append(write_json(tree.cameras_json, cameras))
    xyz, rgb = sparse_points(rec)
    outputs.append(write_ply(tree.sparse_ply, xyz, rgb))
    if georef is not None:
        outputs.append(write_laz(tree.sparse_laz, xyz + georef.offset, rgb, georef))
    elif tree.sparse_laz.exists():
        tree.sparse_laz.unlink()  # a LAZ from an earlier, georeferenced run would now be wrong
    return outputs


def photos_of(rec: pycolmap.Reconstruction, camera: int, photos: list[Photo]) -> list[Photo]:
    names = {im.name for im in rec.images.values() if im.camera_id == camera}
    return [p for p in photos if p.filename in names]


def camera_id(cam: pycolmap.Camera, photos: list[Photo]) -> str:
    """OpenSfM's camera key: 'v2 make model width height projection focal_ratio'."""
    p = photos[0] if photos else None
    make = (p.camera_make or "unknown").lower() if p else "unknown"
    model = (p.camera_model or "unknown").lower() if p else "unknown"
    ratio = p.focal_ratio if p and p.focal_ratio else 0.0
    proj = PROJECTION_TYPE.get(cam.model_name, "perspective")
    return f"v2 {make} {model} {cam.width} {cam.height} {proj} {ratio:.4f}"


def opensfm_camera(cam: pycolmap.Camera) -> dict[str, float | int | str]:
    """A camera in OpenSfM's normalised form (focal and principal point over the larger image side)."""
    size = float(max(cam.width, cam.height))
    p = list(cam.params)
    base: dict[str, float | int | str] = {
        "projection_type": PROJECTION_TYPE.get(cam.model_name, "perspective"),
        "width": cam.width,
        "height": cam.height,
    }
    if cam.model_name in ("RADIAL", "RADIAL_FISHEYE"):
        return {**base, "focal": p[0] / size, "k1": p[3], "k2": p[4]}
    if cam.model_name == "SIMPLE_RADIAL":
        return {**base, "focal": p[0] / size, "k1": p[3], "k2": 0.0}
    extra = {"k1": p[4], "k2": p[5]}
    if cam.model_name == "OPENCV":
        extra |= {"p1": p[6], "p2": p[7], "k3": 0.0}
    else:  # OPENCV_FISHEYE
        extra |= {"k3": p[6], "k4": p[7]}
    return {
        **base,
        "focal_x": p[0] / size,
        "focal_y": p[1] / size,
        "c_x": (p[2] - cam.width / 2) / size,
        "c_y": (p[3] - cam.height / 2) / size,
        **extra,
    }


def reconstruction_json(
    rec: pycolmap.Reconstruction,
    photos: list[Photo],
    georef: GeoReference | None,
    cam_ids: dict[int, str],
    cameras: dict[str, dict[str, float | int | str]],
) -> dict[str, object]:
    """OpenSfM's reconstruction.json (one model); coordinates in UTM minus the coords.txt offset."""
    by_name = {p.filename: p for p in photos}
    shots = {}
    for im in sorted(rec.images.values(), key=lambda i: i.name):
        if not im.has_pose:
            continue
        cam_from_world = im.cam_from_world()
        p = by_name[im.name]
        shots[im.name] = {
            "rotation": Rotation.from_matrix(cam_from_world.rotation.matrix()).as_rotvec().tolist(),
            "translation": list(map(float, cam_from_world.translation)),
            "camera": cam_ids[im.camera_id],
            "orientation": p.orientation,
            "capture_time": (p.utc_time or 0.0) / 1000.0,
            "gps_dop": p.gps_xy_stddev or 0.0,
        }
    points = {
        str(pid): {"color": list(map(int, pt.color)), "coordinates": list(map(float, pt.xyz))}
        for pid, pt in rec.points3D.items()
    }
    doc: dict[str, object] = {"cameras": cameras, "shots": shots, "points": points}
    if georef is not None:
        lon, lat, alt = utm_to_lla(georef.epsg, georef.offset)[0]
        doc["reference_lla"] = {"latitude": lat, "longitude": lon, "altitude": alt}
    return doc


def write_colmap_model(rec: pycolmap.Reconstruction, folder: Path) -> list[Path]:
    """COLMAP's binary model, written beside its final place, then renamed into it."""
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rec.write_binary(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return sorted(folder.iterdir())


def sparse_points(rec: pycolmap.Reconstruction) -> tuple[np.ndarray, np.ndarray]:
    """The sparse cloud as N x 3 coordinates and N x 3 uint8 colours."""
    pts = list(rec.points3D.values())
    xyz = np.array([p.xyz for p in pts], dtype=np.float64).reshape(-1, 3)
    rgb = np.array([p.color for p in pts], dtype=np.uint8).reshape(-1, 3)
    return xyz, rgb


def write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> Path:
    """Binary little-endian PLY with float x, y, z and uchar red, green, blue."""
    vertex = np.empty(len(xyz), dtype=[("p", "<f4", 3), ("c", "u1", 3)])
    vertex["p"], vertex["c"] = xyz, rgb
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(xyz)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        f.write(header.encode("ascii"))
        f.write(vertex.tobytes())
    return path


def write_laz(path: Path, xyz_utm: np.ndarray, rgb: np.ndarray, georef: GeoReference) -> Path:
    """LAZ (LAS 1.4, point format 7 with RGB) in full UTM coordinates with the CRS as WKT."""
    return write_las(path, las_points(xyz_utm, rgb, georef.crs), compress=True)


def write_reference_lla(tree: ProjectTree, georef: GeoReference | None) -> list[Path]:
    """OpenSfM's reference_lla.json (the model's origin in WGS84) when georeferenced; removed otherwise,
    so later stages never take a local model for a georeferenced one."""
    if georef is None:
        tree.reference_lla_json.unlink(missing_ok=True)
        return []
    lon, lat, alt = utm_to_lla(georef.epsg, georef.offset)[0]
    reference = {"latitude": float(lat), "longitude": float(lon), "altitude": float(alt)}
    return [write_json(tree.reference_lla_json, reference)]
