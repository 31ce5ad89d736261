"""The texture atlas of a labelled mesh and its textured-model files (mvs-texturing after view selection).

plan_atlas (in the flow's process): patches and wedges (charts.py), xatlas packing at the photos'
resolution (packing.py), seam levelling offsets (levelling.py), then one .npz per page for the units.
bake_page (bake.py; a Dask unit per page) paints each page. write_textured_model writes texrecon's OBJ,
MTL (+ ODM's legacy copy) and texture names; write_glb (glb.py) the GLB. texture_model runs all of it in
one process (tests, benchmarks).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odm_core.artifacts import atomic_path, sha256_text
from odm_core.camera.view import ViewCamera
from odm_core.mesh.ply import TriangleMesh
from odm_core.texturing.bake import PageResult, PageUnit, bake_page
from odm_core.texturing.charts import Charts, build_charts, source_resolution, vertex_normals
from odm_core.texturing.glb import write_glb
from odm_core.texturing.labeling import Labeling
from odm_core.texturing.levelling import level_seams
from odm_core.texturing.objfile import (
    MODEL_NAME,
    ObjModel,
    copy_file,
    material_name,
    texture_name,
    write_mtl,
    write_obj,
)
from odm_core.texturing.packing import PADDING, Packing, pack_charts
from odm_core.worker import MapUnits, load_arrays, serial_map

GUTTER = PADDING + 2  # texels grown around the charts (covers the bilinear padding xatlas leaves)


@dataclass(frozen=True)
class AtlasOptions:
    """skip_global_seam_leveling, keep_unseen_faces, single_material: ODM's --texturing-* flags;
    max_texture_size: pages' side at most (texrecon --max_texture_size, ODM 8192); texel_scale: atlas
    texels per source photo pixel."""

    skip_global_seam_leveling: bool = False
    keep_unseen_faces: bool = False
    single_material: bool = False
    max_texture_size: int = 8192
    texel_scale: float = 1.0


@dataclass(frozen=True)
class AtlasPlan:
    """What the units and the writer need (arrays in files under the work folder) and the figures."""

    units: tuple[PageUnit, ...]
    model: str  # .npz: vertices, normals, faces (M, 2, 3) [vertex, vt], vt, pages
    n_pages: int
    width: int
    height: int
    faces: int
    unseen_faces: int
    patches: int
    texels_per_metre: float
    scale: float
    utilization: float
    seam_before: float
    seam_after_global: float
    seam_after: float
    seam_pairs: int
    charts_s: float
    levelling_s: float


@dataclass(frozen=True)
class AtlasResult:
    """The textured model's files and figures."""

    outputs: tuple[Path, ...]
    pages: int
    page_size: tuple[int, int]
    texels: int
    faces: int
    unseen_faces: int
    seam_before: float
    seam_after: float
    bake_peak_rss_mb: float
    seconds: dict[str, float]


def plan_atlas(
    mesh: TriangleMesh,
    views: Sequence[ViewCamera],
    labeling: Labeling,
    opts: AtlasOptions,
    workdir: Path,
    key: str,
) -> AtlasPlan:
    """Charts, packing and levelling of `mesh` (M faces, model frame) labelled by `labeling` over `views`;
    writes workdir/model.npz and workdir/page_NNNN.npz; `key` (the stage fingerprint) keys the units."""
    if labeling.n_faces != mesh.n_faces:
        raise ValueError(f"labeling has {labeling.n_faces} faces, the mesh {mesh.n_faces}")
    t0 = time.perf_counter()
    charts = build_charts(mesh, labeling.labels, labeling.uv_px, opts.keep_unseen_faces)
    tpm = source_resolution(mesh, charts) * opts.texel_scale
    packing = pack_charts(mesh, charts, tpm, opts.max_texture_size, opts.single_material)
    t1 = time.perf_counter()
    photos = tuple(str(v.photo) for v in views)
    lev = level_seams(charts, photos, not opts.skip_global_seam_leveling)
    t2 = time.perf_counter()
    units = _write_pages(charts, packing, lev.offsets, photos, workdir, key)
    model = _write_model(mesh, charts, packing, workdir / "model.npz")
    return AtlasPlan(
        units=units,
        model=str(model),
        n_pages=packing.n_pages,
        width=packing.width,
        height=packing.height,
        faces=len(charts.faces),
        unseen_faces=int((charts.labels < 0).sum()),
        patches=charts.n_patches,
        texels_per_metre=packing.texels_per_metre,
        scale=packing.scale,
        utilization=packing.utilization,
        seam_before=lev.before,
        seam_after_global=lev.after_global,
        seam_after=lev.after_local,
        seam_pairs=lev.pairs,
        charts_s=t1 - t0,
        levelling_s=t2 - t1,
    )


def _save_npz(path: Path, **arrays: np.ndarray) -> Path:
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub matches ** to allow_pickle
    return path


