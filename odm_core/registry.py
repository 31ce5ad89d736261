"""The stage registry: every ODM stage odmflow builds, in ODM's order (stages/odm_app.py), in one table,
except that split and merge come after opensfm (the survey's SfM runs whole; the submodels share it).

Everything that needs to know what a stage is derives from STAGE_SPECS: the pipeline flow (order, task,
Dask), the checkpoint fingerprints (inputs, photos, code digest), progress weights, the
`--end-with`/`--rerun-from` choices and the tests. An entry whose module or task module cannot be found
raises at import; its options model is named here and checked when odm_core.options is imported (that
module imports this one, so the model cannot be imported here).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal, get_args

StageName = Literal[
    "dataset",
    "opensfm",
    "split",
    "merge",
    "openmvs",
    "odm_filterpoints",
    "odm_meshing",
    "mvs_texturing",
    "odm_georeferencing",
    "odm_dem",
    "odm_orthophoto",
    "odm_report",
]


@dataclass(frozen=True)
class StageSpec:
    """One ODM stage: what it reads, how it runs, where its code lives.

    `inputs` are the stages whose artifacts it reads (their manifests enter its fingerprint);
    `reads_photos` puts the photos' content in its fingerprint too; `dask` stages fan out on the run's
    Dask cluster; `weight` is its share of a run's progress; `module` is the odm_core module of its
    function (its code digest starts there), `task` its Prefect task as "module:attribute";
    `options` names its model in odm_core.options; `reads_submodels` puts a split survey's submodels'
    products in its fingerprint too.
    """

    name: StageName
    options: str
    inputs: tuple[StageName, ...]
    reads_photos: bool
    dask: bool
    weight: float
    module: str
    task: str
    reads_submodels: bool = False

    @property
    def task_module(self) -> str:
        """The module of the stage's Prefect task."""
        return self.task.partition(":")[0]


STAGE_SPECS: tuple[StageSpec, ...] = (
    StageSpec(
        name="dataset",
        options="DatasetOptions",
        inputs=(),
        reads_photos=True,
        dask=False,
        weight=5.0,
        module="odm_core.stages.dataset",
        task="tasks.dataset:dataset",
    ),
    StageSpec(
        name="opensfm",
        options="OpensfmOptions",
        inputs=("dataset",),
        reads_photos=True,
        dask=True,
        weight=45.0,
        module="odm_core.stages.opensfm",
        task="tasks.opensfm:opensfm",
    ),
    StageSpec(
        name="split",
        options="SplitOptions",
        inputs=("dataset", "opensfm"),
        reads_photos=True,  # links them into the submodels, and reads image_groups.txt
        dask=False,
        weight=1.0,
        module="odm_core.stages.split",
        task="tasks.split:split",
    ),
    StageSpec(
        name="merge",
        options="MergeOptions",
        inputs=("dataset", "opensfm", "split"),
        reads_photos=False,
        dask=True,
        weight=1.0,
        module="odm_core.stages.merge",
        task="tasks.merge:merge",
        reads_submodels=True,
    ),
    StageSpec(
        name="openmvs",
        options="OpenmvsOptions",
        inputs=("dataset", "opensfm"),
        reads_photos=True,
        dask=True,
        weight=40.0,
        module="odm_core.stages.openmvs",
        task="tasks.openmvs:openmvs",
    ),
    StageSpec(
        name="odm_filterpoints",
        options="FilterpointsOptions",
        inputs=("dataset", "opensfm", "openmvs"),
        reads_photos=False,
        dask=False,
        weight=4.0,
        module="odm_core.stages.odm_filterpoints",
        task="tasks.odm_filterpoints:odm_filterpoints",
    ),
    StageSpec(
        name="odm_meshing",
        options="MeshingOptions",
        inputs=("odm_filterpoints",),
        reads_photos=False,
        dask=False,
        weight=8.0,
        module="odm_core.stages.odm_meshing",
        task="tasks.odm_meshing:odm_meshing",
    ),
    StageSpec(
        name="mvs_texturing",
        options="TexturingOptions",
        inputs=("dataset", "opensfm", "odm_meshing"),
        reads_photos=True,
        dask=True,
        weight=10.0,
        module="odm_core.stages.mvs_texturing",
        task="tasks.mvs_texturing:mvs_texturing",
    ),
    StageSpec(
        name="odm_georeferencing",
        options="GeoreferencingOptions",
        inputs=("dataset", "opensfm", "odm_filterpoints"),
        reads_photos=False,
        dask=False,
        weight=4.0,
        module="odm_core.stages.odm_georeferencing",
        task="tasks.odm_georeferencing:odm_georeferencing",
    ),
    StageSpec(
        name="odm_dem",
        options="DemOptions",
        inputs=("opensfm", "odm_filterpoints", "odm_georeferencing"),
        reads_photos=False,
        dask=True,
        weight=5.0,
        module="odm_core.stages.odm_dem",
        task="tasks.odm_dem:odm_dem",
    ),
    StageSpec(
        name="odm_orthophoto",
        options="OrthophotoOptions",
        inputs=("dataset", "opensfm", "odm_filterpoints", "odm_georeferencing"),
        reads_photos=True,
        dask=True,
        weight=8.0,
        module="odm_core.stages.odm_orthophoto",
        task="tasks.odm_orthophoto:odm_orthophoto",
    ),
    StageSpec(
        name="odm_report",
        options="ReportOptions",
        inputs=("dataset", "opensfm", "odm_filterpoints", "odm_georeferencing", "odm_dem", "odm_orthophoto"),
        reads_photos=False,
        dask=False,
        weight=2.0,
        module="odm_core.stages.odm_report",
        task="tasks.odm_report:odm_report",
    ),
)
STAGES: tuple[StageName, ...] = tuple(s.name for s in STAGE_SPECS)
SPECS: dict[str, StageSpec] = {s.name: s for s in STAGE_SPECS}


