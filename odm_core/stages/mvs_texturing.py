"""mvs_texturing: the textured models, as ODM's stages/mvstex.py runs texrecon (mvs-texturing).

Up to two models: the 3D mesh into odm_texturing/ (unless --skip-3dmodel) and the 2.5D mesh into
odm_texturing_25d/ in texrecon's nadir mode (unless --use-3dmesh). For each: one unit per photo ray-casts
the mesh and scores the faces it sees (texturing/data_term.py), a unit per model picks a photo per face
(texturing/selection.py: photometric outliers dropped, a Potts MRF for few seams), packs the charts into
atlas pages and levels colours across seams (texturing/atlas.py), one unit per page bakes the texture
(texturing/bake.py); then a unit per model writes texrecon's OBJ/MTL/PNG files and, with --gltf, ODM's GLB
for the primary model (the 3D one, or the 2.5D one with --skip-3dmodel). Coordinates are the meshes' (the
model frame: UTM minus the coords.txt offset, ODM's `_geo` models); the GLB's CESIUM_RTC centre is that
offset.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pycolmap

from odm_core.camera.reconstruction import view_cameras
from odm_core.camera.view import ViewCamera
from odm_core.errors import OdmStageError
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.mesh.ply import read_mesh_ply
from odm_core.options import TexturingOptions
from odm_core.texturing.atlas import (
    AtlasOptions,
    AtlasPlan,
    plan_atlas,
    textured_obj_model,
    write_textured_model,
)
from odm_core.texturing.bake import PageResult, bake_page
from odm_core.texturing.data_term import DataTermUnit, data_term, plan_data_term
from odm_core.texturing.glb import write_glb
from odm_core.texturing.selection import select_views
from odm_core.worker import MapUnits, peak_rss_mb, serial_map

CAST_WIDTH_PX = 1000  # photos are ray cast at this width for visibility and scoring


@dataclass(frozen=True)
class ModelJob:
    """One model to texture: "3d" or "25d", its mesh, its work folder and its data-term units."""

    model: str
    mesh: str
    work: str
    units: tuple[DataTermUnit, ...]
    glb: bool


@dataclass(frozen=True)
class TexturingPlan:
    """The views (in data-term order), the models' jobs and the atlas options."""

    views: tuple[ViewCamera, ...]
    jobs: tuple[ModelJob, ...]
    atlas: AtlasOptions
    rtc_offset: tuple[float, float] | None
    key: str


@dataclass(frozen=True)
class ModelFigures:
    """What the user is told about one textured model."""

    model: str
    selection: tuple[str, ...]
    faces: int
    unseen_faces: int
    pages: int
    page_size: tuple[int, int]
    seam_before: float
    seam_after: float
    peak_mb: float  # the units' workers' peak memory

    def line(self) -> str:
        where = "odm_texturing" if self.model == "3d" else "odm_texturing_25d"
        name = "3D model" if self.model == "3d" else "2.5D model"
        return (
            f"mvs_texturing: {name} {self.faces:,} faces ({self.unseen_faces:,} unseen kept) on "
            f"{self.pages} page(s) of {self.page_size[0]}x{self.page_size[1]} px in {where}/; colour "
            f"across seams {self.seam_before:.1f} -> {self.seam_after:.1f} (0-255); workers' peak memory "
            f"{self.peak_mb:.0f} MiB"
        )


@dataclass(frozen=True)
class TexturingResult:
    """The textured models' figures and every file written."""

    models: tuple[ModelFigures, ...]
    outputs: tuple[Path, ...]

    def summary(self) -> list[str]:
        """The run summary's lines for this stage."""
        lines = []
        for figures in self.models:
            lines.append(figures.line())
            lines += [f"  {line}" for line in figures.selection]
        return lines


def plan_mvs_texturing(tree: ProjectTree, opts: TexturingOptions, key: str) -> TexturingPlan:
    """The models to texture (with their data-term units) and the views; stale outputs of models this run
    does not make are removed. Raises OdmStageError when a mesh odm_meshing should have made is missing."""
    views = tuple(view_cameras(pycolmap.Reconstruction(tree.colmap_model), tree.images, "lowest"))
    if not views:
        raise OdmStageError(f"{tree.colmap_model} has no registered photo to texture from")
    wanted = [m for m, on in (("3d", not opts.skip_3dmodel), ("25d", not opts.use_3dmesh)) if on]
    for model in ("3d", "25d"):
        if model not in wanted:
            shutil.rmtree(tree.texturing(model), ignore_errors=True)
    jobs = []
    for model in wanted:
        mesh = tree.odm_mesh if model == "3d" else tree.odm_25dmesh
        if not mesh.is_file():
            raise OdmStageError(f"{mesh} is missing: run the odm_meshing stage first")
        work = tree.texturing(model) / "tmp"
        units = plan_data_term(mesh, list(views), work, f"{key}|{model}", CAST_WIDTH_PX, model == "25d")
        primary = model == "3d" or opts.skip_3dmodel
        jobs.append(ModelJob(model, str(mesh), str(work), tuple(units), opts.gltf and primary))
    georef = GeoReference.of_model(tree.coords_txt, tree.reference_lla_json)
    rtc = (georef.offset_x, georef.offset_y) if georef is not None else None
    atlas = AtlasOptions(
        skip_global_seam_leveling=opts.texturing_skip_global_seam_leveling,
        keep_unseen_faces=opts.texturing_keep_unseen_faces,
        single_material=opts.texturing_single_material,
    )
    return TexturingPlan(views, tuple(jobs), atlas, rtc, key)


