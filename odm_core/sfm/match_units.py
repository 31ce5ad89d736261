"""Feature matching as Dask units: batches of photo pairs, each matched and verified by COLMAP's own matcher.

A unit writes its photos' features into a database of its own, runs COLMAP's matching and geometric
verification on its pairs (pycolmap.match_image_pairs: SIFT matching with ratio and cross check, then the
two-view geometry, as COLMAP's exhaustive and spatial matchers do), and saves the matches and two-view
geometries of its pairs to a .npz; the stage writes every unit's pairs into the project's database. Units
are checkpointed like the feature units: the stage's fingerprint, the unit's pairs and its photos' feature
checkpoints make the key.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

from odm_core.artifacts import unit_checkpoint_record, unit_checkpoint_valid
from odm_core.worker import load_arrays, prepare_unit, save_arrays

MAX_PAIRS_PER_UNIT = 192  # about a minute of one core at Brighton's 14k features per photo
INDEX_COST = 8.0  # indexing a photo's descriptors, in pairs matched (Brighton: 0.3 s against 0.02-0.05 s)
# COLMAP draws RANSAC samples from a randomly seeded generator unless given a seed: the same pairs then
# verified to other inliers in each run, and the model moved (a 24-photo survey's DSM 4 cm or 13.5 cm from
# the truth in two runs of the same code). A fixed seed makes a run repeat.
VERIFICATION_SEED = 0


@dataclass(frozen=True)
class CameraSpec:
    """A COLMAP camera as a unit needs it: model name, size (px), parameters, and whether its focal is a
    prior (EXIF) that the verification may use."""

    model: str
    width: int
    height: int
    params: tuple[float, ...]
    has_prior_focal_length: bool

    def camera(self, camera_id: int) -> pycolmap.Camera:
        return pycolmap.Camera(
            model=self.model,
            width=self.width,
            height=self.height,
            params=list(self.params),
            camera_id=camera_id,
            has_prior_focal_length=self.has_prior_focal_length,
        )


@dataclass(frozen=True)
class MatchUnit:
    """A batch of photo pairs (names) to match; each photo's features file and camera; the output file,
    its checkpoint key, and the threads COLMAP may use (1 on a Dask worker)."""

    pairs: tuple[tuple[str, str], ...]
    features: tuple[tuple[str, str], ...]  # (photo name, features file)
    cameras: tuple[tuple[str, CameraSpec], ...]  # (photo name, its camera)
    out: str
    key: str
    num_threads: int = 1

    @property
    def name(self) -> str:
        return Path(self.out).name.removesuffix(".matches.npz")


def plan_matches(
    pairs: Sequence[tuple[str, str]],
    features: dict[str, Path],
    cameras: dict[str, CameraSpec],
    workdir: Path,
    key: str,
    num_threads: int = 1,
    min_units: int = 1,
    local_threads: int = 0,
) -> list[MatchUnit]:
    """Units of consecutive pairs (`pairs` ordered so that neighbours share photos), a multiple of
    `min_units` of them (the cluster's threads) and at most MAX_PAIRS_PER_UNIT pairs each,
    each writing workdir/pairs-<k>.matches.npz; keyed on `key`, the pairs, and the features' own keys and
    cameras of its photos.

    Few large units: COLMAP builds each photo's descriptor index once per unit (about 0.3 s at 14k
    features, against 0.02-0.05 s to match a pair once both are built), so a unit's photos should share
    many of its pairs. Brighton's 103 pairs, one thread (2026-12-02): in 4 units 26 s, in 2 units 18 s
    (9.7 + 8.3), in one unit 15.6 s; in one unit on 2 threads 9.3 s. So when the pairs fill fewer units
    than `local_threads` (a cluster on this machine with that many threads; 0 for one elsewhere), there
    are only that many units, each on local_threads // units threads."""
    needed = max(1, -(-len(pairs) // MAX_PAIRS_PER_UNIT))
    if needed < local_threads:  # fewer, multithreaded units: a unit's threads share its photos' indexes
        n_units, num_threads = needed, local_threads // needed
    else:
        per_round = max(min_units, 1)  # a multiple of it: no worker left idle at the end
        n_units = -(-max(per_round, needed) // per_round) * per_round
    bounds = balanced_bounds(pairs, min(n_units, max(len(pairs), 1)))
    units = []
    for k, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        batch = tuple(pairs[start:stop])
        names = sorted({n for pair in batch for n in pair})
        feature_keys = [f"{unit_checkpoint_record(features[n])}|{cameras[n]!r}" for n in names]
        units.append(
            MatchUnit(
                pairs=batch,
                features=tuple((n, str(features[n])) for n in names),
                cameras=tuple((n, cameras[n]) for n in names),
                out=str(workdir / f"pairs-{k:05d}.matches.npz"),
                key="|".join([key, repr(batch), *feature_keys]),
                num_threads=num_threads,
            )
        )
    return units


def _cuts(pairs: Sequence[tuple[str, str]], limit: float) -> list[int]:
    """Greedy: the starts of consecutive runs of pairs, each run's cost at most `limit` (unless one pair
    alone is above it)."""
    starts, photos, count = [0], set[str](), 0
    for k, pair in enumerate(pairs):
        new = len(set(pair) - photos)
        if count and INDEX_COST * (len(photos) + new) + count + 1 > limit:
            starts.append(k)
            photos, count = set(), 0
        photos.update(pair)
        count += 1
    return starts


def balanced_bounds(pairs: Sequence[tuple[str, str]], n_units: int) -> list[int]:
    """Cut points (n_units + 1 at most, from 0 to len(pairs)) of consecutive runs of pairs whose largest
    cost is least, a run's cost being its pairs plus INDEX_COST per photo it touches (COLMAP indexes each
    once per unit): a binary search on that largest cost, runs cut greedily."""
    if not pairs:
        return [0, 0]
    low, high = 0.0, INDEX_COST * 2 * len(pairs) + len(pairs)
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (low, mid) if len(_cuts(pairs, mid)) <= n_units else (mid, high)
    return [*_cuts(pairs, high), len(pairs)]


def match_pairs(unit: MatchUnit) -> Path:
    """Match and verify the unit's pairs (or reuse its checkpoint); the Dask unit.

    Writes unit.out (.npz with its checkpoint sidecar): for pair k, `m<k>` its matches (M, 2) uint32
    (feature indices of the first and second photo) and `g<k>` its pickled pycolmap.TwoViewGeometry
    (uint8), absent when COLMAP wrote none."""
    out = Path(unit.out)
    if unit_checkpoint_valid(out, unit.key):
        return out
    prepare_unit()
    pycolmap.logging.minloglevel = 1  # COLMAP's warnings and errors only: its INFO lines flood the console
    with tempfile.TemporaryDirectory(prefix="match-", dir=out.parent) as tmp:
        db_path, pairs_file = Path(tmp) / "database.db", Path(tmp) / "pairs.txt"
        ids = _unit_database(db_path, unit)
        # COLMAP's pair list is space-separated: the unit's database names its images image-<id>
        pairs_file.write_text("".join(f"image-{ids[a]} image-{ids[b]}\n" for a, b in unit.pairs))
        matching = pycolmap.FeatureMatchingOptions()
        matching.num_threads = unit.num_threads
        pairing = pycolmap.ImportedPairingOptions()
        pairing.match_list_path = pairs_file
        verification = pycolmap.TwoViewGeometryOptions()
        verification.ransac.random_seed = VERIFICATION_SEED
        pycolmap.match_image_pairs(
            db_path,
            matching_options=matching,
            pairing_options=pairing,
            verification_options=verification,
            device=pycolmap.Device.cpu,
        )
        arrays = _read_pairs(db_path, unit.pairs, ids)
    save_arrays(out, unit.key, **arrays)
    return out


def _unit_database(db_path: Path, unit: MatchUnit) -> dict[str, int]:
    """The unit's photos (keypoints, descriptors, cameras) in a new database; photo name -> image id."""
    cameras = dict(unit.cameras)
    ids = {name: k for k, (name, _) in enumerate(unit.features, 1)}
    with pycolmap.Database.open(db_path) as db:
        for name, file in unit.features:
            arrays = load_arrays(file)
            db.write_camera(cameras[name].camera(ids[name]), use_camera_id=True)
            image = pycolmap.Image(name=f"image-{ids[name]}", camera_id=ids[name], image_id=ids[name])
            db.write_image(image, use_image_id=True)
            db.write_keypoints(ids[name], arrays["keypoints"])
            db.write_descriptors(
                ids[name],
                pycolmap.FeatureDescriptors(pycolmap.FeatureExtractorType.SIFT, arrays["descriptors"]),
            )
    return ids


def _read_pairs(
    db_path: Path, pairs: Iterable[tuple[str, str]], ids: dict[str, int]
) -> dict[str, np.ndarray]:
    arrays = {}
    with pycolmap.Database.open(db_path) as db:
        for k, (a, b) in enumerate(pairs):
            if db.exists_matches(ids[a], ids[b]):
                arrays[f"m{k}"] = np.asarray(db.read_matches(ids[a], ids[b]), np.uint32).reshape(-1, 2)
            if db.exists_two_view_geometry(ids[a], ids[b]):
                geometry = pickle.dumps(db.read_two_view_geometry(ids[a], ids[b]))
                arrays[f"g{k}"] = np.frombuffer(geometry, np.uint8)
    return arrays


def write_matches(db_path: Path, units: Sequence[MatchUnit], files: Sequence[Path]) -> int:
    """Every unit's matches and two-view geometries into the project's COLMAP database (its images named
    as the photos); returns the number of verified pairs (with inlier matches)."""
    verified = 0
    with pycolmap.Database.open(db_path) as db:
        ids = {image.name: image.image_id for image in db.read_all_images()}
        for unit, file in zip(units, files, strict=True):
            arrays = load_arrays(file)
            for k, (a, b) in enumerate(unit.pairs):
                if f"m{k}" in arrays:
                    db.write_matches(ids[a], ids[b], arrays[f"m{k}"])
                if f"g{k}" in arrays:
                    geometry = pickle.loads(arrays[f"g{k}"].tobytes())  # noqa: S301  # our own unit file
                    db.write_two_view_geometry(ids[a], ids[b], geometry)
                    verified += len(geometry.inlier_matches) > 0
    return verified
