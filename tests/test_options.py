"""Options: ODM's defaults and names, validation before any work, which stages a run forces."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from odm_core.camera.reconstruction import depthmap_size
from odm_core.option_specs import read_boundary
from odm_core.options import DatasetOptions, OpensfmOptions, PipelineOptions
from odm_core.registry import STAGES, overall_percent, stages_between
from odm_core.sfm.features import feature_process_size


def test_defaults_are_odms() -> None:
    sfm, ds = OpensfmOptions(), DatasetOptions()
    assert (sfm.feature_quality, sfm.min_num_features, sfm.matcher_neighbors, sfm.camera_lens) == (
        "high",
        10000,
        0,
        "auto",
    )
    assert (ds.gps_accuracy, ds.use_exif) == (3.0, False)


@pytest.mark.parametrize(
    ("size", "quality", "expected"),
    [
        ((4000, 2250), "high", 2000),  # Brighton: half the longest side
        ((4000, 2250), "ultra", 4000),
        ((4000, 2250), "lowest", 320),  # 270 px clamps up to 320
        ((1200, 900), "medium", 600),  # 1.08 MP < 2 MP doubles the ratio
        ((8000, 6000), "ultra", 4000),  # 48 MP > 42 MP halves it
        ((9000, 6000), "ultra", 4480),  # 54 MP: 4500 px clamps down to 4480
    ],
)
def test_feature_process_size_follows_odm(size: tuple[int, int], quality: str, expected: int) -> None:
    assert feature_process_size(*size, quality) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"opensfm": {"feature_quality": "best"}},
        {"opensfm": {"min_num_features": 0}},
        {"opensfm": {"camera_lens": "spherical"}},
        {"dataset": {"gps_accuracy": -1}},
        {"end_with": "odm_postprocess"},
        {"max_concurrency": 0},
        {"rerun_from": "odm_report", "end_with": "opensfm"},
        {"opensfm": {"unknown_option": 1}},
        {"odm_dem": {"dem_resolution": 0}},
        {"odm_dem": {"smrf_window": -1}},
        {"odm_orthophoto": {"orthophoto_compression": "WEBP"}},
        {"odm_georeferencing": {"crop": -1}},
    ],
)
def test_invalid_options_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        PipelineOptions.model_validate(kwargs)


def test_crop_cutline_and_euclidean_defaults_and_implicit_rules() -> None:
    opts = PipelineOptions()
    assert opts.odm_georeferencing.crop == 3.0  # ODM's default
    assert not opts.odm_orthophoto.orthophoto_cutline and not opts.odm_dem.dem_euclidean_map
    cut = PipelineOptions.model_validate(
        {"odm_georeferencing": {"crop": 0}, "odm_orthophoto": {"orthophoto_cutline": True}}
    )
    assert cut.odm_georeferencing.crop == 0.01  # ODM: a cutline needs a crop area
    boundary = '{"type": "Polygon", "coordinates": [[[9, 45], [9.01, 45], [9.01, 45.01], [9, 45]]]}'
    with_boundary = {"odm_filterpoints": {"boundary": boundary}}
    assert PipelineOptions.model_validate(with_boundary).odm_georeferencing.boundary is None  # crop 3
    crop_0 = PipelineOptions.model_validate({**with_boundary, "odm_georeferencing": {"crop": 0}})
    assert crop_0.odm_georeferencing.boundary == boundary  # the boundary is the crop
    from odm_core.option_specs import pipeline_options_from_odm
    from odm_core.options import GeoreferencingOptions

    explicit = PipelineOptions(
        odm_georeferencing=GeoreferencingOptions(crop=0),
        odm_orthophoto={"orthophoto_cutline": True},  # type: ignore[arg-type]
    )
    assert explicit.odm_georeferencing.crop == 0.01
    odm = pipeline_options_from_odm({"crop": "0", "orthophoto-cutline": "true", "dem-euclidean-map": "1"})
    assert odm.odm_georeferencing.crop == 0.01 and odm.odm_dem.dem_euclidean_map


def test_options_are_frozen() -> None:
    with pytest.raises(ValidationError):
        OpensfmOptions().min_num_features = 5  # type: ignore[misc]


def test_forced_stages() -> None:
    assert PipelineOptions().forced_stages() == set()
    later = set(STAGES[STAGES.index("odm_georeferencing") :])
    assert PipelineOptions(rerun_from="odm_georeferencing").forced_stages() == later
    assert "odm_filterpoints" not in later and {"odm_georeferencing", "odm_report"} <= later
    assert "openmvs" in PipelineOptions(rerun_from="opensfm").forced_stages()
    assert PipelineOptions(rerun_from="odm_report").forced_stages() == {"odm_report"}
    assert PipelineOptions(rerun_all=True).forced_stages() == set(STAGES)


def test_submodels_take_the_reruns_of_the_stages_they_run() -> None:
    assert PipelineOptions(rerun_from="odm_orthophoto").submodel_rerun() == {"rerun_from": "odm_orthophoto"}
    assert PipelineOptions(rerun_from="openmvs").submodel_rerun() == {"rerun_from": "openmvs"}
    assert PipelineOptions(rerun_all=True).submodel_rerun() == {"rerun_all": True}
    for earlier_or_later in ("opensfm", "split", "merge", "odm_report"):  # re-cut, merged, or not theirs
        assert PipelineOptions(rerun_from=earlier_or_later).submodel_rerun() == {}
    assert PipelineOptions().submodel_rerun() == {}


def test_progress_is_monotonic_and_ends_at_100() -> None:
    values = [overall_percent(s, f) for s in STAGES for f in (0.0, 0.5, 1.0)]
    assert values == sorted(values)
    assert values[-1] == pytest.approx(100.0)
    assert overall_percent("dataset", 1.0, last="dataset") == pytest.approx(100.0)
    assert stages_between("dataset", "opensfm") == ("dataset", "opensfm")
    assert "openmvs" in stages_between("dataset", "odm_report", PipelineOptions().skipped_stages())
    # a split survey: the submodels' runs move the split stage, which carries the later stages' weights
    split = [
        overall_percent(s, f, split=True) for s in ("dataset", "opensfm", "split", "merge") for f in (0, 1)
    ]
    assert split == sorted(split) and split[-1] == pytest.approx(100.0)
    assert overall_percent("split", 0.05, split=True) > overall_percent("split", 1.0)  # when it is known
    span = overall_percent("split", 1.0, split=True) - overall_percent("split", 0.0, split=True)
    assert span > 40.0  # the submodel phase moves the progress, not one stage of weight 1
    fast = PipelineOptions.model_validate({"odm_filterpoints": {"fast_orthophoto": True}})
    assert stages_between("opensfm", "odm_filterpoints", fast.skipped_stages()) == (
        "opensfm",
        "split",
        "merge",
        "odm_filterpoints",
    )


@pytest.mark.parametrize(
    ("size", "quality", "expected"),
    [
        ((4000, 2250), "medium", 500),  # Brighton: 9 MP, 1/8 of the longest side
        ((4000, 2250), "ultra", 2000),
        ((4000, 2250), "lowest", 320),  # 135 px clamps up to ODM's 320
        ((1200, 900), "medium", 320),  # 1.08 MP < 6 MP doubles the ratio: 300 -> 320
        ((1200, 900), "high", 600),
        ((8000, 6000), "high", 1000),  # 48 MP > 42 MP halves it
    ],
)
def test_depthmap_size_follows_odm(size: tuple[int, int], quality: str, expected: int) -> None:
    assert depthmap_size(*size, quality) == expected


def test_dask_address_and_boundary_are_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError):
        PipelineOptions(dask_address="localhost:8786")
    assert PipelineOptions(dask_address="tcp://127.0.0.1:8786").dask_address == "tcp://127.0.0.1:8786"
    bad = tmp_path / "b.geojson"
    bad.write_text('{"type": "Point", "coordinates": [0, 0]}')
    with pytest.raises(ValueError, match="no Polygon"):
        read_boundary(bad)
    with pytest.raises(ValueError, match="cannot read"):
        read_boundary(tmp_path / "missing.geojson")


def test_split_carries_the_submodels_options_only_when_the_run_may_split() -> None:
    default = PipelineOptions()
    assert default.stage_options("split").submodel_options is None  # a later option's change keeps split
    assert default.stage_options("split") == default.stage_options("split", image_groups=False)
    dsm = PipelineOptions.model_validate({"odm_dem": {"dsm": True}})
    assert dsm.stage_options("split") == default.stage_options("split")
    grouped = default.stage_options("split", image_groups=True).submodel_options
    assert grouped is not None and grouped["submodel"] and grouped["end_with"] == "odm_orthophoto"
    split = PipelineOptions.model_validate({"split": {"split": 100}, "odm_dem": {"dsm": True}})
    values = split.stage_options("split").submodel_options
    assert values is not None and values["odm_dem"]["dsm"] and values["split"]["split"] == 999999
    assert PipelineOptions.model_validate(values).submodel  # the submodels' own options validate


def test_merge_dem_needs_a_dem() -> None:
    with pytest.raises(ValidationError, match="add --dsm"):
        PipelineOptions.model_validate({"merge": {"merge": "dem"}})
    for dem in ("dsm", "dtm"):
        assert PipelineOptions.model_validate({"merge": {"merge": "dem"}, "odm_dem": {dem: True}})
