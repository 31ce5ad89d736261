"""The stage registry: every entry resolves, code digests follow the code a stage runs, and each stage runs
on a project that holds only the artifacts of the stages it declares as inputs."""

from __future__ import annotations

import shutil
import typing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from odm_core import checkpoint, options, registry
from odm_core.layout import ProjectTree
from odm_core.options import DemOptions, MeshingOptions, OpensfmOptions, PipelineOptions
from odm_core.registry import SPECS, STAGE_SPECS, STAGES
from tests.inprocess import RUNNERS, declared_inputs_only, run_stage

REPO = Path(__file__).resolve().parents[1]


def test_every_entry_names_its_model_module_and_task() -> None:
    from flows.odm_pipeline import STAGE_TASKS

    assert tuple(STAGE_TASKS) == STAGES
    for spec in STAGE_SPECS:
        task = STAGE_TASKS[spec.name]
        hints = typing.get_type_hints(task.fn)
        assert hints["opts"] is getattr(options, spec.options), spec.name
        assert PipelineOptions.model_fields[spec.name].annotation is hints["opts"]
        assert registry.stage_of_options(hints["opts"]()) is spec
        assert checkpoint._module_file(spec.module).is_file()
        run_hints = typing.get_type_hints(RUNNERS[spec.name])  # the module's in-process `run`
        assert run_hints["opts"] is hints["opts"] and run_hints["return"] is hints["return"], spec.name


def _with_dem(**changes: Any) -> tuple[registry.StageSpec, ...]:
    """The registry with odm_dem's entry changed."""
    return tuple(replace(s, **changes) if s.name == "odm_dem" else s for s in STAGE_SPECS)


def test_a_missing_module_fails_at_import_never_as_an_empty_digest() -> None:
    broken = _with_dem(module="odm_core.stages.nope")
    with pytest.raises(ModuleNotFoundError, match="odm_dem's module odm_core.stages.nope"):
        registry.check_specs(broken)
    with pytest.raises(ModuleNotFoundError, match="odm_core.stages.nope"):
        checkpoint.module_code_digest("odm_core.stages.nope", REPO)
    no_task = _with_dem(task="tasks.nope:odm_dem")
    with pytest.raises(ModuleNotFoundError, match="tasks.nope"):
        registry.check_specs(no_task)


def test_inputs_must_come_from_earlier_stages() -> None:
    late = _with_dem(inputs=("odm_report",))
    with pytest.raises(RuntimeError, match="odm_dem reads"):
        registry.check_specs(late)


def test_an_entry_naming_a_missing_options_model_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = _with_dem(options="OrthophotoOptions")
    monkeypatch.setattr(options, "STAGE_SPECS", wrong)
    with pytest.raises(RuntimeError, match="PipelineOptions.odm_dem must be a OrthophotoOptions"):
        options._check_registry()
    missing = _with_dem(options="MeshOptions")
    monkeypatch.setattr(options, "STAGE_SPECS", missing)
    with pytest.raises(RuntimeError, match="MeshOptions is not in"):
        options._check_registry()


def _copy_code(dest: Path) -> Path:
    shutil.copytree(REPO / "odm_core", dest / "odm_core", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_editing_dense_code_leaves_the_dem_checkpoint_valid(tmp_path: Path) -> None:
    """odm_dem's fingerprint is its inputs' manifests, its options and its code digest: with the dense
    cloud unchanged, only the code digest could move, and it does not cover the stereo matcher."""
    root = _copy_code(tmp_path)
    before = {s: checkpoint.module_code_digest(SPECS[s].module, root) for s in STAGES}
    assert before["odm_dem"] == checkpoint.code_digest("odm_dem")
    with (root / "odm_core" / "dense" / "stereo.py").open("a") as f:
        f.write("\n# an edit to the stereo matcher\n")
    after = {s: checkpoint.module_code_digest(SPECS[s].module, root) for s in STAGES}
    assert after["openmvs"] != before["openmvs"]
    assert {s for s in STAGES if after[s] != before[s]} == {"openmvs"}
    with (root / "odm_core" / "dem" / "gridding.py").open("a") as f:
        f.write("\n# an edit to the DEM gridding\n")
    assert checkpoint.module_code_digest(SPECS["odm_dem"].module, root) != before["odm_dem"]
    with (root / "odm_core" / "options.py").open("a") as f:
        f.write("\n# a help text edited: options reach fingerprints as values\n")
    assert checkpoint.module_code_digest(SPECS["odm_report"].module, root) == before["odm_report"]


@pytest.mark.slow
def test_each_stage_runs_on_its_declared_inputs_only(processed: ProjectTree, tmp_path: Path) -> None:
    """A read the registry does not declare finds no file here and fails the stage."""
    # The cheapest features that still register every photo: what is checked is what each stage reads.
    run_options = PipelineOptions(
        opensfm=OpensfmOptions(feature_quality="lowest"),
        odm_meshing=MeshingOptions(mesh_size=20_000, mesh_octree_depth=9),
        odm_dem=DemOptions(dsm=True, dtm=True),
    )
    for stage in STAGES:
        tree = declared_inputs_only(processed, stage, tmp_path / stage)
        result = run_stage(tree, stage, getattr(run_options, stage))
        # split and merge write nothing for a survey that is not split (it read the model to know)
        assert result.outputs or "not split" in " ".join(result.summary()), stage
        for path in result.outputs:
            assert path.is_file() and tree.root in path.parents, (stage, path)
