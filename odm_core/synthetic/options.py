"""Options of the synthetic ground-truth generator and the summary it returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

SENSOR_35MM_WIDTH_MM = 36.0  # "35 mm equivalent" is taken on the frame width, as OpenSfM/ODM do


class SyntheticOptions(BaseModel):
    """A flight over a synthetic scene: photo grid, camera, scene and noise settings (all seeded)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_cols: int = Field(5, ge=1, le=40, description="Photos per flight line (lines run east-west).")
    n_rows: int = Field(4, ge=1, le=40, description="Flight lines, flown as a serpentine.")
    n_oblique: int = Field(4, ge=0, le=32, description="Extra oblique photos around the block.")
    oblique_tilt_deg: float = Field(25.0, ge=0.0, le=40.0, description="Mean oblique tilt from nadir.")
    flying_height_m: float = Field(60.0, gt=5.0, le=1000.0, description="Above the mean ground.")
    image_width: int = Field(1200, ge=64, le=8000)
    image_height: int = Field(900, ge=64, le=8000)
    focal_35mm: float = Field(24.0, gt=5.0, le=300.0, description="35 mm equivalent focal (width based).")
    k1: float = Field(-0.05, ge=-0.3, le=0.3, description="COLMAP RADIAL k1.")
    k2: float = Field(0.01, ge=-0.3, le=0.3, description="COLMAP RADIAL k2.")
    forward_overlap: float = Field(0.75, ge=0.0, lt=0.98)
    side_overlap: float = Field(0.65, ge=0.0, lt=0.98)
    center_lat: float = Field(46.5, ge=-80.0, le=84.0)
    center_lon: float = Field(6.6, ge=-180.0, lt=180.0)
    ground_alt_m: float = Field(400.0, description="Altitude of the mean ground (metres, as EXIF).")
    seed: int = 0
    sensor_width_mm: float = Field(6.17, gt=0.5, le=60.0, description="Sensor height follows the aspect.")
    camera_make: str = "odmflow"
    camera_model: str = "SyntheticCam 6.17mm"
    start_time: str = Field("2024:06:01 10:00:00", description="EXIF DateTimeOriginal of photo 1.")
    relief_m: float = Field(6.0, ge=0.0, le=50.0, description="Terrain relief (max - min) under the block.")
    n_buildings: int = Field(5, ge=0, le=8)
    attitude_jitter_deg: float = Field(1.0, ge=0.0, le=10.0, description="Sigma of roll/pitch/yaw noise.")
    position_jitter_m: float = Field(0.3, ge=0.0, le=10.0, description="Sigma of the drone's path error.")
    gps_sigma_h_m: float = Field(1.0, ge=0.0, description="EXIF GPS noise sigma per horizontal axis.")
    gps_sigma_v_m: float = Field(2.0, ge=0.0, description="EXIF GPS altitude noise sigma.")
    gps_drift_m: float = Field(
        0.0, ge=0.0, description="Consumer GPS: horizontal random walk, about this far."
    )
    gps_altitude_ramp: float = Field(0.0, description="Consumer GPS: altitude error rising to this x height.")
    gps_jump_m: float = Field(0.0, ge=0.0, description="Consumer GPS: the middle photo's fix this far off.")
    gps_bias_m: float = Field(
        0.0, ge=0.0, description="A constant error of this length on every fix (a seeded 3D direction)."
    )
    n_gcps: int = Field(0, ge=0, le=30, description="Ground targets written to gcp_list.txt as GCPs.")
    n_check_points: int = Field(0, ge=0, le=30, description="Ground targets written as check points (CHK*).")
    gcp_sigma_px: float = Field(0.5, ge=0.0, le=20.0, description="Noise of the targets' marks, pixels.")
    gcp_crs: str | None = Field(
        None, description="CRS of gcp_list.txt (e.g. EPSG:4326); None: the survey's UTM zone by name."
    )
    gps_tags: bool = Field(True, description="Write the GPS fix into EXIF; False gives a survey without GPS.")
    exposure_sigma: float = Field(0.03, ge=0.0, le=0.3, description="Per-photo gain noise (relative).")
    sensor_noise_dn: float = Field(1.0, ge=0.0, le=20.0, description="Per-pixel noise sigma, 8-bit DN.")
    jpeg_quality: int = Field(92, ge=50, le=100)
    truth_resolution_m: float | None = Field(None, gt=0.0, description="DSM/orthophoto cell; None: GSD/2.")
    workers: int = Field(2, ge=1, le=64, description="Render threads (outputs do not depend on it).")

    @model_validator(mode="after")
    def _monotonic_distortion(self) -> SyntheticOptions:
        f = self.focal_35mm / SENSOR_35MM_WIDTH_MM * self.image_width
        r = np.linspace(0.0, 1.3 * np.hypot(self.image_width, self.image_height) / (2 * f), 256)
        if np.any(1 + 3 * self.k1 * r**2 + 5 * self.k2 * r**4 <= 0.05):
            raise ValueError(f"k1={self.k1}, k2={self.k2} fold the image: distortion must be monotonic")
        return self

    @property
    def focal_px(self) -> float:
        return self.focal_35mm / SENSOR_35MM_WIDTH_MM * self.image_width

    @property
    def focal_mm(self) -> float:
        return self.focal_35mm / SENSOR_35MM_WIDTH_MM * self.sensor_width_mm

    @property
    def sensor_height_mm(self) -> float:
        return self.sensor_width_mm * self.image_height / self.image_width

    @property
    def gsd_m(self) -> float:
        """Ground sampling distance at the image centre over the mean ground."""
        return self.flying_height_m / self.focal_px

    @property
    def resolution_m(self) -> float:
        """Cell size of the truth DSM and orthophoto (GSD/2 rounded to 5 mm unless set)."""
        if self.truth_resolution_m is not None:
            return self.truth_resolution_m
        return max(0.005, round(self.gsd_m / 2 / 0.005) * 0.005)


@dataclass(frozen=True)
class SyntheticTruth:
    """Where a generated project's photos and truth lie, and its key numbers."""

    project_dir: Path
    images_dir: Path
    cameras_json: Path
    dsm_tif: Path
    orthophoto_tif: Path
    truth_json: Path
    epsg: int
    gsd_m: float
    resolution_m: float
    flying_height_m: float
    n_photos: int
    gcp_list: Path | None = None  # the project's gcp_list.txt, when targets were placed
