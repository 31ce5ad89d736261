"""ODM's --sfm-algorithm incremental, triangulation and planar from one project's matches (issue #18).

    .venv/bin/python benchmarks/bench_sfm_algorithms.py PROJECT [--truth DIR] [--noise-deg 1.0] [--json FILE]

PROJECT is a project processed through `opensfm` (its COLMAP database, images.json, coords.txt). Each
algorithm maps a copy of the database through the stage's own mapping child (`map_in_process`: the focal
held at EXIF's, then settled, as in a run), each in a process of its own so that the peak memory reported
is its mapping child's alone. The triangulation takes the photos' recorded gimbal angles, or with --truth
(a synthetic survey's truth/ folder) the true ones plus --noise-deg of seeded noise per angle. Printed per
algorithm: wall time, photos registered, points, reprojection error, the mapping child's peak RSS, the
notes (a model set aside for incremental mapping says so) and the camera centres' distance to the
incremental model's.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap
from scipy.spatial.transform import Rotation

from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.photos.photo import Photo
from odm_core.sfm.focal import hold_focal
from odm_core.sfm.mapping_process import map_in_process
from odm_core.sfm.triangulation import gimbal_world_from_cam, photo_rotations

ALGORITHMS = ("incremental", "planar", "triangulation")


def true_angles(truth: Path, noise_deg: float) -> dict[str, tuple[float, float, float]]:
    """Yaw (from true north), pitch, roll per photo from the truth's world_from_cam (UTM grid), plus noise."""
    cameras = json.loads((truth / "cameras.json").read_text())
    zone = cameras["epsg"] % 100
    central_lon = zone * 6 - 183
    level = gimbal_world_from_cam(0.0, 0.0, 0.0)
    rng = np.random.default_rng(4)
    out = {}
    for cam in cameras["photos"]:
        minus_yaw, pitch, roll = Rotation.from_matrix(np.array(cam["world_from_cam"]) @ level.T).as_euler(
            "ZXY", degrees=True
        )
        lat, lon = cam["centre_wgs84"]["lat"], cam["centre_wgs84"]["lon"]
        convergence = (central_lon - lon) * math.sin(math.radians(lat))
        yaw, pitch, roll = np.array([-minus_yaw - convergence, pitch, roll]) + rng.normal(0, noise_deg, 3)
        out[cam["filename"]] = (float(yaw), float(pitch), float(roll))
    return out


def measure(project: Path, algorithm: str, truth: Path | None, noise_deg: float) -> dict[str, Any]:
    """One algorithm's mapping of a copy of the project's database (run in a process of its own)."""
    tree = ProjectTree(project)
    photos = [Photo.from_json(p) for p in json.loads(tree.images_json.read_text())]
    if truth is not None:
        angles = true_angles(truth, noise_deg)
        photos = [
            replace(p, yaw=angles[p.filename][0], pitch=angles[p.filename][1], roll=angles[p.filename][2])
            for p in photos
        ]
    georef = GeoReference.read(tree.coords_txt)
    rotations, notes = photo_rotations(algorithm, photos, georef)
    with tempfile.TemporaryDirectory(prefix="bench-sfm-") as work:
        db = Path(work) / "database.db"
        shutil.copy(tree.colmap_database, db)
        start = time.perf_counter()
        rec, focal_note, mapping_notes = map_in_process(
            db,
            tree.images,
            Path(work) / "mapper",
            True,
            len(photos),
            lambda f, t: None,
            hold_focal(db),
            rotations,
            algorithm == "planar",
        )
        seconds = time.perf_counter() - start
        model = Path(work) / "model"
        model.mkdir()
        rec.write(str(model))
        kept = project.parent / f".bench-{algorithm}"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(model, kept)
    return {
        "algorithm": algorithm,
        "seconds": round(seconds, 1),
        "registered": rec.num_reg_images(),
        "points": rec.num_points3D(),
        "reprojection_px": round(float(rec.compute_mean_reprojection_error()), 4),
        "focal_px": [round(float(c.mean_focal_length()), 1) for c in rec.cameras.values()],
        "mapping_peak_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "notes": list(notes) + list(mapping_notes),
        "model": str(kept),
    }


def centre_distances(model: Path, reference: Path) -> list[float]:
    ours, ref = pycolmap.Reconstruction(model), pycolmap.Reconstruction(reference)
    out = []
    for image in ref.images.values():
        mine = ours.find_image_with_name(image.name)
        if image.has_pose and mine is not None and mine.has_pose:
            out.append(float(np.linalg.norm(mine.projection_center() - image.projection_center())))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--truth", type=Path)
    parser.add_argument("--noise-deg", type=float, default=1.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", choices=ALGORITHMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.project.resolve(), args.one, args.truth, args.noise_deg)))
        return
    results = []
    for algorithm in ALGORITHMS:
        command = [
            sys.executable,
            __file__,
            str(args.project),
            "--one",
            algorithm,
            "--noise-deg",
            str(args.noise_deg),
        ]
        command += ["--truth", str(args.truth)] if args.truth else []
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    reference = Path(results[0]["model"])
    for r in results:
        d = centre_distances(Path(r["model"]), reference)
        r["centres_vs_incremental_m"] = {"median": round(float(np.median(d)), 3), "max": round(max(d), 3)}
        print(json.dumps({k: v for k, v in r.items() if k != "model"}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
