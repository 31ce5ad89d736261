"""Ground control in structure from motion: the model placed on the GCPs, then held to them in bundle
adjustment, and every GCP and check point measured against the adjusted cameras.

1. Each GCP is triangulated from its marks in the registered photos (the rays' least-squares meeting
   point, refined on the reprojection error with the cameras held).
2. The model is moved onto the control points by the similarity of their triangulated to their surveyed
   positions (Umeyama; a translation with fewer than 3 or collinear controls): this removes the GPS bias.
3. Bundle adjustment over every camera and tie point, with each control point a 3D point seen by its
   marks (reprojection error, in pixels, like a tie point) and tied to its surveyed position by a prior of
   its accuracy (`gcp_accuracy` m horizontally, twice that vertically): a bent block straightens. With
   --force-gps, or fewer than 3 usable controls, the photos' GPS positions stay in as priors of their
   own accuracy, as ODM does (OpenSfM's bundle adjustment with GCPs; ODM stages/run_opensfm.py).
4. Every GCP is triangulated again from the adjusted cameras: its error against the surveyed position.
   Check points enter only here, so their errors measure the product's accuracy independently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyceres
import pycolmap
from pycolmap import cost_functions

from odm_core.errors import OdmStageError
from odm_core.geo.gcp import GroundControlPoint
from odm_core.sfm.similarity import umeyama

MIN_CONTROLS = 3  # non-collinear controls that fix a similarity on their own
COLLINEAR_RATIO = 0.05  # the controls' smaller horizontal spread under this share of the larger: a line
ODM_TO_COLMAP_PX = 0.5  # ODM's marks put the top-left pixel's centre at (0, 0), COLMAP at (0.5, 0.5)

Marks = list[tuple[int, np.ndarray]]  # (image id, pixel in COLMAP's convention)


@dataclass(frozen=True)
class GcpResidual:
    """One GCP measured from the adjusted cameras (model frame, metres): triangulated minus surveyed."""

    name: str
    check: bool
    photos: tuple[str, ...]
    surveyed: tuple[float, float, float]
    error_m: tuple[float, float, float]
    reprojection_px: float  # RMS over its marks of the triangulated point's reprojection


@dataclass(frozen=True)
class GcpAdjustment:
    """What the adjustment used and found."""

    residuals: tuple[GcpResidual, ...]
    n_controls: int
    with_gps: bool  # the photos' GPS stayed in bundle adjustment
    unused: tuple[str, ...]  # GCPs marked in fewer than 2 registered photos
    notes: tuple[str, ...]


def adjust_to_gcps(
    rec: pycolmap.Reconstruction,
    gcps: list[GroundControlPoint],
    gps_model: dict[str, np.ndarray],
    gps_sigma: dict[str, tuple[float, float]],
    gcp_accuracy_m: float,
    force_gps: bool,
    refine_intrinsics: bool,
) -> GcpAdjustment:
    """Place and adjust `rec` (in place) on `gcps` (coordinates in the model frame: UTM minus offset).

    `gps_model`: photo name -> its GPS position in the model frame (z NaN without altitude), with
    `gps_sigma` (horizontal, vertical metres). Raises OdmStageError when no control point is marked in
    2 or more registered photos.
    """
    marks = {g.name: _marks(rec, g) for g in gcps}
    usable = [g for g in gcps if len(marks[g.name]) >= 2]
    unused = tuple(g.name for g in gcps if g not in usable)
    controls = [g for g in usable if not g.check]
    if not controls:
        raise OdmStageError(
            "no control GCP is marked in 2 or more registered photos, so the GCPs cannot georeference the "
            "model; mark the GCPs in more photos, or pass --use-exif to georeference by GPS"
        )
    notes: list[str] = []
    solid = _place(rec, controls, marks)
    with_gps = bool(gps_model) and (force_gps or not solid)
    if not solid:
        notes.append(
            f"{len(controls)} usable control GCP(s), not {MIN_CONTROLS} spread ones: the GCPs shifted the "
            "model and the photos' GPS kept its orientation and scale"
        )
    _bundle_adjust(
        rec, controls, marks, gcp_accuracy_m, gps_model if with_gps else {}, gps_sigma, refine_intrinsics
    )
    residuals = tuple(_residual(rec, g, marks[g.name]) for g in usable)
    return GcpAdjustment(residuals, len(controls), with_gps, unused, tuple(notes))


def _marks(rec: pycolmap.Reconstruction, gcp: GroundControlPoint) -> Marks:
    by_name = {im.name: im for im in rec.images.values() if im.has_pose}
    return [
        (by_name[o.image].image_id, np.array([o.px, o.py]) + ODM_TO_COLMAP_PX)
        for o in gcp.observations
        if o.image in by_name
    ]


def _place(rec: pycolmap.Reconstruction, controls: list[GroundControlPoint], marks: dict[str, Marks]) -> bool:
    """Move `rec` onto the controls; True when their geometry fixed a full similarity."""
    measured = np.array([triangulate(rec, marks[g.name])[0] for g in controls])
    surveyed = np.array([g.xyz for g in controls])
    spread = np.linalg.svd(surveyed[:, :2] - surveyed[:, :2].mean(axis=0), compute_uv=False)
    solid = len(controls) >= MIN_CONTROLS and spread[-1] > COLLINEAR_RATIO * spread[0]
    if solid:
        scale, rotation, shift = umeyama(measured, surveyed, np.ones(len(controls)))
    else:
        scale, rotation, shift = 1.0, np.eye(3), (surveyed - measured).mean(axis=0)
    rec.transform(pycolmap.Sim3d(scale, pycolmap.Rotation3d(rotation), shift))
    return solid


def triangulate(rec: pycolmap.Reconstruction, marks: Marks) -> tuple[np.ndarray, float]:
    """A point seen at `marks` (>= 2) by the registered cameras, held fixed: the rays' least-squares
    meeting point refined on the reprojection error; returns (xyz, RMS reprojection px)."""
    centres, rays = [], []
    for image_id, xy in marks:
        image = rec.images[image_id]
        normalised = rec.cameras[image.camera_id].cam_from_img(xy)
        if normalised is None:
            continue
        ray = image.cam_from_world().rotation.matrix().T @ np.array([*normalised, 1.0])
        centres.append(image.projection_center())
        rays.append(ray / np.linalg.norm(ray))
    projectors = [np.eye(3) - np.outer(d, d) for d in rays]
    xyz = np.linalg.solve(sum(projectors), sum(p @ c for p, c in zip(projectors, centres, strict=True)))
    problem, held = pyceres.Problem(), []
    for image_id, xy in marks:
        image = rec.images[image_id]
        camera = rec.cameras[image.camera_id]
        params = camera.params.copy()
        held.append(params)
        cost = cost_functions.ReprojErrorCost(camera.model, xy, image.cam_from_world())
        problem.add_residual_block(cost, None, [xyz, params])
        problem.set_parameter_block_constant(params)
    options = pyceres.SolverOptions()
    options.linear_solver_type = pyceres.LinearSolverType.DENSE_QR
    options.max_num_iterations = 50
    pyceres.solve(options, problem, pyceres.SolverSummary())
    return xyz, _reprojection_rms(rec, marks, xyz)


def _reprojection_rms(rec: pycolmap.Reconstruction, marks: Marks, xyz: np.ndarray) -> float:
    errors = []
    for image_id, xy in marks:
        projected = rec.images[image_id].project_point(xyz)
        errors.append(np.inf if projected is None else float(np.sum((projected - xy) ** 2)))
    return float(np.sqrt(np.mean(errors)))


def _residual(rec: pycolmap.Reconstruction, gcp: GroundControlPoint, marks: Marks) -> GcpResidual:
    xyz, reprojection = triangulate(rec, marks)
    error = xyz - np.array(gcp.xyz)
    return GcpResidual(
        name=gcp.name,
        check=gcp.check,
        photos=tuple(rec.images[i].name for i, _ in marks),
        surveyed=gcp.xyz,
        error_m=(float(error[0]), float(error[1]), float(error[2])),
        reprojection_px=reprojection,
    )


def _bundle_adjust(
    rec: pycolmap.Reconstruction,
    controls: list[GroundControlPoint],
    marks: dict[str, Marks],
    accuracy_m: float,
    gps_model: dict[str, np.ndarray],
    gps_sigma: dict[str, tuple[float, float]],
    refine_intrinsics: bool,
) -> None:
    """COLMAP's bundle adjustment of every registered camera and tie point, with the control points'
    marks and priors (and GPS priors) added to its Ceres problem."""
    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    options.refine_focal_length = options.refine_extra_params = refine_intrinsics
    options.ceres.loss_function_type = pycolmap.LossFunctionType.SOFT_L1
    config = pycolmap.BundleAdjustmentConfig()
    for image_id in rec.reg_image_ids():
        config.add_image(image_id)
    adjuster = pycolmap.create_default_ceres_bundle_adjuster(options, config, rec)
    problem = adjuster.problem
    keep = [pycolmap.Sim3d().params.copy()]  # the identity: point priors compare in the model frame
    covariance = np.diag([accuracy_m**2, accuracy_m**2, (2 * accuracy_m) ** 2])
    for gcp in controls:
        xyz = np.array(gcp.xyz, dtype=float)
        keep.append(xyz)
        for image_id, xy in marks[gcp.name]:
            image = rec.images[image_id]
            camera = rec.cameras[image.camera_id]
            cost = cost_functions.ReprojErrorCost(camera.model, xy)
            problem.add_residual_block(cost, None, [xyz, _pose_params(rec, image), camera.params])
        prior = cost_functions.Point3DAlignmentCost(covariance, xyz.copy(), False)
        problem.add_residual_block(prior, None, [xyz, keep[0]])
    problem.set_parameter_block_constant(keep[0])
    for image in rec.images.values():
        position = gps_model.get(image.name)
        if not image.has_pose or position is None:
            continue
        h, v = gps_sigma.get(image.name, (3.0, 3.0))
        vertical = v**2 if np.isfinite(position[2]) else 1e12  # no altitude: horizontal only
        prior_xyz = np.where(np.isfinite(position), position, image.projection_center())
        cost = cost_functions.AbsolutePosePositionPriorCost(np.diag([h**2, h**2, vertical]), prior_xyz)
        problem.add_residual_block(cost, None, [_pose_params(rec, image)])
    summary = adjuster.solve()
    if not summary.is_solution_usable():
        raise OdmStageError("bundle adjustment with the GCPs failed; check the GCP marks and coordinates")


def _pose_params(rec: pycolmap.Reconstruction, image: pycolmap.Image) -> np.ndarray:
    """The 7 numbers (quaternion xyzw, translation) COLMAP adjusts for a photo's pose: a view of them,
    so residuals added here act on the same Ceres parameter block (every rig here is one camera)."""
    rig_from_world = rec.frames[image.frame_id].rig_from_world
    if rig_from_world is None:
        raise OdmStageError(f"{image.name} has no pose")
    return rig_from_world.params
