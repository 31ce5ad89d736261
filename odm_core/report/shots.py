"""ODM's odm_report/shots.geojson from a reconstruction.json (the report and the merge write it)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from odm_core.geo.georef import GeoReference, utm_to_lla


def shots_geojson(recon: dict, georef: GeoReference) -> dict:
    """ODM's shots.geojson: one Point per registered photo at its camera centre.

    Properties as ODM writes them: `translation` is the camera centre in UTM and `rotation` the
    world_from_cam rotation as an axis-angle vector; geometry is longitude, latitude, altitude.
    """
    features = []
    for name, shot in sorted(recon["shots"].items()):
        cam_from_world = Rotation.from_rotvec(shot["rotation"])
        world_from_cam = cam_from_world.inv()
        centre = -world_from_cam.apply(np.asarray(shot["translation"], float))
        centre_utm = centre + georef.offset
        lon, lat, alt = utm_to_lla(georef.epsg, centre_utm)[0]
        cam = recon["cameras"][shot["camera"]]
        features.append(
            {
                "type": "Feature",
                "properties": {
                    "filename": name,
                    "camera": shot["camera"],
                    "focal": cam.get("focal", cam.get("focal_x")),
                    "width": cam["width"],
                    "height": cam["height"],
                    "capture_time": shot.get("capture_time", 0),
                    "translation": centre_utm.tolist(),
                    "rotation": world_from_cam.as_rotvec().tolist(),
                },
                "geometry": {"type": "Point", "coordinates": [lon, lat, alt]},
            }
        )
    return {"type": "FeatureCollection", "features": features}
