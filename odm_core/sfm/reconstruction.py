"""Figures read from an OpenSfM reconstruction (reconstruction.json's dict): camera centres, the GSD."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def camera_centres(recon: dict) -> np.ndarray:
    """N x 3 camera centres (-R^T t) of an OpenSfM reconstruction's shots, in the model frame."""
    shots = list(recon.get("shots", {}).values())
    if not shots:
        return np.zeros((0, 3))
    rotations = Rotation.from_rotvec([s["rotation"] for s in shots])
    translations = np.array([s["translation"] for s in shots], dtype=float)
    return -rotations.inv().apply(translations)


def average_gsd_cm(recon: dict) -> float | None:
    """ODM's average GSD (cm/px): each shot's height above the median sparse point over its focal in px."""
    if not recon["points"]:
        return None
    ground_z = float(np.median([p["coordinates"][2] for p in recon["points"].values()]))
    gsds = []
    for shot in recon["shots"].values():
        cam = recon["cameras"][shot["camera"]]
        focal_px = cam.get("focal", cam.get("focal_x", 0.0)) * max(cam["width"], cam["height"])
        centre_z = -Rotation.from_rotvec(shot["rotation"]).inv().apply(shot["translation"])[2]
        if centre_z > ground_z and focal_px > 0:
            gsds.append((centre_z - ground_z) / focal_px)
    return 100.0 * float(np.mean(gsds)) if gsds else None
