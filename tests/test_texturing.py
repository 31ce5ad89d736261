"""mvs_texturing on the synthetic survey: the textured models against the true orthophoto, ODM's files,
the GLB through the Khronos validator, and the options that choose the models."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pygltflib
import pytest

from odm_core.evaluate.ortho_truth import ortho_accuracy
from odm_core.evaluate.texture_truth import render_top_down
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options import MeshingOptions, TexturingOptions
from odm_core.synthetic import SyntheticTruth
from tests.conftest import REPO
from tests.inprocess import copy_processed, run_stage

VALIDATOR = REPO / "scripts" / "gltf-validator"


def gltf_report(glb: Path) -> dict:
    """The Khronos validator's counts for `glb` (scripts/install.sh installs it with npm)."""
    if shutil.which("node") is None or not (VALIDATOR / "node_modules" / "gltf-validator").is_dir():
        pytest.skip("the glTF validator is not installed: run scripts/install.sh (needs nodejs and npm)")
    done = subprocess.run(
        ["node", str(VALIDATOR / "validate.js"), str(glb)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("model", ["3d", "25d"])
def test_textured_model_seen_from_above_is_the_true_orthophoto(
    survey: SyntheticTruth, processed: ProjectTree, model: str, tmp_path: Path
) -> None:
    offset = GeoReference.read(processed.coords_txt).offset
    rendered = render_top_down(
        processed.textured_model(model), offset, processed.orthophoto_tif, tmp_path / "r.tif"
    )
    acc = ortho_accuracy(survey.project_dir / "truth", rendered, processed.shots_geojson)
    print(model, acc)  # the figures for the issue note (pytest -s)
    assert acc.tiles >= 20 and acc.median_shift_px <= 1.0  # acceptance: within 1 px of the truth
    assert acc.covered >= 0.7
    folder = processed.texturing(model)
    names = sorted(p.name for p in folder.iterdir())
    assert names[:3] == ["odm_textured_model.mtl", "odm_textured_model_geo.mtl", "odm_textured_model_geo.obj"]
    assert all(
        n.startswith("odm_textured_model_geo_material") and n.endswith("_map_Kd.png") for n in names[3:]
    )
    assert not (folder / "tmp").exists() and not processed.textured_model(model, ".glb").exists()  # no --gltf


def test_gltf_and_the_options_that_choose_the_models(processed: ProjectTree, tmp_path: Path) -> None:
    tree = copy_processed(processed, tmp_path / "p")
    run_stage(tree, "odm_meshing", MeshingOptions(mesh_size=20_000))
    result = run_stage(tree, "mvs_texturing", TexturingOptions(gltf=True), workers=2)
    glb = tree.textured_model("3d", ".glb")
    report = gltf_report(glb)
    assert report["errors"] == 0 and report["warnings"] == 0, report
    doc = pygltflib.GLTF2().load_binary(str(glb))
    offset = GeoReference.read(tree.coords_txt).offset
    assert doc.extensions["CESIUM_RTC"]["center"] == [offset[0], offset[1], 0.0]
    assert "KHR_materials_unlit" in doc.extensionsRequired
    assert not tree.textured_model("25d", ".glb").exists()  # the GLB is the primary model's only
    assert len(result.models) == 2 and "faces" in result.summary()[0]

    run_stage(tree, "odm_meshing", MeshingOptions(mesh_size=20_000, skip_3dmodel=True))
    opts = TexturingOptions(gltf=True, skip_3dmodel=True, texturing_single_material=True)
    result = run_stage(tree, "mvs_texturing", opts)
    assert not tree.texturing("3d").exists()  # the 3D model of the earlier run is gone with it
    assert tree.textured_model("25d", ".glb").is_file()  # with --skip-3dmodel the 2.5D model is primary
    pages = sorted(tree.texturing("25d").glob("*_map_Kd.png"))
    assert len(pages) == 1 and [m.model for m in result.models] == ["25d"]
