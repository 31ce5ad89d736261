"""Options: ODM's defaults and names, validation before any work, which stages a run forces."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from odm_core.options import DatasetOptions, OpensfmOptions, PipelineOptions, feature_process_size
from odm_core.stages import STAGES, overall_percent, stages_between


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
        {"end_with": "odm_dem"},
        {"max_concurrency": 0},
        {"rerun_from": "odm_report", "end_with": "opensfm"},
        {"opensfm": {"unknown_option": 1}},
    ],
)
def test_invalid_options_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        PipelineOptions.model_validate(kwargs)


def test_options_are_frozen() -> None:
    with pytest.raises(ValidationError):
        OpensfmOptions().min_num_features = 5  # type: ignore[misc]


def test_forced_stages() -> None:
    assert PipelineOptions().forced_stages() == set()
    assert PipelineOptions(rerun_from="opensfm").forced_stages() == {"opensfm", "odm_report"}
    assert PipelineOptions(rerun_all=True).forced_stages() == set(STAGES)


def test_progress_is_monotonic_and_ends_at_100() -> None:
    values = [overall_percent(s, f) for s in STAGES for f in (0.0, 0.5, 1.0)]
    assert values == sorted(values)
    assert values[-1] == pytest.approx(100.0)
    assert overall_percent("dataset", 1.0, last="dataset") == pytest.approx(100.0)
    assert stages_between("dataset", "opensfm") == ("dataset", "opensfm")
