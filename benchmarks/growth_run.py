"""One run of the growth-curve benchmark (bench_growth.py starts it as its own process, once per survey).

    .venv/bin/python benchmarks/growth_run.py PROJECT RESULT_JSON [OPTIONS_JSON]

Runs the pipeline in this process as `odmflow run PROJECT` does (`odmflow.runner.run_pipeline`: the same
flow, Prefect's embedded server, the run's local Dask cluster), then writes RESULT_JSON: each stage's
wall seconds (the flow's StageRun), when its manifest was finished (the stage windows the parent's memory
samples are cut by), the numbers its result carries (registered photos, points, its workers' peak memory),
this process's peak RSS (VmHWM) and the matched pairs in COLMAP's database. OPTIONS_JSON: ODM option
names and text values, e.g. '{"--pc-quality": "low"}'.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from odm_core import checkpoint
from odm_core.layout import ProjectTree
from odm_core.option_specs import pipeline_options_from_odm
from odm_core.worker import peak_rss_mb


def result_figures(result: Any) -> dict[str, Any]:
    """The scalar fields (numbers, booleans, short strings) of a stage's result dataclass, and those of
    the dataclasses in its tuple fields as `field.index.name` (mvs_texturing's models)."""
    if not dataclasses.is_dataclass(result):
        return {}
    figures: dict[str, Any] = {}
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        if isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) < 200):
            figures[field.name] = value
        elif isinstance(value, tuple) and value and all(dataclasses.is_dataclass(v) for v in value):
            for i, item in enumerate(value):
                figures |= {f"{field.name}.{i}.{k}": v for k, v in result_figures(item).items()}
    return figures


def matched_pairs(database: Path) -> dict[str, int]:
    """Pairs COLMAP matched (rows in `matches`) and those with verified geometry, from its database."""
    if not database.exists():
        return {}
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        matched = db.execute("SELECT count(*) FROM matches WHERE rows > 0").fetchone()[0]
        verified = db.execute("SELECT count(*) FROM two_view_geometries WHERE rows > 0").fetchone()[0]
    return {"pairs_matched": int(matched), "pairs_verified": int(verified)}


def main() -> None:
    project, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    odm_values = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from odmflow.runner import run_pipeline  # after the environment is set, as the CLI does

    options = pipeline_options_from_odm(odm_values)
    tree = ProjectTree(project)
    started = time.time()
    runs = run_pipeline(project, options)
    ended = time.time()
    stages = {
        name: {
            "seconds": run.seconds,
            "cached": run.cached,
            "finished_at": checkpoint.finished_at(name, tree),
            "figures": result_figures(run.result),
        }
        for name, run in runs.items()
    }
    record = {
        "options": odm_values,
        "run_started_at": started,
        "run_ended_at": ended,
        "run_seconds": ended - started,
        "flow_peak_rss_mib": peak_rss_mb(),
        "largest_child_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "stages": stages,
        **matched_pairs(tree.colmap_database),
    }
    out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
