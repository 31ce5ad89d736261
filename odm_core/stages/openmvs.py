"""The `openmvs` stage: a dense point cloud from a depth map per view (ODM's name; odmflow's CPU engine).

The stage is planned here (views, neighbours, one unit of work per view and phase), its units run
wherever the caller sends them (Dask workers, through the tasks layer), and the fused points of every
view are gathered into ODM's `scene_dense_dense_filtered.ply`. Phases: photometric depth maps (stereo
pairs), the geometric pass (unless --pc-skip-geometric), and fusion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pycolmap

from odm_core.artifacts import sha256_text, write_json
from odm_core.camera.reconstruction import view_cameras
from odm_core.camera.view import ViewCamera
from odm_core.cloud.ply import write_ply
from odm_core.dense.fusion import merge_fused
from odm_core.dense.plan import UnitResult, ViewUnit, neighbours
from odm_core.dense.units import run_unit
from odm_core.errors import OdmStageError
from odm_core.layout import ProjectTree
from odm_core.options import OpenmvsOptions
from odm_core.worker import MapUnits, serial_map

MIN_VIEWS_FUSE = 2  # ODM's --number-views-fuse for OpenMVS


@dataclass(frozen=True)
class DensePlan:
    """The units of each phase, in the order they must run (a phase reads the one before)."""

    views: tuple[ViewCamera, ...]
    phases: tuple[tuple[ViewUnit, ...], ...]

    @property
    def n_units(self) -> int:
        return sum(len(p) for p in self.phases)


@dataclass(frozen=True)
class OpenmvsResult:
    """What the dense stage made, and what its units cost."""

    n_views: int
    n_points: int
    depthmap_width: int
    depthmap_height: int
    units_computed: int
    units_reused: int
    worker_peak_rss_mb: float
    unit_seconds: float
    outputs: tuple[Path, ...]

    def summary(self) -> list[str]:
        """The run summary's lines for this stage."""
        return [
            f"openmvs: {self.n_points} dense points from {self.n_views} depth maps of "
            f"{self.depthmap_width}x{self.depthmap_height} px ({self.units_computed} view units computed, "
            f"{self.units_reused} from checkpoints, {self.unit_seconds:.1f} s of work; worker peak memory "
            f"{self.worker_peak_rss_mb:.0f} MiB)"
        ]


def plan_openmvs(tree: ProjectTree, opts: OpenmvsOptions, key: str) -> DensePlan:
    """Choose views and neighbours from the sparse model; write views.json; one unit per view and phase.

    `key` digests everything the depth maps depend on (the stage's fingerprint): a unit whose output
    carries another key is computed again.
    """
    rec = pycolmap.Reconstruction(tree.colmap_model)
    try:
        views = view_cameras(rec, tree.images, opts.pc_quality)
    except ValueError as err:
        raise OdmStageError(f"openmvs: {err}") from None
    if len(views) < 2:
        raise OdmStageError("openmvs needs at least two registered photos; the sparse model has fewer")
    stereo, fusion = neighbours(rec, views)
    _remove_stale_depthmaps(tree, {v.name for v in views})
    depth_kind = "depth" if opts.pc_skip_geometric else "geometric"
    kinds = ["depth"] + ([] if opts.pc_skip_geometric else ["geometric"]) + ["fused"]
    reads = {"depth": None, "geometric": "depth", "fused": depth_kind}
    phases = []
    for kind in kinds:
        units = []
        for v in views:
            nbrs = stereo[v.index] if kind == "depth" else fusion[v.index]
            src = reads[kind]
            sources = tuple(str(tree.depthmap(views[i].name, src)) for i in [v.index, *nbrs]) if src else ()
            units.append(
                ViewUnit(
                    kind=kind,
                    view=v,
                    neighbours=tuple(views[i] for i in nbrs),
                    sources=sources,
                    out=str(tree.depthmap(v.name, kind)),
                    key=sha256_text(key, kind, v.name),
                    min_views=MIN_VIEWS_FUSE,
                )
            )
        phases.append(tuple(units))
    write_json(tree.openmvs_views, _views_doc(views, stereo, fusion))
    return DensePlan(tuple(views), tuple(phases))


def _views_doc(views: list[ViewCamera], stereo: dict, fusion: dict) -> list[dict]:
    return [
        {
            **asdict(v),
            "stereo_neighbours": [views[i].name for i in stereo[v.index]],
            "fusion_neighbours": [views[i].name for i in fusion[v.index]],
        }
        for v in views
    ]


def _remove_stale_depthmaps(tree: ProjectTree, names: set[str]) -> None:
    """Depth maps of photos no longer in the model would only waste space."""
    if not tree.depthmaps.is_dir():
        return
    for f in tree.depthmaps.iterdir():
        if not any(f.name.startswith(f"{n}.") for n in names):
            f.unlink(missing_ok=True)


def finish_openmvs(tree: ProjectTree, plan: DensePlan, results: list[UnitResult]) -> OpenmvsResult:
    """Gather every view's fused points into the dense cloud."""
    points = merge_fused([u.out for u in plan.phases[-1]])
    if len(points) == 0:
        raise OdmStageError(
            "openmvs fused no points: the depth maps do not agree between photos "
            "(too little overlap or texture); try --pc-quality high"
        )
    ply = write_ply(tree.openmvs_model, points)
    first = plan.views[0]
    return OpenmvsResult(
        n_views=len(plan.views),
        n_points=len(points),
        depthmap_width=first.dm_width,
        depthmap_height=first.dm_height,
        units_computed=sum(not r.reused for r in results),
        units_reused=sum(r.reused for r in results),
        worker_peak_rss_mb=max((r.peak_rss_mb for r in results), default=0.0),
        unit_seconds=sum(r.seconds for r in results),
        outputs=(ply, tree.openmvs_views),
    )


def run(tree: ProjectTree, opts: OpenmvsOptions, key: str, map_units: MapUnits = serial_map) -> OpenmvsResult:
    """The stage in one process (what tests, benchmarks and scripts call): plan, every phase's units
    through `map_units` (phases in order), gather. `key` keys the units' checkpoints (the fingerprint)."""
    plan = plan_openmvs(tree, opts, key)
    results = [r for phase in plan.phases for r in map_units(run_unit, phase)]
    return finish_openmvs(tree, plan, results)
