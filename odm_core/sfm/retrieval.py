"""Image retrieval for photos without GPS: which pairs to match, a bounded number per photo.

Each photo gets a VLAD vector (Jégou et al., "Aggregating local descriptors into a compact image
representation", CVPR 2010) of its SIFT descriptors over a small codebook learnt by k-means on a sample of
the survey's own descriptors (no pre-trained vocabulary to download), with intra-normalisation and
power-law normalisation (Arandjelović and Zisserman, "All about VLAD", CVPR 2013). Each photo is matched
with its most similar photos and its neighbours in capture order, as OpenSfM's matching_vlad_neighbors and
matching_order_neighbors do, so the pairs grow linearly with the photos.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from odm_core.worker import load_arrays

CODEBOOK_SIZE = 64
SAMPLE_PER_PHOTO = 400  # descriptors per photo for the codebook
SAMPLE_MAX = 60_000
RETRIEVAL_NEIGHBOURS = 10  # most similar photos matched with each (OpenSfM: matching_vlad_neighbors)
ORDER_NEIGHBOURS = 2  # photos before and after in capture order (OpenSfM: matching_order_neighbors)


def _descriptors(file: Path) -> np.ndarray:
    return load_arrays(file, "descriptors")["descriptors"].astype(np.float32)


def learn_codebook(files: Sequence[Path], seed: int = 0) -> np.ndarray:
    """(CODEBOOK_SIZE, 128) float32 k-means centres of a sample of the photos' descriptors.

    Raises ValueError when the photos hold fewer descriptors than the codebook has words."""
    rng = np.random.default_rng(seed)
    per_photo = max(1, min(SAMPLE_PER_PHOTO, SAMPLE_MAX // max(len(files), 1)))
    parts = []
    for file in files:
        desc = _descriptors(file)
        parts.append(desc[rng.choice(len(desc), min(per_photo, len(desc)), replace=False)])
    sample = np.concatenate(parts) if parts else np.zeros((0, 128), np.float32)
    if len(sample) < CODEBOOK_SIZE:
        raise ValueError(f"{len(sample)} descriptors in {len(files)} photos: too few for image retrieval")
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 20, 1e-3)
    labels = np.zeros((len(sample), 1), np.int32)  # output only: k-means++ seeds the centres
    _, _, centres = cv2.kmeans(sample, CODEBOOK_SIZE, labels, criteria, 1, cv2.KMEANS_PP_CENTERS)
    return np.asarray(centres, np.float32)


def vlad(descriptors: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """The L2-normalised VLAD vector (K * 128,) float32 of (N, 128) descriptors: per word the sum of the
    residuals of the descriptors assigned to it, intra-normalised, then signed square root."""
    d = descriptors.astype(np.float32)
    distances = (d**2).sum(1)[:, None] - 2 * d @ codebook.T + (codebook**2).sum(1)[None, :]
    words = distances.argmin(axis=1)
    out = np.zeros_like(codebook)
    np.add.at(out, words, d - codebook[words])
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    flat = np.sign(out) * np.sqrt(np.abs(out))
    return (flat / max(float(np.linalg.norm(flat)), 1e-12)).ravel()


def retrieval_pairs(files: Sequence[Path], neighbours: int = RETRIEVAL_NEIGHBOURS) -> set[tuple[int, int]]:
    """Index pairs (i < j) of photos (`files`: their feature files in capture order): each photo with its
    `neighbours` most similar by VLAD and its ORDER_NEIGHBOURS predecessors and successors."""
    n = len(files)
    codebook = learn_codebook(files)
    nearest = most_similar(np.stack([vlad(_descriptors(f), codebook) for f in files]), neighbours)
    pairs = {(min(i, int(j)), max(i, int(j))) for i in range(n) for j in nearest[i]}
    pairs |= {(i, j) for i in range(n) for j in range(i + 1, min(i + 1 + ORDER_NEIGHBOURS, n))}
    return pairs


def most_similar(vectors: np.ndarray, k: int) -> np.ndarray:
    """(N, min(k, N - 1)) indices of each row's most similar other rows of (N, D) unit vectors."""
    n = len(vectors)
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros((n, 0), np.int64)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argpartition(-similarity, k - 1, axis=1)[:, :k]
