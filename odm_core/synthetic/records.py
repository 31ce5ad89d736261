"""The truth's JSON files: cameras.json (exact poses, intrinsics, EXIF fixes) and truth.json (summary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from odm_core.artifacts import write_json
from odm_core.synthetic.exif import GpsFix, capture_time
from odm_core.synthetic.truth import TruthGrid
from odm_core.synthetic.world import SyntheticWorld

CONVENTIONS = {
    "world": "UTM easting, northing (EPSG in 'epsg') and altitude, metres",
    "camera": "COLMAP: x right, y down, z forward (optical axis); x_world = world_from_cam @ x_cam + centre",
    "pixels": "COLMAP: top-left pixel centre at (0.5, 0.5)",
    "distortion": "RADIAL: x_d = x_u * (1 + k1 r^2 + k2 r^4), r^2 = x_u^2 + y_u^2 (normalised coordinates)",
    "nadir_heading": "image top points along the flight; heading_deg is its azimuth from UTM grid north",
    "focal_35mm": "35 mm equivalent on the frame width: focal_px = focal_35mm / 36 * width",
}


def _photo_record(world: SyntheticWorld, index: int, fix: GpsFix) -> dict[str, Any]:
    pose = world.poses[index]
    utm = world.utm_from_local(pose.centre)[0]
    lla = world.lla_from_local(pose.centre)[0]
    fix_utm = world.utm_from_local(
        world.local_from_lla(np.array([fix.lat]), np.array([fix.lon]), np.array([fix.alt]))
    )[0]
    rot = pose.world_from_cam
    written = world.opts.gps_tags
    return {
        "filename": pose.name,
        "kind": pose.kind,
        "heading_deg": pose.heading_deg,
        "tilt_deg": pose.tilt_deg,
        "time": capture_time(world.opts, index),
        "world_from_cam": rot.tolist(),
        "cam_from_world": {"rotation": rot.T.tolist(), "translation": (-rot.T @ utm).tolist()},
        "centre_utm": {"easting": utm[0], "northing": utm[1], "altitude": utm[2]},
        "centre_wgs84": {"lat": lla[0], "lon": lla[1], "alt": lla[2]},
        "height_above_mean_ground_m": float(pose.centre[2]),
        "exif_gps": {"lat": fix.lat, "lon": fix.lon, "alt": fix.alt} if written else None,
        "exif_gps_error_m": (
            dict(zip(("east", "north", "up"), (fix_utm - utm).tolist(), strict=True)) if written else None
        ),
    }


def write_cameras_json(path: Path, world: SyntheticWorld, fixes: list[GpsFix]) -> Path:
    opts = world.opts
    intrinsics = world.intrinsics.to_json() | {
        "focal_mm": opts.focal_mm,
        "focal_35mm": opts.focal_35mm,
        "sensor_width_mm": opts.sensor_width_mm,
        "sensor_height_mm": opts.sensor_height_mm,
    }
    return write_json(
        path,
        {
            "epsg": world.epsg,
            "conventions": CONVENTIONS,
            "intrinsics": intrinsics,
            "flying_height_m": opts.flying_height_m,
            "gsd_m": opts.gsd_m,
            "gps_sigma_m": {"horizontal": opts.gps_sigma_h_m, "vertical": opts.gps_sigma_v_m},
            "photos": [_photo_record(world, i, fix) for i, fix in enumerate(fixes)],
        },
    )


def _utm_bounds(world: SyntheticWorld, b: tuple[float, ...]) -> list[float]:
    ox, oy = world.utm_origin[:2]
    return [b[0] + ox, b[1] + oy, b[2] + ox, b[3] + oy]


def _buildings(world: SyntheticWorld) -> list[dict[str, Any]]:
    oz = float(world.utm_origin[2])
    return [
        {
            "corners_utm": (b.corners() + world.utm_origin[:2]).tolist(),
            "centre_utm": [b.cx + world.utm_origin[0], b.cy + world.utm_origin[1]],
            "roof_altitude": b.roof_z + oz,
            "height_m": b.height_m,
        }
        for b in world.scene.buildings
    ]


def write_truth_json(path: Path, world: SyntheticWorld, grid: TruthGrid, files: dict[str, str]) -> Path:
    opts = world.opts
    terrain = world.scene.terrain
    return write_json(
        path,
        {
            "epsg": world.epsg,
            "gsd_m": opts.gsd_m,
            "resolution_m": grid.res_m,
            "flying_height_m": opts.flying_height_m,
            "ground_alt_m": opts.ground_alt_m,
            "n_photos": len(world.poses),
            "n_nadir": sum(p.kind == "nadir" for p in world.poses),
            "n_oblique": sum(p.kind == "oblique" for p in world.poses),
            "dsm_bounds_utm": list(grid.bounds),
            "dsm_shape": [grid.height, grid.width],
            "nadir_footprint_bounds_utm": _utm_bounds(world, world.block),
            "scene_bounds_utm": _utm_bounds(world, world.scene.bounds),
            "utm_origin": world.utm_origin.tolist(),
            "terrain_altitude_range": [
                float(terrain.z.min()) + opts.ground_alt_m,
                terrain.z_max + opts.ground_alt_m,
            ],
            "buildings": _buildings(world),
            "sun_direction_enu": world.scene.sun.tolist(),
            "files": files,
            "conventions": CONVENTIONS,
            "options": opts.model_dump(exclude={"workers"}),  # workers change no output
        },
    )
