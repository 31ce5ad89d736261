"""ODM's `--sfm-algorithm planar`: nadir photos of flat ground from one altitude, posed from 2D similarities.

OpenSfM's `planar_reconstruction` (ODM's fork, opensfm/reconstruction.py): from the best-connected photo,
a breadth-first walk over the matched pairs fits each new photo a 2D similarity (rotation, translation;
`cv2.estimateAffinePartial2D`) to a photo already placed, and chains them; every camera then looks straight
down from one height, turned and shifted as its chain says. The tracks are triangulated from those poses
and bundle-adjusted, and the rounds of `triangulation.py` follow.

Here the similarity is fitted, with RANSAC, to the pair's verified inliers in normalised camera coordinates
(distortion removed by COLMAP's camera model), so in units of the flying height. The frame has the ground
at z = 0 and the cameras at z = -1, looking along +z. With GPS priors, after the first round the model is
moved onto them by the similarity of its camera centres (COLMAP's `estimate_sim3d`) and the later rounds
adjust under them, as for the triangulation. A photo no chain reaches, or that keeps too few of its
matched keypoints (`triangulation.disagreeing_photos`), sets the model aside: the stage then maps
incrementally and says so.

Measured (docs/BENCHMARKS.md): it ends on the incremental model on the tests' survey (its 2 oblique photos
included) and the 200-photo nadir survey (centres within 0.015 m; 452 against 336 s), and registers all 18 of
Brighton's photos (0.13-0.61 m from the incremental model's centres).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import cv2
import numpy as np
import pycolmap

from odm_core.sfm.triangulation import ROUNDS_PX, Progress, disagreeing_photos, posed_model, refined

MIN_PAIR_INLIERS = 20  # a pair's verified inliers for its similarity to be fitted
RANSAC_PX = 4.0  # the similarity's inlier threshold, in pixels at the camera's focal length


def _pair_similarities(db: Path) -> tuple[dict[int, str], dict[tuple[int, int], tuple[int, np.ndarray]]]:
    """Image names by id, and for each verified pair (i, j) with enough inliers: (inliers, the 2 x 3
    similarity taking image i's normalised coordinates to image j's)."""
    out: dict[tuple[int, int], tuple[int, np.ndarray]] = {}
    with pycolmap.Database.open(db) as database:
        images = {image.image_id: image for image in database.read_all_images()}
        cameras = {camera.camera_id: camera for camera in database.read_all_cameras()}
        pair_ids, geometries = database.read_two_view_geometries()
        keypoints = {i: database.read_keypoints(i)[:, :2].astype(np.float64) for i in images}
    for pair_id, geometry in zip(pair_ids, geometries, strict=True):
        inliers = geometry.inlier_matches
        if len(inliers) < MIN_PAIR_INLIERS:
            continue
        first, second = pycolmap.pair_id_to_image_pair(pair_id)
        cam1, cam2 = cameras[images[first].camera_id], cameras[images[second].camera_id]
        p1 = np.asarray(cam1.cam_from_img(keypoints[first][inliers[:, 0]]), np.float64)
        p2 = np.asarray(cam2.cam_from_img(keypoints[second][inliers[:, 1]]), np.float64)
        threshold = RANSAC_PX / float(cam1.mean_focal_length())
        similarity, mask = cv2.estimateAffinePartial2D(
            p1, p2, method=cv2.RANSAC, ransacReprojThreshold=threshold
        )
        if similarity is not None:
            out[(first, second)] = (int(mask.sum()), similarity)
    return {i: image.name for i, image in images.items()}, out


def _chained(
    names: dict[int, str], pairs: dict[tuple[int, int], tuple[int, np.ndarray]]
) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Each reachable photo's world_from_cam (row-major 3 x 3) and centre, from the best-connected photo
    (most inliers over its pairs) along the pairs with most inliers first."""
    neighbours: dict[int, list[tuple[int, int, np.ndarray]]] = {}
    for (i, j), (count, s) in pairs.items():
        inverse = cv2.invertAffineTransform(s)
        neighbours.setdefault(i, []).append((count, j, s))  # x_j = s x_i
        neighbours.setdefault(j, []).append((count, i, inverse))
    if not neighbours:
        return {}, {}
    start = max(neighbours, key=lambda i: (sum(c for c, _, _ in neighbours[i]), -i))
    placed = {start: (np.eye(2), np.zeros(2))}  # 2D rotation (world from camera) and centre
    queue = deque([start])
    while queue:
        i = queue.popleft()
        rotation_i, centre_i = placed[i]
        for _, j, s in sorted(neighbours[i], key=lambda n: (-n[0], n[1])):
            if j in placed:
                continue
            a = s[:, :2] / np.sqrt(abs(np.linalg.det(s[:, :2])))  # the rotation part, scale removed
            rotation_j = rotation_i @ a.T  # x_j = R_j^T R_i x_i + R_j^T (c_i - c_j): A = R_j^T R_i
            placed[j] = (rotation_j, centre_i - rotation_j @ s[:, 2])
            queue.append(j)
    rotations, centres = {}, {}
    for i, (rotation, centre) in placed.items():
        world_from_cam = np.eye(3)
        world_from_cam[:2, :2] = rotation
        rotations[names[i]] = [float(v) for v in world_from_cam.ravel()]
        centres[names[i]] = np.array([centre[0], centre[1], -1.0])
    return rotations, centres


def _onto_priors(rec: pycolmap.Reconstruction, db: Path) -> bool:
    """Move the model onto the database's GPS priors by the similarity of its camera centres; False when
    there are fewer than three or the similarity cannot be estimated."""
    with pycolmap.Database.open(db) as database:
        priors = {p.corr_data_id.id: np.asarray(p.position, float) for p in database.read_all_pose_priors()}
        data_ids = {image.name: image.data_id.id for image in database.read_all_images()}
    src, tgt = [], []
    for image in rec.images.values():
        prior = priors.get(data_ids[image.name])
        if image.has_pose and prior is not None:
            src.append(image.projection_center())
            tgt.append(prior)
    if len(src) < 3:
        return False
    sim3 = pycolmap.estimate_sim3d(np.array(src), np.array(tgt))
    if sim3 is None:
        return False
    rec.transform(sim3)
    return True


def _first_round(progress: Progress) -> Progress:
    """The first round's progress, reported as the first of ROUNDS_PX's."""
    return lambda fraction, text: progress(0.7, text)


def planar_mapping(
    db: Path, images: Path, out: Path, progress: Progress, hold_focal: bool = False, use_priors: bool = True
) -> tuple[pycolmap.Reconstruction, list[str]]:
    """The model from chained 2D similarities (module docstring), refined in rounds; and the photos it
    does not support (unreached, or disagreeing with their matches), for the caller to map incrementally."""
    progress(0.7, "chaining the photos' 2D similarities")
    names, pairs = _pair_similarities(db)
    rotations, centres = _chained(names, pairs)
    unreached = sorted(set(names.values()) - set(rotations))
    rec = posed_model(db, rotations, centres)
    rec = refined(rec, db, images, out, _first_round(progress), ROUNDS_PX[:1], hold_focal, use_priors=False)
    on_priors = use_priors and _onto_priors(rec, db)
    rec = refined(rec, db, images, out, progress, ROUNDS_PX[1:], hold_focal, on_priors)
    return rec, sorted(set(unreached) | set(disagreeing_photos(rec, db)))
