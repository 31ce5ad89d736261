"""Packing the texture patches into atlas pages with xatlas (packing only: the charts are the patches,
their shapes the photos' pixels).

xatlas traps (docs: shared reference mesh-texturing.md 2.3): with `use_input_mesh_uvs` it still rescales
each chart to its 3D area x `texels_per_unit`, so that is given in texels per metre; it may rotate or mirror
a chart (baking goes through barycentrics, so that is harmless); with `resolution` set every page has
that exact size and charts that do not fit go to more pages, so the page is sized from the charts' area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xatlas

from odm_core.mesh.ply import TriangleMesh
from odm_core.texturing.charts import Charts

UNSEEN_CHART_TEXELS = 4  # side of the chart unseen faces share (texrecon: a 3 x 3 black patch)
PADDING = 2  # texels between charts (bilinear footprint added by xatlas)
FIT_ATTEMPTS = 8  # single-material scale-downs tried before giving up
FIRST_PAGE_UTILIZATION = 0.55  # the charts' 3D area x density over a first page's texels (one xatlas
# run fits Brighton's models; xatlas packed 0.63-0.74 of a page, its padding adding 6-10% to the area)
REFIT_UTILIZATION = 0.6  # an overflowed page's next size: the texels xatlas placed over this
PAGE_STEP = 64  # page sides are multiples of this


@dataclass(frozen=True)
class Packing:
    """pages: (M,) int32 page per face; corner_tx: (M, 3, 2) float32 corners in texels of their page
    (x right, y down, texel (i, j) covers [i, i+1) x [j, j+1)); vt_index: (M, 3) int64 into vt;
    vt: (T, 2) float32 normalised (x / width, y / height), not flipped; width, height: page size;
    texels_per_metre: the density packed; scale: that density / the one asked for; unseen_tx: (K, 3, 2)
    float32 the triangles (texels, page unseen_page) of the chart unseen faces share, painted black."""

    pages: np.ndarray
    corner_tx: np.ndarray
    vt_index: np.ndarray
    vt: np.ndarray
    n_pages: int
    width: int
    height: int
    texels_per_metre: float
    scale: float
    utilization: float
    unseen_tx: np.ndarray
    unseen_page: int


def _run_xatlas(
    mesh: TriangleMesh, charts: Charts, seen: np.ndarray, tpu: float, resolution: int
) -> xatlas.Atlas:
    """xatlas over the seen faces' wedges (mesh 0) and, when unseen faces are kept, one small square
    chart for them (mesh 1)."""
    used = np.unique(charts.wedge[seen])
    local = np.full(len(charts.wedge_vertex), -1, np.int64)
    local[used] = np.arange(len(used))
    atlas = xatlas.Atlas()
    positions = np.asarray(mesh.vertices, np.float32)[charts.wedge_vertex[used]]
    atlas.add_mesh(positions, local[charts.wedge[seen]].astype(np.uint32), uvs=charts.wedge_uv[used])
    if not seen.all():
        s = UNSEEN_CHART_TEXELS / tpu
        quad = np.array([[0, 0, 0], [s, 0, 0], [s, s, 0], [0, s, 0]], np.float32)
        quad_uv = quad[:, :2] * np.float32(tpu)
        atlas.add_mesh(quad, np.array([[0, 1, 2], [0, 2, 3]], np.uint32), uvs=quad_uv)
    chart_options = xatlas.ChartOptions()
    chart_options.use_input_mesh_uvs = True
    pack_options = xatlas.PackOptions()
    pack_options.texels_per_unit = tpu
    pack_options.padding = PADDING
    pack_options.bilinear = True
    pack_options.resolution = resolution
    atlas.generate(chart_options, pack_options)
    return atlas


def _generate(
    mesh: TriangleMesh, charts: Charts, seen: np.ndarray, tpu: float, max_size: int, single: bool
) -> tuple[xatlas.Atlas, float]:
    """One square page sized from the charts' area (FIRST_PAGE_UTILIZATION), grown until they fit one page,
    up to max_size; past that, pages of max_size (several), or for a single material the density scaled
    down until one page fits. Returns the atlas and the density used.

    (xatlas's own sizing, resolution 0, can return a strip: 20706 x 2237 texels for Brighton's 2.5D
    model, whose charts fit one 6784 px square page.)"""
    p = np.asarray(mesh.vertices, np.float64)[charts.faces[seen]]
    area_m2 = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1).sum()
    for _ in range(FIT_ATTEMPTS):
        side = _page_side(area_m2 * tpu**2 / FIRST_PAGE_UTILIZATION, max_size)
        atlas = _run_xatlas(mesh, charts, seen, tpu, side)
        while atlas.atlas_count > 1 and side < max_size:  # the texels xatlas placed, at a lower utilization
            placed = side * side * sum(atlas.get_utilization(i) for i in range(atlas.atlas_count))
            side = _page_side(max(placed / REFIT_UTILIZATION, (side + PAGE_STEP) ** 2), max_size)
            atlas = _run_xatlas(mesh, charts, seen, tpu, side)
        if atlas.atlas_count <= 1 or not single:
            return atlas, tpu
        tpu *= 0.98 / np.sqrt(atlas.atlas_count)
    raise ValueError(f"the atlas does not fit one {max_size} px page after {FIT_ATTEMPTS} scale-downs")


def _page_side(texels: float, max_size: int) -> int:
    """The side of a square page of at least `texels` texels: a multiple of PAGE_STEP, at most max_size."""
    side = PAGE_STEP * int(np.ceil(np.sqrt(texels) / PAGE_STEP))
    return int(min(max(side, PAGE_STEP), max_size))


def _place_dropped(charts: Charts, dropped: np.ndarray, vt_index: np.ndarray, pages: np.ndarray) -> None:
    """Faces xatlas leaves out (no area in 3D or in the photo; atlas index -1) take one UV point, the
    first corner of a packed face of their patch (or of any packed face), in place."""
    if not dropped.any():
        return
    valid = np.nonzero(~dropped & (pages >= 0) & (charts.labels >= 0))[0]
    donor_of_patch = np.full(charts.n_patches, valid[0])
    donor_of_patch[charts.patch[valid][::-1]] = valid[::-1]
    donor = donor_of_patch[charts.patch[dropped]]
    vt_index[dropped] = vt_index[donor, :1]
    pages[dropped] = pages[donor]


def pack_charts(
    mesh: TriangleMesh, charts: Charts, texels_per_metre: float, max_size: int, single: bool
) -> Packing:
    """Pack `charts` at `texels_per_metre` into pages of at most max_size x max_size texels."""
    seen = charts.labels >= 0
    if not seen.any():
        raise ValueError("no face is seen by a photo: nothing to texture")
    atlas, tpu = _generate(mesh, charts, seen, texels_per_metre, max_size, single)
    w, h = int(atlas.width), int(atlas.height)
    _, indices, uvs = atlas.get_mesh(0)
    page_of_vertex, _ = atlas.get_mesh_vertex_assignment(0)
    uvs = np.asarray(uvs, np.float32)
    m = len(charts.faces)
    vt_index = np.zeros((m, 3), np.int64)
    vt_index[seen] = np.asarray(indices, np.int64)
    pages = np.zeros(m, np.int32)
    pages[seen] = np.asarray(page_of_vertex, np.int32)[vt_index[seen]].min(axis=1)
    _place_dropped(charts, seen & (pages < 0), vt_index, pages)
    unseen_tx, unseen_page = np.zeros((0, 3, 2), np.float32), 0
    if not seen.all():
        _, quad_idx, quad_uv = atlas.get_mesh(1)
        quad_page, _ = atlas.get_mesh_vertex_assignment(1)
        quad_uv = np.asarray(quad_uv, np.float32)
        unseen_tx = quad_uv[np.asarray(quad_idx, np.int64)] * np.array([w, h], np.float32)
        unseen_page = int(np.asarray(quad_page)[0])
        vt_index[~seen] = len(uvs)
        pages[~seen] = unseen_page
        uvs = np.vstack([uvs, quad_uv.mean(axis=0)[None]])
    corner_tx = uvs[vt_index] * np.array([w, h], np.float32)
    n_pages = max(int(atlas.atlas_count), 1)
    utilization = float(np.mean([atlas.get_utilization(i) for i in range(n_pages)]))
    return Packing(
        pages=pages,
        corner_tx=corner_tx.astype(np.float32),
        vt_index=vt_index,
        vt=uvs,
        n_pages=n_pages,
        width=w,
        height=h,
        texels_per_metre=tpu,
        scale=tpu / texels_per_metre,
        utilization=utilization,
        unseen_tx=unseen_tx.astype(np.float32),
        unseen_page=unseen_page,
    )
