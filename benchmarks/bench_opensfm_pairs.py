"""Brighton's `opensfm` in a run, alternately with older code and this code: the ratio issue #18 asks for.

    .venv/bin/python benchmarks/bench_opensfm_pairs.py --old ../old --pairs 4

`--old` is a checkout of the code to compare with (for #18: `git worktree add ../old ae2d1b5`), run with
this checkout's virtual environment and `PYTHONPATH` pointing at it. Each pair copies the photos into a
fresh project for each code, runs `odmflow run COPY --end-with opensfm` (Prefect's temporary server, the
run's local Dask cluster), and reads `opensfm`'s seconds from its manifest and the summary's
registration line. Run it on an idle machine: the ratio of each pair is measured minutes apart, and the
machine's speed drifts (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO.parent / "shared" / "datasets" / "brighton_beach" / "images"
ODMFLOW = Path(sys.executable).with_name("odmflow")


def one_run(code: Path, images: Path, work: Path) -> tuple[float, str]:
    """`opensfm`'s seconds and the summary's opensfm line, for the code checked out at `code`."""
    project = work / "project"
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(images, project / "images")
    env = dict(os.environ)
    if code != REPO:
        env["PYTHONPATH"] = str(code)
    done = subprocess.run(
        [str(ODMFLOW), "run", str(project), "--end-with", "opensfm"],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the run with {code} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    seconds = json.loads((project / ".odmflow" / "manifests" / "opensfm.json").read_text())["seconds"]
    line = next((m.group(0) for m in re.finditer(r"opensfm: \d+/\d+ photos registered.*", done.stdout)), "")
    return float(seconds), line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--old", type=Path, required=True, help="checkout of the code to compare with")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--images", type=Path, default=PHOTOS)
    args = parser.parse_args()
    if not args.images.is_dir():
        raise SystemExit(f"{args.images} is missing: give --images, a folder of photos")
    if not (args.old / "odmflow").is_dir():
        raise SystemExit(f"{args.old} is not an odmflow checkout: give --old a `git worktree add` folder")
    ratios, old_s, new_s = [], [], []
    with tempfile.TemporaryDirectory(prefix="opensfm-pairs-") as tmp:
        for pair in range(1, args.pairs + 1):
            old, old_line = one_run(args.old.resolve(), args.images, Path(tmp))
            new, new_line = one_run(REPO, args.images, Path(tmp))
            ratios.append(old / new)
            old_s.append(old)
            new_s.append(new)
            print(f"pair {pair}: old {old:.1f} s, new {new:.1f} s, ratio {old / new:.2f}", flush=True)
            print(f"  old: {old_line}\n  new: {new_line}", flush=True)
    mean_old, mean_new = statistics.mean(old_s), statistics.mean(new_s)
    print(f"means: old {mean_old:.1f} s, new {mean_new:.1f} s, ratio of means {mean_old / mean_new:.2f}")
    print(f"pair ratios {min(ratios):.2f}-{max(ratios):.2f}, median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