def check_specs(specs: tuple[StageSpec, ...]) -> None:
    """Names, order and inputs agree, and every module exists (found without importing it).

    Raises RuntimeError or ModuleNotFoundError naming the entry; run on STAGE_SPECS at import.
    """
    names = tuple(s.name for s in specs)
    if get_args(StageName) != names:
        raise RuntimeError(f"registry: StageName {get_args(StageName)} differs from STAGE_SPECS {names}")
    for i, spec in enumerate(specs):
        late = [s for s in spec.inputs if s not in names[:i]]
        if late:
            raise RuntimeError(f"registry: {spec.name} reads {late}, which do not run before it")
        for module in (spec.module, spec.task_module):
            if importlib.util.find_spec(module) is None:
                raise ModuleNotFoundError(f"registry: {spec.name}'s module {module} does not exist")


check_specs(STAGE_SPECS)


def stage_of_options(options: object) -> StageSpec:
    """The stage whose options model `options` is an instance of (each stage has its own model, defined
    in odm_core.options or the modules it gathers them from, odm_core.options_*)."""
    module = type(options).__module__
    for spec in STAGE_SPECS:
        if type(options).__name__ == spec.options and module.startswith("odm_core.options"):
            return spec
    raise KeyError(f"no stage takes options of type {type(options).__name__}")


def stages_between(start: str, end: str, skip: frozenset[str] = frozenset()) -> tuple[StageName, ...]:
    """The stages from start to end inclusive, in pipeline order, less those in `skip`."""
    i, j = STAGES.index(start), STAGES.index(end)
    return tuple(s for s in STAGES[i : j + 1] if s not in skip)


def overall_percent(stage: str, stage_fraction: float, last: str = STAGES[-1], split: bool = False) -> float:
    """Progress of the whole run (0-100) when `stage` is `stage_fraction` done and the run ends at `last`.
    In a split survey (`split`) the submodels make what the stages after merge would, within the split
    stage: it carries their weights."""
    run = STAGES[: STAGES.index(last) + 1]
    weights: dict[str, float] = {s: SPECS[s].weight for s in run}
    if split and "merge" in run:
        for s in run[run.index("merge") + 1 :]:
            weights["split"] += weights.pop(s)
        run = run[: run.index("merge") + 1]
    total = sum(weights.values())
    before = sum(weights[s] for s in run[: run.index(stage)])
    return 100.0 * (before + weights[stage] * min(max(stage_fraction, 0.0), 1.0)) / total
