"""Camera-centre accuracy of `dataset` + `opensfm` on a synthetic survey against its truth.

    .venv/bin/python benchmarks/accuracy_synthetic.py [--gps-sigma 0.3] [--seed 2] [--full]

Default: the survey the tests use (3 x 3 nadir + 2 oblique photos, 800 x 600); --full: the generator's
default survey (5 x 4 + 4, 1200 x 900).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from odm_core.layout import ProjectTree
from odm_core.options import DatasetOptions, OpensfmOptions, ReportOptions
from odm_core.stages.dataset import dataset
from odm_core.stages.odm_report import odm_report
from odm_core.stages.opensfm import opensfm
from odm_core.synthetic import SyntheticOptions, generate_synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--gps-sigma", type=float, default=0.3, help="EXIF GPS noise, metres (h and v)")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    size = (
        {}
        if args.full
        else {"n_cols": 3, "n_rows": 3, "n_oblique": 2, "image_width": 800, "image_height": 600}
    )
    opts = SyntheticOptions(
        **size, gps_sigma_h_m=args.gps_sigma, gps_sigma_v_m=args.gps_sigma, seed=args.seed
    )
    with tempfile.TemporaryDirectory() as tmp:
        truth = generate_synthetic(Path(tmp) / "survey", opts)
        tree = ProjectTree(truth.project_dir)
        t0 = time.perf_counter()
        dataset(tree, DatasetOptions())
        sfm = opensfm(tree, OpensfmOptions())
        odm_report(tree, ReportOptions())
        elapsed = time.perf_counter() - t0
        cams = {c["filename"]: c["centre_utm"] for c in json.loads(truth.cameras_json.read_text())["photos"]}
        shots = json.loads(tree.shots_geojson.read_text())["features"]
        err = np.array(
            [
                np.array(f["properties"]["translation"])
                - [cams[f["properties"]["filename"]][k] for k in ("easting", "northing", "altitude")]
                for f in shots
            ]
        )
    norms = np.linalg.norm(err, axis=1)
    h = truth.flying_height_m
    print(f"survey: {truth.n_photos} photos, flying height {h} m, GPS noise sigma {args.gps_sigma} m")
    print(
        f"registered {sfm.n_registered}/{sfm.n_photos}, reprojection {sfm.mean_reprojection_error_px:.3f} px"
    )
    print(
        f"centre error: RMS {np.sqrt(np.mean(norms**2)):.3f} m, max {norms.max():.3f} m "
        f"({100 * norms.max() / h:.2f}% of flying height), mean offset {np.round(err.mean(axis=0), 3)} m"
    )
    print(f"time: {elapsed:.1f} s")


if __name__ == "__main__":
    main()
