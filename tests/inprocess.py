"""Running stages and the pipeline inside the test process, and reading a run's stage states.

`run_stage` runs one stage's core function as its Prefect task would (same fingerprint, same manifest),
without Prefect or Dask: a Dask stage's units run one after another here, or on a small process pool.
`run_flow` runs the pipeline flow itself in this process (under the session's Prefect server) and returns
its StageRuns; `flow_states` reads the stage states a run published to Prefect's API (for CLI runs).
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odm_core import checkpoint
from odm_core.artifacts import DigestCache
from odm_core.layout import ProjectTree
from odm_core.option_specs import pipeline_options
from odm_core.registry import SPECS, STAGE_SPECS, STAGES
from odm_core.worker import MapUnits, serial_map

if TYPE_CHECKING:
    from flows.odm_pipeline import StageRun

# Each stage's core in this process: its module's `run(tree, options, unit key, map_units)`.
RUNNERS: dict[str, Callable[[ProjectTree, Any, str, MapUnits], Any]] = {
    spec.name: importlib.import_module(spec.module).run for spec in STAGE_SPECS
}


def run_stage(tree: ProjectTree, stage: str, opts: Any, workers: int = 1) -> Any:
    """Run `stage` on `tree` as its task does (its manifest written under its fingerprint, so a later
    pipeline run takes it as a checkpoint); a Dask stage's units on `workers` processes."""
    cache = DigestCache(tree.digest_cache)
    fp = checkpoint.fingerprint(stage, tree, opts, cache)
    cache.save()
    if workers <= 1 or not SPECS[stage].dask:
        return checkpoint.run_stage(stage, tree, fp, lambda: RUNNERS[stage](tree, opts, fp, serial_map))
    spawn = multiprocessing.get_context("spawn")  # never fork a process that runs Prefect's threads
    with ProcessPoolExecutor(workers, mp_context=spawn) as pool:

        def run(fn: Callable[[Any], Any], units: Iterable[Any]) -> list[Any]:
            return list(pool.map(fn, units))

        return checkpoint.run_stage(stage, tree, fp, lambda: RUNNERS[stage](tree, opts, fp, run))


def copy_processed(source: ProjectTree, dest: Path) -> ProjectTree:
    """A writable copy of a processed project (photos as the symlinks they are, or copies)."""
    shutil.copytree(source.root, dest, symlinks=True)
    return ProjectTree(dest)


def declared_inputs_only(source: ProjectTree, stage: str, dest: Path) -> ProjectTree:
    """A new project holding the photos (if the stage reads them) and the manifests and outputs of the
    stages it declares as inputs, nothing else."""
    tree = ProjectTree(dest)
    dest.mkdir(parents=True)
    if SPECS[stage].reads_photos:
        shutil.copytree(source.images, tree.images)
    for upstream in SPECS[stage].inputs:
        manifest = json.loads(source.manifest(upstream).read_text())
        for rel in manifest["outputs"]:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.root / rel, dest / rel)
        tree.manifest(upstream).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source.manifest(upstream), tree.manifest(upstream))
    return tree


def run_flow(tree: ProjectTree, **options: Any) -> dict[str, StageRun]:
    """The pipeline flow run in this process on `tree`, options by ODM name with underscores
    (`end_with="opensfm"`, `min_num_features=4000`); needs the session's `prefect_env`."""
    from flows.odm_pipeline import odm_pipeline

    opts = pipeline_options({k.replace("_", "-"): v for k, v in options.items()})
    return odm_pipeline(str(tree.root), opts)


def states(runs: dict[str, StageRun]) -> dict[str, str]:
    """Each stage of a run: 'ran', or 'checkpoint' when its result came from an earlier run."""
    return {stage: "checkpoint" if run.cached else "ran" for stage, run in runs.items()}


def expected(*ran: str, skipped: Iterable[str] = (), end_with: str = STAGES[-1]) -> dict[str, str]:
    """The states of a run up to `end_with` in which exactly the stages `ran` did work."""
    last = STAGES.index(end_with)  # type: ignore[arg-type]
    unknown = set(ran) - set(STAGES[: last + 1])
    assert not unknown, f"not stages of this run: {unknown}"
    return {s: "ran" if s in ran else "checkpoint" for s in STAGES[: last + 1] if s not in set(skipped)}


def flow_states(run_name: str) -> dict[str, str]:
    """The stage states of the latest `odm-pipeline` run named `run_name` (the project folder's name),
    from the stage table the flow published to Prefect's API (the session's server)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from odmflow.runs import find_run

    run = find_run(run_name)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    table = next(a for a in artifacts if a.key == "odm-stage-timings")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    return {row["stage"]: row["state"] for row in rows}


AFTER_OPENSFM: tuple[str, ...] = STAGES[STAGES.index("opensfm") + 1 :]
