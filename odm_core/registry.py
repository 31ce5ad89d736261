"""ODM's stage names, in order, and the share of a run's progress each takes."""

from typing import Literal, get_args

StageName = Literal[
    "dataset",
    "opensfm",
    "openmvs",
    "odm_filterpoints",
    "odm_georeferencing",
    "odm_dem",
    "odm_orthophoto",
    "odm_report",
]

# The stages odmflow builds so far; names and order follow ODM (stages/odm_app.py).
STAGES: tuple[StageName, ...] = get_args(StageName)

# Relative weight of each stage in the overall progress bar.
STAGE_WEIGHTS: dict[str, float] = {
    "dataset": 5.0,
    "opensfm": 45.0,
    "openmvs": 40.0,
    "odm_filterpoints": 4.0,
    "odm_georeferencing": 4.0,
    "odm_dem": 5.0,
    "odm_orthophoto": 8.0,
    "odm_report": 2.0,
}

# ODM stage names that odmflow does not build yet (accepted by nothing, named in errors).
ODM_STAGES_NOT_BUILT: tuple[str, ...] = (
    "split",
    "merge",
    "odm_meshing",
    "mvs_texturing",
    "odm_postprocess",
)


def stages_between(start: str, end: str, skip: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The stages from start to end inclusive, in pipeline order, less those in `skip`."""
    i, j = STAGES.index(start), STAGES.index(end)  # type: ignore[arg-type]
    return tuple(s for s in STAGES[i : j + 1] if s not in skip)


def overall_percent(stage: str, stage_fraction: float, last: str = STAGES[-1]) -> float:
    """Progress of the whole run (0-100) when `stage` is `stage_fraction` done and the run ends at `last`."""
    run = STAGES[: STAGES.index(last) + 1]  # type: ignore[arg-type]
    total = sum(STAGE_WEIGHTS[s] for s in run)
    before = sum(STAGE_WEIGHTS[s] for s in run[: run.index(stage)])
    return 100.0 * (before + STAGE_WEIGHTS[stage] * min(max(stage_fraction, 0.0), 1.0)) / total
