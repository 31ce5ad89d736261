"""One photo's metadata, as the `dataset` stage writes it to ODM's images.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Photo:
    """A photo's EXIF/XMP facts. Keys follow ODM's images.json (ODM_Photo) where ODM has them."""

    filename: str
    width: int
    height: int
    camera_make: str | None = None
    camera_model: str | None = None
    orientation: int = 1
    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None  # metres above the ellipsoid/MSL as the EXIF states, plus --gps-z-offset
    utc_time: float | None = None  # capture time, milliseconds since the Unix epoch (UTC)
    focal_length_mm: float | None = None
    focal_length_35mm: float | None = None
    focal_ratio: float | None = None  # focal length / sensor width (ODM's normalised focal)
    relative_altitude: float | None = None  # DJI XMP RelativeAltitude, metres above take-off
    yaw: float | None = None  # gimbal angles in degrees (DJI XMP GimbalYaw/Pitch/RollDegree)
    pitch: float | None = None
    roll: float | None = None
    gps_xy_stddev: float | None = None  # metres (--gps-accuracy)
    gps_z_stddev: float | None = None
    hemisphere_assumed: bool = False  # GPS without N/S or E/W references: N and E were assumed (as ODM)
    pixel_digest: str | None = None  # SHA-1 of the decoded pixels: equal for duplicate photos

    @property
    def has_gps(self) -> bool:
        return self.latitude is not None and self.longitude is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Photo:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
