"""Growth curve: per-stage wall time and peak memory on synthetic surveys of N photos, and the exponent
of each stage's growth (issue #18, deliverable 5).

    nice -n 10 .venv/bin/python benchmarks/bench_growth.py [N ...] [--workdir DIR] [--json FILE]
        [--width 640 --height 480] [-o NAME=VALUE ...]

For each N (default 50 100 200 400): a nadir grid survey of about N photos (no obliques; cols x rows from
the overlaps so the block is about square; the synthetic world is sized from the flight plan, so the area
grows with N) is generated once into WORKDIR/surveys/nNNNN and reused by later runs with the same settings
(generation is timed apart and excluded). Each run copies the photos into a fresh WORKDIR/runs/nNNNN and
processes it in a process of its own (benchmarks/growth_run.py: the flow of `odmflow run`, in-process, so
the stages' results are read directly), while this process samples the memory of that process and its
Dask workers (growth_memory.py). Beyond 40 photos `opensfm` matches GPS neighbours (Delaunay two-ring).
Run options: --skip-3dmodel --dsm (DEFAULT_OPTIONS), with -o NAME=VALUE added or overriding (e.g. -o
fast-orthophoto=true, -o pc-quality=low); --odm-defaults drops DEFAULT_OPTIONS.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from growth_memory import TreeSampler, stage_windows  # noqa: E402

from odm_core.synthetic import SyntheticOptions, generate_synthetic  # noqa: E402
from odm_core.synthetic.flight import line_spacing_m  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = (50, 100, 200, 400)
# The Dask stages report their workers' exact peak (VmHWM) under these names (texturing: per model).
WORKER_PEAK_FIELDS = re.compile(r"(.*\.)?(worker_peak_rss_mb|peak_mb)$")
# Run options unless -o says otherwise: the 3D model and its texturing left out (the 2.5D one is made, as
# with ODM's --skip-3dmodel; texturing both took 43% of a 12-photo run), the DSM made so `odm_dem`'s
# tiles are measured too.
DEFAULT_OPTIONS = {"--skip-3dmodel": "true", "--dsm": "true"}


def survey_options(n: int, width: int, height: int) -> SyntheticOptions:
    """A nadir grid of about n photos whose ground block is about square (ODM's overlaps kept)."""
    base = SyntheticOptions(image_width=width, image_height=height, n_oblique=0)
    along, across = line_spacing_m(base)  # photo spacing along a line, spacing between lines
    rows = max(1, round(math.sqrt(n * along / across)))
    cols = max(1, round(n / rows))
    return base.model_copy(
        update={
            "n_cols": cols,
            "n_rows": rows,
            "n_buildings": 8,
            # The truth is not compared here: one cell per GSD (not GSD/2) quarters its ray casting.
            "truth_resolution_m": round(base.gsd_m, 3),
        }
    )


def ensure_survey(folder: Path, opts: SyntheticOptions) -> float | None:
    """Generate the survey into folder unless it holds one made with these options; its seconds, or None
    when reused."""
    stamp = folder / "survey.json"
    wanted = opts.model_dump(mode="json")
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return None
    stamp.unlink(missing_ok=True)
    start = time.perf_counter()
    generate_synthetic(folder, opts)
    seconds = time.perf_counter() - start
    stamp.write_text(json.dumps(wanted, indent=1))
    return seconds


def run_survey(survey: Path, project: Path, odm_values: dict[str, str]) -> dict[str, Any]:
    """Process a fresh copy of the survey's photos in a process of its own, sampling its memory."""
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    shutil.copytree(survey / "images", project / "images")
    result = project / "growth_run.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    cmd = [sys.executable, str(Path(__file__).with_name("growth_run.py")), str(project), str(result)]
    start = time.perf_counter()
    with open(project / "run.log", "w") as log:
        proc = subprocess.Popen([*cmd, json.dumps(odm_values)], stdout=log, stderr=subprocess.STDOUT, env=env)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        code = proc.wait()
        sampler.stop()
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"the run of {project} failed ({code}); its output: {project / 'run.log'}")
    record: dict[str, Any] = json.loads(result.read_text())
    record["process_wall_seconds"] = wall
    for name, (t0, t1) in stage_windows(record).items():
        stage = record["stages"][name]
        stage["sampled"] = sampler.window_peaks(t0, t1)
        exact = [v for k, v in stage["figures"].items() if WORKER_PEAK_FIELDS.match(k)]
        stage["worker_vmhwm_mib"] = round(max(exact), 1) if exact else None
    record["sampled_whole_run"] = sampler.window_peaks(0.0, math.inf)
    record["processes"] = sampler.processes()
    return record