def _write_pages(
    charts: Charts, packing: Packing, offsets: np.ndarray, photos: tuple[str, ...], workdir: Path, key: str
) -> tuple[PageUnit, ...]:
    """One .npz and one PageUnit per page."""
    units = []
    for page in range(packing.n_pages):
        sel = np.nonzero((packing.pages == page) & (charts.labels >= 0))[0]
        unseen = packing.unseen_tx if page == packing.unseen_page else np.zeros((0, 3, 2), np.float32)
        arrays = _save_npz(
            workdir / f"page_{page:04d}.npz",
            corner_tx=packing.corner_tx[sel],
            labels=charts.labels[sel],
            src_uv=charts.wedge_uv[charts.wedge[sel]],
            offsets=offsets[charts.wedge[sel]],
            unseen_tx=unseen,
        )
        unit_key = sha256_text(key, "texture-page", str(page), str(packing.width), str(packing.height))
        out = workdir / f"page_{page:04d}.png"
        units.append(
            PageUnit(page, str(arrays), photos, packing.width, packing.height, GUTTER, str(out), unit_key)
        )
    return tuple(units)


def _write_model(mesh: TriangleMesh, charts: Charts, packing: Packing, path: Path) -> Path:
    """The writer's arrays: the kept faces over only the vertices they use."""
    used, vertex_of = np.unique(charts.faces, return_inverse=True)
    vertices = np.asarray(mesh.vertices, np.float64)[used]
    faces = vertex_of.reshape(-1, 3)
    return _save_npz(
        path,
        vertices=vertices,
        normals=vertex_normals(vertices, faces),
        faces=np.stack([faces, packing.vt_index], axis=1),
        vt=packing.vt,
        pages=packing.pages,
    )


def write_textured_model(plan: AtlasPlan, pages: Sequence[PageResult], out_dir: Path) -> tuple[Path, ...]:
    """texrecon's files in out_dir (odm_texturing/ or odm_texturing_25d/): the OBJ, the MTL, ODM's legacy
    odm_textured_model.mtl and the pages as NAME_materialNNNN_map_Kd.png."""
    model = load_arrays(plan.model)
    baked = {r.page: Path(r.path) for r in pages}
    missing = [u.out for u in plan.units if u.page not in baked]
    if missing:
        raise FileNotFoundError(f"texture pages not baked: {', '.join(missing)}")
    textures = [copy_file(baked[p], out_dir / texture_name(p)) for p in range(plan.n_pages)]
    obj = write_obj(out_dir / f"{MODEL_NAME}.obj", model["vertices"], model["normals"], model["vt"],
                    model["faces"], model["pages"])  # fmt: skip
    return (obj, *write_mtl(out_dir, plan.n_pages), *textures)


def textured_obj_model(plan: AtlasPlan, out_dir: Path) -> ObjModel:
    """The model write_textured_model wrote into out_dir, from the arrays it wrote it from (what
    objfile.read_obj gives back, at full precision): for the GLB without parsing the OBJ again."""
    model = load_arrays(plan.model)
    corners = np.asarray(model["faces"]).transpose(0, 2, 1)  # (M, 3, 2) [corner, (vertex, vt)]
    vt = np.column_stack([model["vt"][:, 0], 1.0 - model["vt"][:, 1]])  # as the OBJ: V up the image
    pages = np.asarray(model["pages"])
    names = {p: material_name(p) for p in np.unique(pages).tolist()}
    return ObjModel(
        vertices=np.asarray(model["vertices"], np.float64),
        vt=vt,
        groups={names[p]: corners[pages == p] for p in names},
        textures={names[p]: out_dir / texture_name(p) for p in names},
    )


def texture_model(
    mesh: TriangleMesh,
    views: Sequence[ViewCamera],
    labeling: Labeling,
    opts: AtlasOptions,
    workdir: Path,
    out_dir: Path,
    key: str,
    rtc_offset: tuple[float, float] | None = None,
    gltf: bool = False,
    map_units: MapUnits = serial_map,
) -> AtlasResult:
    """plan_atlas, bake_page per page through map_units, write_textured_model, and with `gltf` the GLB."""
    plan = plan_atlas(mesh, views, labeling, opts, workdir, key)
    t0 = time.perf_counter()
    baked: list[PageResult] = map_units(bake_page, plan.units)
    t1 = time.perf_counter()
    outputs = write_textured_model(plan, baked, out_dir)
    if gltf:
        glb = write_glb(textured_obj_model(plan, out_dir), out_dir / f"{MODEL_NAME}.glb", rtc_offset)
        outputs = (*outputs, glb)
    seconds = {"charts": plan.charts_s, "levelling": plan.levelling_s, "bake": t1 - t0,
               "write": time.perf_counter() - t1}  # fmt: skip
    return AtlasResult(
        outputs=outputs,
        pages=plan.n_pages,
        page_size=(plan.width, plan.height),
        texels=sum(max(r.texels, 0) for r in baked),
        faces=plan.faces,
        unseen_faces=plan.unseen_faces,
        seam_before=plan.seam_before,
        seam_after=plan.seam_after,
        bake_peak_rss_mb=max(r.peak_rss_mb for r in baked),
        seconds=seconds,
    )
