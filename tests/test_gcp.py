"""Ground control points: ODM's gcp_list.txt read and checked line by line, the project's CRS taken from
the GCPs as ODM does, check points, --use-exif, and the errors a user sees for a wrong file."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from PIL import Image
from pypdf import PdfReader

from odm_core.errors import OdmInputError
from odm_core.geo.gcp import read_gcp_text, to_utm
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options import DatasetOptions, ReportOptions
from odm_core.stages.dataset import dataset
from tests.conftest import run_cli
from tests.test_dataset import make_jpeg

SIZES = {"DJI_0000.JPG": (64, 48), "DJI_0001.JPG": (64, 48), "DJI_0002.JPG": (64, 48)}
# Brighton Beach, UTM 15N; the same points in three ways of writing the CRS
UTM_LINES = [
    "576000.0 5188000.0 150.0 10 20 DJI_0000.JPG gcp1",
    "576000.0 5188000.0 150.0 30 20 DJI_0001.JPG gcp1",
    "576050.0 5188030.0 151.5 12 40 DJI_0001.JPG CHK-a",
    "576050.0 5188030.0 151.5 50 40 DJI_0002.JPG CHK-a",
]


def gcp_text(header: str, lines: list[str] = UTM_LINES) -> str:
    return "\n".join([header, *lines]) + "\n"


@pytest.mark.parametrize(
    "header", ["WGS84 UTM 15N", "EPSG:32615", "+proj=utm +zone=15 +datum=WGS84 +units=m"]
)
def test_the_three_ways_of_writing_the_crs(header: str) -> None:
    gcps = read_gcp_text(gcp_text(header), "gcp_list.txt", SIZES)
    assert gcps.crs.to_epsg() == 32615 or gcps.crs.to_dict()["zone"] == 15
    assert [p.name for p in gcps.points] == ["gcp1", "CHK-a"]
    assert [len(p.observations) for p in gcps.points] == [2, 2]
    assert [p.check for p in gcps.points] == [False, True]  # CHK... is a check point
    epsg, utm = to_utm(gcps)
    assert epsg == 32615 and utm.points[1].xyz == pytest.approx((576050.0, 5188030.0, 151.5), abs=1e-6)


def test_lat_lon_gcps_go_to_the_utm_zone_of_the_first_and_unnamed_ones_group_by_position() -> None:
    lines = [
        "-91.99 46.84 150.0 10 20 DJI_0000.JPG",  # EPSG:4326: longitude first, as ODM (GIS order)
        "-91.99 46.84 150.0 30 20 DJI_0001.JPG",
        "-91.98 46.84 151.0 30 20 DJI_0002.JPG",
    ]
    gcps = read_gcp_text(gcp_text("EPSG:4326", lines), "g.txt", SIZES, frozenset({"gcp2"}))
    assert [(p.name, len(p.observations), p.check) for p in gcps.points] == [
        ("gcp1", 2, False),
        ("gcp2", 1, True),
    ]
    epsg, utm = to_utm(gcps)
    assert epsg == 32615 and 500000 < utm.points[0].xyz[0] < 600000 and utm.points[0].xyz[2] == 150.0


@pytest.mark.parametrize(
    ("header", "line", "where", "says"),
    [
        ("EPSG:99999999", UTM_LINES[0], "line 1", "is not a CRS"),
        ("not a crs", UTM_LINES[0], "line 1", "is not a CRS"),
        ("EPSG:32615", "576000 5188000 150 10 20 DJI_9999.JPG", "line 2", "'DJI_9999.JPG' is not a photo"),
        ("EPSG:32615", "576000 5188000 150 10 20 dji_0000.jpg", "line 2", "case-sensitive"),
        ("EPSG:32615", "576000 5188000 150 64.5 20 DJI_0000.JPG", "line 2", "outside DJI_0000.JPG (64 x 48"),
        ("EPSG:32615", "576000 5188000 150 10 -1 DJI_0000.JPG", "line 2", "outside"),
        ("EPSG:32615", "576000 5188000 150 10 DJI_0000.JPG", "line 2", "5 field(s)"),
        ("EPSG:32615", "576000 north 150 10 20 DJI_0000.JPG", "line 2", "must be numbers"),
    ],
)
def test_errors_name_the_file_and_line(header: str, line: str, where: str, says: str) -> None:
    with pytest.raises(OdmInputError) as err:
        read_gcp_text(gcp_text(header, [line]), "my_gcps.txt", SIZES)
    assert f"my_gcps.txt, {where}" in str(err.value) and says in str(err.value), err.value


def test_one_name_two_positions_and_a_double_mark_are_refused() -> None:
    moved = [UTM_LINES[0], "576001.0 5188000.0 150.0 30 20 DJI_0001.JPG gcp1"]
    with pytest.raises(OdmInputError, match=r"line 3: GCP 'gcp1' has other coordinates than on line 2"):
        read_gcp_text(gcp_text("EPSG:32615", moved), "g.txt", SIZES)
    twice = [UTM_LINES[0], UTM_LINES[0].replace(" 10 20 ", " 11 21 ")]
    with pytest.raises(OdmInputError, match=r"line 3: GCP 'gcp1' is marked in DJI_0000.JPG again \(line 2\)"):
        read_gcp_text(gcp_text("EPSG:32615", twice), "g.txt", SIZES)


# --- the dataset stage ----------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> ProjectTree:
    t = ProjectTree(tmp_path / "project")
    t.images.mkdir(parents=True)
    for i in range(3):
        make_jpeg(t.images / f"DJI_{i:04d}.JPG", 33.0 + i)
    return t


def test_a_projects_gcp_list_sets_the_crs_and_offsets_as_odm(
    tree: ProjectTree, caplog: pytest.LogCaptureFixture
) -> None:
    tree.gcp_list.write_text(
        gcp_text(
            "EPSG:32615", [*UTM_LINES, UTM_LINES[0].replace("DJI_0000", "DJI_0002").replace("gcp1", "lone")]
        )
    )
    with caplog.at_level(logging.WARNING, "odm_core.stages.dataset"):
        dataset(tree, DatasetOptions())
    assert f"Using {tree.gcp_list}: 2 GCP(s), 4 marks" in caplog.text  # announced
    assert "fewer than 2 photos and are used for nothing" in caplog.text and "lone" in caplog.text
    georef = GeoReference.read(tree.coords_txt)
    assert (georef.epsg, georef.offset_x, georef.offset_y) == (32615, 576025.0, 5188015.0)  # GCPs' mean
    utm = tree.gcp_list_utm.read_text().splitlines()
    assert utm[0] == "WGS84 UTM 15N" and len(utm) == 5 and utm[3].endswith("DJI_0001.JPG CHK-a")


def test_use_exif_ignores_the_gcps_and_a_bad_file_writes_nothing(
    tree: ProjectTree, caplog: pytest.LogCaptureFixture
) -> None:
    tree.gcp_list.write_text(gcp_text("EPSG:32615", [UTM_LINES[0].replace("DJI_0000", "DJI_0009")]))
    with pytest.raises(OdmInputError, match="line 2: 'DJI_0009.JPG' is not a photo"):
        dataset(tree, DatasetOptions())
    assert not tree.images_json.exists() and not tree.coords_txt.exists()  # nothing written
    with caplog.at_level(logging.WARNING, "odm_core.stages.dataset"):
        dataset(tree, DatasetOptions(use_exif=True))
    assert "--use-exif: the GCP file is ignored" in caplog.text
    assert not tree.gcp_list_utm.exists() and GeoReference.read(tree.coords_txt).epsg == 32615


def test_no_gcp_seen_twice_is_an_error_that_says_what_to_do(tree: ProjectTree) -> None:
    tree.gcp_list.write_text(gcp_text("EPSG:32615", [UTM_LINES[0]]))
    with pytest.raises(OdmInputError, match="no GCP is marked in 2 or more photos.*--use-exif"):
        dataset(tree, DatasetOptions())


def test_a_wrong_gcp_file_on_the_command_line(tmp_path: Path) -> None:
    bad = tmp_path / "gcps.txt"
    bad.write_text("WGS84 UTM 99Q\n1 2 3 4 5 a.jpg\n")
    result = run_cli(["run", str(tmp_path), "--gcp", str(bad)], dict(os.environ), timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode == 2 and f"{bad}, line 1: 'WGS84 UTM 99Q' is not a CRS" in out, out
    assert "EPSG:32632, WGS84 UTM 32N" in out  # and what to write instead
    missing = run_cli(
        ["run", str(tmp_path), "--gcp", str(tmp_path / "none.txt")], dict(os.environ), timeout=120
    )
    assert missing.returncode == 2 and "cannot be read" in missing.stdout + missing.stderr


# --- a synthetic survey with surveyed targets -----------------------------------------------------


GCP_SURVEY = "--cols 5 --rows 3 --oblique 0 --width 640 --height 480 --gcps 5 --check-points 3 --gps-bias 5"
GCP_SURVEY += " --gps-noise 2"


@dataclass(frozen=True)
class GcpSurvey:
    """The README's synthetic GCP survey: 15 nadir photos whose GPS is biased 5 m and noisy 2 m, with 5 GCPs
    and 3 check points on the ground."""

    root: Path
    gsd_m: float

    @property
    def truth(self) -> Path:
        return self.root / "truth"


@pytest.fixture(scope="module")
def gcp_survey(tmp_path_factory: pytest.TempPathFactory) -> GcpSurvey:
    root = tmp_path_factory.mktemp("gcp") / "gcps"
    made = run_cli(["synthetic", str(root), *GCP_SURVEY.split()], dict(os.environ))  # as README.md gives it
    assert made.returncode == 0 and "GCPs in" in made.stdout, made.stdout + made.stderr
    return GcpSurvey(root, json.loads((root / "truth" / "truth.json").read_text())["gsd_m"])


def _project(survey: GcpSurvey, dest: Path, with_gcps: bool) -> ProjectTree:
    tree = ProjectTree(dest)
    shutil.copytree(survey.root / "images", tree.images)
    if with_gcps:
        shutil.copy(survey.root / "gcp_list.txt", tree.gcp_list)
    return tree


@pytest.mark.slow
def test_gcps_put_the_products_where_the_ground_is(gcp_survey: GcpSurvey, tmp_path: Path) -> None:
    """Check points within 1.5 GSD horizontally and 2 GSD vertically; the DSM on open ground within 2 GSD
    RMSE and the orthophoto within 1 px median of the truth, with no similarity removed."""
    from odm_core.evaluate.dem_truth import dem_accuracy
    from odm_core.evaluate.ortho_truth import ortho_accuracy
    from odm_core.options import DemOptions, PipelineOptions
    from tests.inprocess import run_stage

    tree = _project(gcp_survey, tmp_path / "with_gcps", with_gcps=True)
    defaults = PipelineOptions()
    for stage in ("dataset", "opensfm", "openmvs", "odm_filterpoints", "odm_georeferencing"):
        run_stage(tree, stage, getattr(defaults, stage))
    run_stage(tree, "odm_dem", DemOptions(dsm=True))
    run_stage(tree, "odm_orthophoto", defaults.odm_orthophoto)
    skipped = run_stage(tree, "odm_report", ReportOptions(skip_report=True))
    assert skipped.report_pages == 0 and not tree.report_pdf.exists() and tree.report_stats.is_file()
    report = run_stage(tree, "odm_report", ReportOptions())

    stats = json.loads(tree.opensfm_stats.read_text())
    gsd = gcp_survey.gsd_m
    checks = stats["check_errors"]
    assert checks["count"] == 3 and stats["gcp_errors"]["count"] == 5
    assert max(checks["error"]["x"], checks["error"]["y"]) <= 1.5 * gsd, checks
    assert checks["error"]["z"] <= 2 * gsd, checks
    # the check points' errors are real: against the truth's own target positions, not the file's
    truth = {t["name"]: t for t in json.loads((gcp_survey.truth / "gcps.json").read_text())["targets"]}
    offset = GeoReference.read(tree.coords_txt).offset
    for feature in json.loads(tree.gcp_stats.read_text()):
        if not feature["check"]:
            continue  # a control marked in 2 neighbouring photos triangulates loosely (its prior holds it)
        measured = np.array(feature["coordinates"]) + offset
        assert np.linalg.norm(measured - truth[feature["id"]]["centre_utm"]) <= 4 * gsd, feature

    truth_dir = gcp_survey.truth
    dsm = dem_accuracy(truth_dir, tree.dsm_tif, None)  # None: no similarity removed
    assert dsm.open_ground_rmse_m <= 2 * gsd, dsm
    ortho = ortho_accuracy(truth_dir, tree.orthophoto_tif, None)
    assert ortho.tiles >= 20 and ortho.median_shift_px <= 1.0, ortho

    exported = pyogrio.read_info(tree.ground_control_points_gpkg)
    assert exported["features"] == 8 and exported["crs"] == "EPSG:32632"
    geojson = json.loads(tree.ground_control_points_geojson.read_text())
    assert {f["properties"]["id"] for f in geojson["features"]} == set(truth)

    text = pdf_text(tree.report_pdf)
    assert report.report_pages == len(PdfReader(tree.report_pdf).pages) >= 6
    for section in ("Dataset summary", "Processing summary", "Features and matches", "Reconstruction details",
                    "Camera models", "Survey overlap", "Orthophoto", "Digital surface model"):  # fmt: skip
        assert section in text, section
    rmse_x = f"{checks['error']['x']:.3f}"
    assert "Check points (never constraints" in text and rmse_x in text and "CHK03" in text
    assert_pages_drawn(tree.report_pdf, tmp_path / "pages")


@pytest.mark.slow
def test_without_gcps_the_gps_bias_stays_and_the_run_says_so(gcp_survey: GcpSurvey, tmp_path: Path) -> None:
    from odm_core.evaluate.dense_truth import our_centres
    from odm_core.options import FilterpointsOptions, OpensfmOptions, PipelineOptions
    from odm_core.registry import STAGES
    from tests.inprocess import run_stage

    tree = _project(gcp_survey, tmp_path / "gps_only", with_gcps=False)
    opts = PipelineOptions(opensfm=OpensfmOptions(feature_quality="low"))
    opts = opts.model_copy(update={"odm_filterpoints": FilterpointsOptions(fast_orthophoto=True)})
    result = None
    for stage in STAGES:
        if stage not in opts.skipped_stages():
            ran = run_stage(tree, stage, getattr(opts, stage))
            result = ran if stage == "opensfm" else result
    offset = GeoReference.read(tree.coords_txt).offset
    ours = our_centres(tree.reconstruction_json)
    cameras = json.loads((gcp_survey.truth / "cameras.json").read_text())["photos"]
    error = [ours[c["filename"]] + offset - list(c["centre_utm"].values()) for c in cameras]
    assert 3.0 <= np.linalg.norm(np.mean(error, axis=0)) <= 8.0  # the 5 m bias of the GPS is there
    assert any("georeferenced by the photos' GPS alone" in note for note in result.notes)  # and said
    assert "check_errors" not in json.loads(tree.opensfm_stats.read_text())
    text = pdf_text(tree.report_pdf)  # and the report says so
    assert "No ground control point or check point measured this project" in text
    assert "georeferenced by the photos' GPS alone" in text


def pdf_text(pdf: Path) -> str:
    """The PDF's text, lines joined with spaces (fpdf breaks long lines)."""
    return " ".join(" ".join((page.extract_text() or "").split()) for page in PdfReader(pdf).pages)