@dataclass(frozen=True)
class ModelAtlas:
    """A model's view selection and atlas, as a unit hands them back: the selection's summary lines and
    the atlas plan (its arrays in files under the job's work folder), and the unit's peak memory."""

    selection: tuple[str, ...]
    atlas: AtlasPlan
    peak_mb: float


def select_and_pack(plan: TexturingPlan, job: ModelJob, data_terms: Sequence[Path]) -> ModelAtlas:
    """A photo per face of the job's mesh from its data-term files, then the atlas plan (page units); one
    unit per model (the two models' selections run side by side on the workers).

    Raises OdmStageError when no photo sees any face and unseen faces are not kept."""
    mesh = read_mesh_ply(Path(job.mesh))
    selection = select_views(mesh, plan.views, data_terms)
    if selection.seen == 0 and not plan.atlas.keep_unseen_faces:
        raise OdmStageError(
            f"no photo sees any face of {job.mesh}: check the reconstruction, or keep the faces with "
            "--texturing-keep-unseen-faces"
        )
    atlas = plan_atlas(
        mesh, plan.views, selection.labeling, plan.atlas, Path(job.work), f"{plan.key}|{job.model}"
    )
    return ModelAtlas(tuple(selection.summary()), atlas, peak_rss_mb())


@dataclass(frozen=True)
class ModelFiles:
    """A textured model's figures and files, as the writing unit hands them back."""

    figures: ModelFigures
    outputs: tuple[Path, ...]


def finish_model(
    project: str, plan: TexturingPlan, job: ModelJob, packed: ModelAtlas, pages: Sequence[PageResult],
    data_term_peak_mb: float,
) -> ModelFiles:  # fmt: skip
    """Write the job's textured model (and GLB) from its baked pages into the project; its work folder is
    removed. One unit per model. data_term_peak_mb: the data-term units' workers' peak memory (MiB)."""
    tree = ProjectTree(Path(project))
    out_dir = tree.texturing(job.model)
    for stale in out_dir.glob("*"):
        if stale.is_file():
            stale.unlink()  # a page or GLB of an earlier run must not outlive it
    atlas = packed.atlas
    outputs = write_textured_model(atlas, pages, out_dir)
    if job.glb:
        model = textured_obj_model(atlas, out_dir)
        outputs = (*outputs, write_glb(model, tree.textured_model(job.model, ".glb"), plan.rtc_offset))
    shutil.rmtree(job.work, ignore_errors=True)
    figures = ModelFigures(
        model=job.model,
        selection=packed.selection,
        faces=atlas.faces,
        unseen_faces=atlas.unseen_faces,
        pages=atlas.n_pages,
        page_size=(atlas.width, atlas.height),
        seam_before=atlas.seam_before,
        seam_after=atlas.seam_after,
        peak_mb=max([data_term_peak_mb, packed.peak_mb, peak_rss_mb(), *(p.peak_rss_mb for p in pages)]),
    )
    return ModelFiles(figures, outputs)


def run(
    tree: ProjectTree, opts: TexturingOptions, key: str = "", map_units: MapUnits = serial_map
) -> TexturingResult:
    """The stage in one process (what tests, benchmarks and scripts call): plan, the data-term units
    through `map_units`, selection and atlas, the page units, the files."""
    plan = plan_mvs_texturing(tree, opts, key)
    files = []
    for job in plan.jobs:
        terms = [Path(p) for p in map_units(data_term, list(job.units))]
        packed = select_and_pack(plan, job, terms)
        pages = map_units(bake_page, list(packed.atlas.units))
        files.append(finish_model(str(tree.root), plan, job, packed, pages, peak_rss_mb()))
    return texturing_result(files)


def texturing_result(files: Sequence[ModelFiles]) -> TexturingResult:
    """The stage's result from its models' files, in the plan's order."""
    return TexturingResult(tuple(f.figures for f in files), tuple(p for f in files for p in f.outputs))
