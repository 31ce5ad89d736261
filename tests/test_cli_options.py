"""The options catalogue: derived from the models, one flag each on `odmflow run`, with ODM's names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from odm_core.option_specs import (
    OPTIONS,
    OPTIONS_BY_NAME,
    RUN,
    OptionSpec,
    build_catalogue,
    is_internal,
    pipeline_options,
    pipeline_options_from_odm,
    stage_models,
)
from odm_core.options import DemOptions, GeoreferencingOptions, PipelineOptions
from odmflow.cli import app
from odmflow.cli_options import options_from_flags, parameter_name

# ODM 3.6.0's long options, from OpenDroneMap/ODM opendm/config.py at commit 32cfaac
# (every `parser.add_argument('--...')`; see ../shared/reference/odm.md, section 2).
ODM_NAMES = frozenset(
    """project-path end-with rerun rerun-all rerun-from min-num-features feature-type feature-quality
    matcher-type matcher-neighbors matcher-order use-fixed-camera-params cameras camera-lens
    radiometric-calibration max-concurrency use-hybrid-bundle-adjustment sfm-algorithm sfm-no-partial
    sky-removal bg-removal use-3dmesh skip-3dmodel skip-report skip-orthophoto ignore-gsd no-gpu
    mesh-size mesh-octree-depth fast-orthophoto crop boundary auto-boundary auto-boundary-distance
    pc-quality pc-classify pc-csv pc-las pc-ept pc-copc pc-filter pc-sample pc-skip-geometric
    smrf-scalar smrf-slope smrf-threshold smrf-window texturing-skip-global-seam-leveling
    texturing-keep-unseen-faces texturing-single-material gltf gcp geo align use-exif dtm dsm
    dem-gapfill-steps dem-resolution dem-decimation dem-euclidean-map orthophoto-resolution
    orthophoto-no-tiled orthophoto-png orthophoto-kmz orthophoto-compression orthophoto-cutline tiles
    3d-tiles rolling-shutter rolling-shutter-readout build-overviews cog copy-to version video-limit
    video-resolution split split-overlap split-image-groups sm-no-align sm-cluster merge
    merge-skip-blending force-gps gps-accuracy gps-z-offset optimize-disk-space pc-rectify primary-band
    skip-band-alignment""".split()  # noqa: SIM905
)
ODMFLOW_ONLY = frozenset({"dask-address", "gcp-accuracy", "gcp-checks"})  # options ODM does not have

RUN_COMMAND = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]


def _model_field(key: str, field: str) -> Any:
    model = PipelineOptions if key == RUN else stage_models()[key]
    return model.model_fields[field]


def test_every_field_is_one_option_unless_internal() -> None:
    locations = [(key, f) for key, m in stage_models().items() for f in m.model_fields]
    locations += [(RUN, f) for f in PipelineOptions.model_fields if f not in stage_models()]
    for key, field in locations:
        owners = [spec.name for spec in OPTIONS if (key, field) in spec.fields]
        expected = 0 if is_internal(_model_field(key, field)) else 1
        assert len(owners) == expected, (key, field, owners)
    assert is_internal(GeoreferencingOptions.model_fields["boundary"])
    shared = (("odm_dem", "ignore_gsd"), ("odm_orthophoto", "ignore_gsd"))
    assert OPTIONS_BY_NAME["ignore-gsd"].fields == shared
    internal = {(key, field) for key, field in locations if is_internal(_model_field(key, field))}
    assert internal == {
        ("dataset", "georeference"),  # the rest a split-merge parent gives its submodels
        ("opensfm", "model_seed"),
        ("split", "submodel_options"),
        ("odm_georeferencing", "boundary"),
        (RUN, "submodel"),
    }
    assert sum(len(spec.fields) for spec in OPTIONS) == len(locations) - len(internal)


def test_each_option_has_exactly_one_flag_with_the_models_default_and_help() -> None:
    params = {p.name: p for p in RUN_COMMAND.params}
    assert set(params) == {parameter_name(s) for s in OPTIONS} | {"project", "verbose"}
    for spec in OPTIONS:
        flags = [p for p in RUN_COMMAND.params if spec.flag in (*p.opts, *p.secondary_opts)]
        assert len(flags) == 1, spec.name
        (param,) = flags
        for key, field in spec.fields:
            info = _model_field(key, field)
            assert param.default == info.get_default(call_default_factory=True), spec.name
            assert param.help == info.description and param.help, spec.name


def test_booleans_are_presence_flags_or_have_a_no_form() -> None:
    params = {p.name: p for p in RUN_COMMAND.params}
    for spec in OPTIONS:
        param = params[parameter_name(spec)]
        if spec.kind == "bool":
            assert param.is_flag and param.opts == [spec.flag], spec.name
            assert param.secondary_opts == ([f"--no-{spec.name}"] if spec.default else []), spec.name
        else:
            assert not param.is_flag, spec.name
    assert params["cog"].secondary_opts == ["--no-cog"] and params["dsm"].secondary_opts == []


def test_names_are_odms_where_odm_has_the_option() -> None:
    assert not ODMFLOW_ONLY & ODM_NAMES
    for spec in OPTIONS:
        assert spec.name in ODM_NAMES | ODMFLOW_ONLY, f"--{spec.name} is not an ODM option"
        assert spec.flag == "--" + spec.fields[0][1].replace("_", "-")


def test_domains_come_from_the_fields() -> None:
    assert OPTIONS_BY_NAME["feature-quality"].domain == ["ultra", "high", "medium", "low", "lowest"]
    assert OPTIONS_BY_NAME["min-num-features"].domain == "integer: 100 <= x <= 200000"
    assert OPTIONS_BY_NAME["gps-accuracy"].domain == "float: 0 < x <= 1000"
    assert OPTIONS_BY_NAME["end-with"].kind == "enum" and OPTIONS_BY_NAME["rerun-from"].default is None
    node = OPTIONS_BY_NAME["cog"].node_option()
    assert node == {
        "name": "cog",
        "type": "bool",
        "value": "true",
        "domain": "",
        "help": DemOptions.model_fields["cog"].description,
    }
    assert all(set(s.node_option()) == {"name", "type", "value", "domain", "help"} for s in OPTIONS)


def test_shared_fields_that_disagree_fail_when_the_catalogue_is_built() -> None:
    class OtherDem(DemOptions):
        tiles: bool = Field(False, description="Tiles of the DEMs only.")

    class Other(PipelineOptions):
        odm_dem: OtherDem = OtherDem()

    with pytest.raises(TypeError, match="--tiles"):
        build_catalogue(Other)


def _non_default(spec: OptionSpec, files: dict[str, Path]) -> tuple[list[str], Any]:
    """Command-line words that set `spec` to a value other than its default, and that value (`files`: a
    valid file for each kind of text option)."""
    if spec.kind == "bool":
        return ([f"--no-{spec.name}"] if spec.default else [spec.flag]), not spec.default
    if spec.text:
        return [spec.flag, str(files[spec.text])], files[spec.text].read_text()
    if spec.choices:
        value: Any = next(c for c in spec.choices if c != spec.default)
    elif spec.name == "sm-cluster":
        value = "http://127.0.0.1:3000/?token=T"
    elif spec.kind == "string":
        value = "tcp://127.0.0.1:8786"
    else:
        value = spec.default + 1
    return [spec.flag, str(value)], value


def test_every_flag_reaches_every_field_it_sets(tmp_path: Path) -> None:
    boundary = tmp_path / "b.geojson"
    boundary.write_text('{"type": "Polygon", "coordinates": [[[9, 45], [9.01, 45], [9.01, 45.01], [9, 45]]]}')
    geo = tmp_path / "geo.txt"
    geo.write_text("EPSG:4326\nDJI_0001.JPG 9.0 45.0 120.0\n")
    gcp = tmp_path / "gcp_list.txt"
    gcp.write_text("EPSG:32632\n500000 5000000 100 10 10 DJI_0001.JPG\n")
    groups = tmp_path / "image_groups.txt"
    groups.write_text("DJI_0001.JPG A\n")
    files = {"geojson_file": boundary, "geo_file": geo, "gcp_file": gcp, "image_groups_file": groups}
    args, expected = [str(tmp_path)], {}
    for spec in OPTIONS:
        words, expected[spec.name] = _non_default(spec, files)
        args += words
    expected["skip-3dmodel"] = False  # ODM: --use-3dmesh overrides --skip-3dmodel
    ctx = RUN_COMMAND.make_context("run", args)
    opts = options_from_flags({k: v for k, v in ctx.params.items() if k not in ("project", "verbose")})
    for spec in OPTIONS:
        for key, field in spec.fields:
            holder: BaseModel = opts if key == RUN else getattr(opts, key)
            assert getattr(holder, field) == expected[spec.name], (spec.name, key, field)
    assert opts.odm_georeferencing.boundary is None  # --crop is not 0: the boundary is not the crop


def test_odm_names_and_text_values(tmp_path: Path) -> None:
    opts = pipeline_options_from_odm({"ignore-gsd": "true", "--min-num-features": "8000", "cog": "false"})
    assert opts.odm_dem.ignore_gsd and opts.odm_orthophoto.ignore_gsd
    assert opts.opensfm.min_num_features == 8000
    assert not opts.odm_dem.cog and not opts.odm_orthophoto.cog
    with pytest.raises(ValueError, match="unknown option --feature-size"):
        pipeline_options_from_odm({"feature-size": "1"})
    with pytest.raises(ValueError, match="cannot read"):
        pipeline_options_from_odm({"boundary": str(tmp_path / "missing.geojson")})
    boundary = tmp_path / "b.geojson"
    boundary.write_text('{"type": "Polygon", "coordinates": [[[9, 45], [9.01, 45], [9.01, 45.01], [9, 45]]]}')
    cropped = pipeline_options_from_odm({"boundary": str(boundary), "crop": "0"})
    assert cropped.odm_filterpoints.boundary == cropped.odm_georeferencing.boundary == boundary.read_text()
    with pytest.raises(ValueError, match="unknown option"):
        pipeline_options({"boundary-text": "x"})


def test_unreadable_boundary_names_the_flag(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    missing = tmp_path / "nope.geojson"
    result = CliRunner().invoke(app, ["run", str(tmp_path), "--boundary", str(missing)])
    assert result.exit_code == 2
    assert f"--boundary {missing}: cannot read it" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_split_image_groups_is_the_files_checked_text(tmp_path: Path) -> None:
    groups = tmp_path / "groups.txt"
    groups.write_text("a.jpg north\nb.jpg south\n")
    opts = pipeline_options_from_odm({"split-image-groups": str(groups)})
    assert opts.split.split_image_groups == groups.read_text()
    assert opts.stage_options("split").submodel_options is not None  # the run may split
    assert opts.stage_options("split").submodel_options["split"]["split_image_groups"] is None
    (tmp_path / "images").mkdir()
    missing = tmp_path / "nope.txt"
    result = CliRunner().invoke(app, ["run", str(tmp_path), "--split-image-groups", str(missing)])
    assert result.exit_code == 2
    assert (
        f"--split-image-groups {missing}: cannot read it" in result.output
        and "Traceback" not in result.output
    )
    groups.write_bytes("\ufeffa.jpg north\n".encode())  # Windows Notepad's byte-order mark
    assert (
        pipeline_options_from_odm({"split-image-groups": str(groups)}).split.split_image_groups
        == "a.jpg north\n"
    )
    groups.write_text("\n\n")
    result = CliRunner().invoke(app, ["run", str(tmp_path), "--split-image-groups", str(groups)])
    assert (
        result.exit_code == 2
        and f"--split-image-groups {groups}: no 'photo_filename group_name'" in result.output
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["groups.txt", "images"]


def test_run_help_through_the_console_script() -> None:
    script = Path(sys.executable).parent / "odmflow"
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    result = subprocess.run(
        [str(script), "run", "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for flag, default in [
        ("--feature-quality", "[default: high]"),
        ("--min-num-features", "[default: 10000]"),
        ("--pc-quality", "[default: medium]"),
        ("--crop", "[default: 3.0]"),
        ("--orthophoto-compression", "[default: DEFLATE]"),
        ("--cog", "--no-cog"),
    ]:
        line = next((ln for ln in lines if f" {flag} " in ln), "")
        assert default in line, (flag, line)
    for flag in ("--dsm", "--boundary", "--dask-address", "--verbose", "--end-with"):
        assert f" {flag} " in result.stdout


def test_submit_options_go_through_the_catalogue(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    for pair, message in [
        ("feature-size=1", "--option: unknown option --feature-size"),
        ("min-num-features=5", "greater than or equal to 100"),
        (f"boundary={tmp_path / 'nope.geojson'}", "cannot read it"),
    ]:
        result = CliRunner().invoke(app, ["submit", str(tmp_path), "-o", pair])
        assert result.exit_code == 2 and message in result.output, (pair, result.output)
