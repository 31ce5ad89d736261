"""The synthetic world: options -> camera, exact poses, scene and georeference (all deterministic)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from odm_core.geo.georef import lla_to_utm, utm_epsg, utm_to_lla
from odm_core.synthetic.camera import CameraPose, Intrinsics
from odm_core.synthetic.flight import flight_plan, ground_bounds
from odm_core.synthetic.options import SyntheticOptions
from odm_core.synthetic.scene import Scene, make_scene

SCENE_MARGIN_M = 15.0


@dataclass(frozen=True, eq=False)
class SyntheticWorld:
    """Everything a generation needs; positions are local (x east, y north, z up) about `utm_origin`."""

    opts: SyntheticOptions
    intrinsics: Intrinsics
    poses: tuple[CameraPose, ...]
    scene: Scene
    epsg: int
    utm_origin: np.ndarray  # (easting, northing, altitude) of the local frame's origin
    block: tuple[float, float, float, float]  # local bounds of the nadir photos' ground footprints

    def utm_from_local(self, pts: np.ndarray) -> np.ndarray:
        """Local points (N x 3) to UTM easting, northing, altitude (a translation)."""
        return np.atleast_2d(pts) + self.utm_origin

    def local_from_utm(self, pts: np.ndarray) -> np.ndarray:
        return np.atleast_2d(pts) - self.utm_origin

    def lla_from_local(self, pts: np.ndarray) -> np.ndarray:
        """Local points to latitude, longitude (degrees), altitude (N x 3)."""
        lon_lat_alt = utm_to_lla(self.epsg, self.utm_from_local(pts))
        return lon_lat_alt[:, [1, 0, 2]]

    def local_from_lla(self, lat: np.ndarray, lon: np.ndarray, alt: np.ndarray) -> np.ndarray:
        return self.local_from_utm(lla_to_utm(self.epsg, lat, lon, alt))


def make_world(opts: SyntheticOptions) -> SyntheticWorld:
    """Build the camera, flight and scene from the options (about a second)."""
    epsg = utm_epsg(opts.center_lat, opts.center_lon)
    centre = lla_to_utm(epsg, np.array([opts.center_lat]), np.array([opts.center_lon]), np.array([0.0]))[0]
    origin = np.array([np.round(centre[0]), np.round(centre[1]), opts.ground_alt_m])
    intr = Intrinsics.from_options(opts)
    poses = flight_plan(opts)
    nadir = [p for p in poses if p.kind == "nadir"]
    x0, y0, x1, y1 = (float(v) for v in ground_bounds(nadir, intr, 0.0))
    block = (x0, y0, x1, y1)
    reach = ground_bounds(poses, intr, -opts.relief_m - 1.0)
    bounds = (
        min(reach[0], block[0]) - SCENE_MARGIN_M,
        min(reach[1], block[1]) - SCENE_MARGIN_M,
        max(reach[2], block[2]) + SCENE_MARGIN_M,
        max(reach[3], block[3]) + SCENE_MARGIN_M,
    )
    targets = (opts.n_gcps, opts.n_check_points)
    scene = make_scene(opts.seed, bounds, block, opts.relief_m, opts.n_buildings, opts.gsd_m, targets)
    return SyntheticWorld(opts, intr, tuple(poses), scene, epsg, origin, block)