def assert_pages_drawn(pdf: Path, folder: Path) -> None:
    """Every page rendered with pdftoppm (as a reader sees it) has ink on it, and the preview pages have
    pictures (more than a few grey levels)."""
    folder.mkdir()
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(pdf), str(folder / "p")], check=True)
    pages = sorted(folder.glob("p-*.png"))
    assert len(pages) == len(PdfReader(pdf).pages)
    for page in pages:
        grey = np.asarray(Image.open(page).convert("L"))
        assert (grey < 200).mean() > 0.005, page  # not blank
    assert len(np.unique(np.asarray(Image.open(pages[-1]).convert("L")))) > 64  # the last preview: an image


@pytest.mark.slow
def test_gcp_checks_and_force_gps_decide_what_constrains(gcp_survey: GcpSurvey, tmp_path: Path) -> None:
    """--gcp-checks turns GCPs into check points (two controls left: the GPS keeps the orientation, and
    the run says so); --force-gps keeps the GPS in the adjustment with all five controls."""
    from odm_core.options import OpensfmOptions
    from tests.inprocess import run_stage

    tree = _project(gcp_survey, tmp_path / "checks", with_gcps=True)
    run_stage(tree, "dataset", DatasetOptions())
    few = run_stage(tree, "opensfm", OpensfmOptions(feature_quality="low", gcp_checks="GCP01, GCP02,GCP03"))
    stats = json.loads(tree.opensfm_stats.read_text())
    assert stats["gcp_errors"]["count"] == 2 and stats["check_errors"]["count"] == 6 and stats["gcp_with_gps"]
    assert any("2 usable control GCP(s)" in note for note in few.notes)
    assert stats["check_errors"]["average_error"] < 2.5  # half the 5 m bias at most (measured 1.5 m)
    run_stage(tree, "opensfm", OpensfmOptions(feature_quality="low", force_gps=True))
    stats = json.loads(tree.opensfm_stats.read_text())
    assert stats["gcp_with_gps"] and stats["gcp_errors"]["count"] == 5
    assert max(stats["check_errors"]["error"].values()) <= 3 * gcp_survey.gsd_m
