"""The 3D model on Brighton Beach: `odm_meshing` + `mvs_texturing` wall time and peak memory within a
default run with --gltf, the whole run's time, the GLB through the Khronos validator, and pictures of the
textured model from three viewpoints (ray cast, odm_core/evaluate/texture_truth.py).

    .venv/bin/python benchmarks/bench_textured_model.py [IMAGES_DIR] [--keep DIR] [--pictures DIR]

Runs `odmflow run PROJECT --gltf` as a user would on a fresh copy of the photos; the stages' own seconds
are the CLI's 'stage seconds' line; peak memory is the largest process of the run (the CLI, which meshes,
or a Dask worker, which ray casts and bakes) and each texturing model's workers' peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from odm_core.evaluate.texture_truth import TexturedScene, render_view
from odm_core.layout import ProjectTree

sys.path.insert(0, str(Path(__file__).parent))
from bench_dense import SHARED, odmflow  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SECONDS = re.compile(r"stage seconds: (.*)")
VIEWS = {
    "south-west, low": (-0.9, -0.9, 0.45),
    "north, high": (0.0, 1.0, 0.9),
    "east, oblique": (1.1, 0.1, 0.6),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("images", nargs="?", type=Path, default=SHARED / "images")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (else a temporary one)")
    default_pictures = Path(tempfile.gettempdir()) / "odmflow-textured-views"
    parser.add_argument("--pictures", type=Path, default=default_pictures, help="where the views go")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        tree = ProjectTree(args.keep or Path(tmp) / "project")
        shutil.copytree(args.images, tree.images)
        start = time.perf_counter()
        out = odmflow("run", str(tree.root), "--gltf")
        wall = time.perf_counter() - start
        seconds = dict(re.findall(r"(\w+) ([\d.]+)", SECONDS.search(out).group(1)))  # type: ignore[union-attr]
        mesh_s, tex_s = float(seconds["odm_meshing"]), float(seconds["mvs_texturing"])
        print(f"whole default run with --gltf: {wall:.1f} s wall; stage seconds {seconds}")
        print(f"odm_meshing {mesh_s:.1f} s + mvs_texturing {tex_s:.1f} s = {mesh_s + tex_s:.1f} s")
        for line in out.splitlines():
            if line.lstrip().startswith(("odm_meshing:", "mvs_texturing:", "view selection:", "openmvs:")):
                print(line)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"largest process of the run (CLI or Dask worker): {peak:.0f} MiB peak RSS")
        validate(tree.textured_model("3d", ".glb"))
        pictures(tree, args.pictures)


def validate(glb: Path) -> None:
    script = REPO / "scripts" / "gltf-validator" / "validate.js"
    done = subprocess.run(["node", str(script), str(glb)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"gltf-validator failed: {done.stderr}")
    report = json.loads(done.stdout)
    codes = sorted({m["code"] for m in report["messages"]})
    counts = ", ".join(f"{k} {report[k]}" for k in ("errors", "warnings", "infos", "hints"))
    print(f"{glb.name} ({glb.stat().st_size / 2**20:.1f} MiB): gltf-validator {counts} {codes}")


def pictures(tree: ProjectTree, folder: Path) -> None:
    """Three views of the textured 3D model, 1200 x 800, into folder (JPEG)."""
    folder.mkdir(parents=True, exist_ok=True)
    scene = TexturedScene(tree.textured_model("3d"))
    lo, hi = np.percentile(scene.vertices, [5, 95], axis=0)  # the model, not its stray pieces
    centre = (lo + hi) / 2
    reach = 0.75 * float(np.max(hi[:2] - lo[:2]))
    for name, (dx, dy, dz) in VIEWS.items():
        start = time.perf_counter()
        image = render_view(scene, centre + reach * np.array([dx, dy, dz]), centre, (1200, 800), 50.0)
        path = folder / f"brighton_textured_{name.split(',')[0]}.jpg"
        cv2.imwrite(
            str(path), cv2.cvtColor(image[:, :, :3], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88]
        )
        print(f"view {name}: {path} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