def one_size(n: int, args: argparse.Namespace, odm_values: dict[str, str]) -> dict[str, Any]:
    """Generate (or reuse) the survey of about n photos, process it, and gather its figures."""
    opts = survey_options(n, args.width, args.height)
    survey = args.workdir / "surveys" / f"n{n:04d}"
    print(f"N={n}: {opts.n_cols} x {opts.n_rows} photos, {opts.image_width}x{opts.image_height}", flush=True)
    gen_s = ensure_survey(survey, opts)
    print(f"  survey {survey}: " + ("reused" if gen_s is None else f"generated in {gen_s:.1f} s"), flush=True)
    record = run_survey(survey, args.workdir / "runs" / f"n{n:04d}", odm_values)
    sfm = record["stages"].get("opensfm", {}).get("figures", {})
    record.update(
        requested=n,
        photos=opts.n_cols * opts.n_rows,
        grid=[opts.n_cols, opts.n_rows],
        image_size=[opts.image_width, opts.image_height],
        gsd_m=opts.gsd_m,
        generation_seconds=gen_s,
        registered=sfm.get("n_registered"),
        reprojection_error_px=sfm.get("mean_reprojection_error_px"),
    )
    print(
        f"  run: {record['run_seconds']:.1f} s ({record['process_wall_seconds']:.1f} s with start-up), "
        f"{record['registered']}/{record['photos']} registered, {record['reprojection_error_px']:.3f} px",
        flush=True,
    )
    return record


def exponent(n1: float, t1: float, n2: float, t2: float) -> float | None:
    """log(t2/t1) / log(n2/n1); None where a time is zero or the counts are equal."""
    if t1 <= 0 or t2 <= 0 or n1 == n2:
        return None
    return math.log(t2 / t1) / math.log(n2 / n1)


def growth_exponents(records: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per stage (and the whole run): the exponent between consecutive sizes and first -> last."""
    stages = list(dict.fromkeys(s for r in records for s in r["stages"]))
    series = {
        s: [(r["photos"], r["stages"][s]["seconds"]) for r in records if s in r["stages"]] for s in stages
    }
    series["run"] = [(r["photos"], r["run_seconds"]) for r in records]
    fits: dict[str, dict[str, float | None]] = {}
    for name, points in series.items():
        fit = {f"{a[0]}->{b[0]}": exponent(*a, *b) for a, b in zip(points, points[1:], strict=False)}
        if len(points) > 2:
            fit[f"{points[0][0]}->{points[-1][0]}"] = exponent(*points[0], *points[-1])
        fits[name] = fit
    return fits


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _row(label: str, cells: list[str]) -> str:
    return label.ljust(20) + "".join(c.rjust(27) for c in cells)


def _stage_cell(stage: dict[str, Any] | None) -> str:
    """'seconds s flow/worker [worker VmHWM]' (MiB) of one stage of one run."""
    if stage is None:
        return "-"
    m = stage["sampled"]
    hwm = f" [{stage['worker_vmhwm_mib']:.0f}]" if stage["worker_vmhwm_mib"] else ""
    return f"{stage['seconds']:.1f} s {m['flow_rss_mib']:.0f}/{m['worker_rss_mib']:.0f}{hwm}"


def print_tables(records: list[dict[str, Any]], fits: dict[str, dict[str, float | None]]) -> None:
    """Seconds and peak memory per stage and size, the run's figures, then the growth exponents."""
    print("\nper stage: wall s, peak MiB: flow / one Dask worker (sampled RSS) [workers' VmHWM, exact]")
    print(_row("photos", [str(r["photos"]) for r in records]))
    for s in (s for s in fits if s != "run"):
        print(_row(s, [_stage_cell(r["stages"].get(s)) for r in records]))
    print(_row("run", [f"{r['run_seconds']:.1f} s" for r in records]))
    print(_row("all processes", [f"{r['sampled_whole_run']['total_rss_mib']:.0f} MiB" for r in records]))
    print(_row("registered", [f"{r['registered']}/{r['photos']}" for r in records]))
    print(_row("reprojection px", [_cell(r["reprojection_error_px"], ".3f") for r in records]))
    print(_row("pairs matched", [str(r.get("pairs_matched", "-")) for r in records]))
    print("\ngrowth exponent log(t2/t1)/log(n2/n1)")
    for name, fit in fits.items():
        print(name.ljust(20) + "  ".join(f"{k}: {_cell(v, '.2f')}" for k, v in fit.items()))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("sizes", nargs="*", type=int, default=list(DEFAULT_SIZES), help="photo counts")
    parser.add_argument(
        "--workdir", "--keep", type=Path, default=Path("growth-work"), help="surveys and runs"
    )
    parser.add_argument("--json", type=Path, default=Path("growth.json"), help="where all figures go")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument(
        "-o", "--option", action="append", default=[], metavar="NAME=VALUE", help="run option"
    )
    parser.add_argument("--odm-defaults", action="store_true", help="no options but -o's (all 3D outputs)")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()
    return args


def main() -> None:
    args = parse_args()
    given = {f"--{k.lstrip('-')}": v for k, _, v in (o.partition("=") for o in args.option)}
    odm_values = given if args.odm_defaults else DEFAULT_OPTIONS | given
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"machine: {machine}; options: {odm_values or 'ODM defaults'}", flush=True)
    records = []
    for n in sorted(args.sizes):
        records.append(one_size(n, args, odm_values))
        fits = growth_exponents(records)
        doc = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine, "runs": records}
        args.json.write_text(json.dumps({**doc, "exponents": fits}, indent=1))  # kept after every size
    print_tables(records, growth_exponents(records))
    print(f"\nall figures: {args.json}")


if __name__ == "__main__":
    main()
