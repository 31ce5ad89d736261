"""The hand-over between view selection and the atlas: which photo textures each face, and where.

Frames: the mesh is in the model frame (UTM minus the coords.txt offset, metres); photos are indexed as
the `views` sequence given to both halves (odm_core.camera.view.ViewCamera, full-size photos). Pixel
coordinates follow COLMAP: the top-left pixel's centre is (0.5, 0.5); they include the lens distortion
(the photo as it is on disk, never undistorted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odm_core.artifacts import atomic_path

UNSEEN = -1  # the label of a face no photo sees


@dataclass(frozen=True)
class Labeling:
    """labels: (M,) int32, the index into `views` of the photo that textures each face, UNSEEN for none;
    uv_px: (M, 3, 2) float32, each face's corners in that photo (COLMAP pixels, full size), NaN where
    UNSEEN."""

    labels: np.ndarray
    uv_px: np.ndarray

    def __post_init__(self) -> None:
        m = len(self.labels)
        if self.labels.shape != (m,) or self.uv_px.shape != (m, 3, 2):
            raise ValueError(f"labeling shapes {self.labels.shape} and {self.uv_px.shape} do not agree")

    @property
    def n_faces(self) -> int:
        return len(self.labels)

    def seen(self) -> np.ndarray:
        """(M,) bool: the faces a photo textures."""
        return self.labels != UNSEEN

    def save(self, path: Path) -> Path:
        """Write as .npz, atomically."""
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            np.savez(f, labels=self.labels.astype(np.int32), uv_px=self.uv_px.astype(np.float32))
        return path

    @classmethod
    def load(cls, path: Path) -> Labeling:
        with np.load(path) as data:
            return cls(data["labels"], data["uv_px"])
