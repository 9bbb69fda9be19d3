"""Similarity transforms between two heads, fitted to corresponding landmarks (Umeyama)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class RetargetError(ValueError):
    """Bad retargeting input; str(exc) is one plain sentence for the user."""


@dataclass(frozen=True, eq=False)  # eq=False: arrays make the generated __eq__/__hash__ meaningless
class Similarity:
    """``x -> scale * R x + t`` (rotation proper: det R = +1)."""

    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)
    rms: float = 0.0  # residual of the landmark fit, in target units

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) positions in source space -> target space."""
        return self.apply_vectors(points) + self.translation

    def apply_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """(..., 3) displacements: scaled and rotated, never translated."""
        return self.scale * (np.asarray(vectors, dtype=np.float64) @ self.rotation.T)

    def inverse(self) -> Similarity:
        rot = self.rotation.T
        return Similarity(1.0 / self.scale, rot, -(rot @ self.translation) / self.scale, self.rms / self.scale)

    def matrix(self) -> np.ndarray:
        """The 4x4 homogeneous matrix (e.g. for ``mathutils.Matrix``)."""
        out = np.eye(4)
        out[:3, :3] = self.scale * self.rotation
        out[:3, 3] = self.translation
        return out


def _check_points(points: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise RetargetError(f"The {what} landmarks must be a list of 3D points, not an array of shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise RetargetError(f"The {what} landmarks contain non-finite coordinates.")
    return arr


def _spread_is_degenerate(centred: np.ndarray) -> bool:
    # Three or more points must span a plane: the second singular value carries the fit's
    # rotation about the line through them, and is ~0 when they are collinear or coincident.
    sv = np.linalg.svd(centred, compute_uv=False)
    return sv[0] <= 1e-12 or sv[1] <= 1e-6 * sv[0]


def similarity_from_landmarks(source: np.ndarray, target: np.ndarray) -> Similarity:
    """Least-squares ``target ~ scale * source @ R.T + t`` (Umeyama 1991, reflections excluded)."""
    src, dst = _check_points(source, "source"), _check_points(target, "target")
    if src.shape != dst.shape:
        raise RetargetError(f"There are {len(src)} source landmarks but {len(dst)} target landmarks.")
    if len(src) < 3:
        raise RetargetError("At least 3 landmarks are needed to align two heads.")
    mu_s, mu_t = src.mean(axis=0), dst.mean(axis=0)
    cs, ct = src - mu_s, dst - mu_t
    if _spread_is_degenerate(cs) or _spread_is_degenerate(ct):
        raise RetargetError("The landmarks are degenerate (coincident or on one line); pick points that span the face.")
    u, d, vt = np.linalg.svd(ct.T @ cs / len(src))
    flip = np.ones(3)
    flip[2] = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0
    rotation = (u * flip) @ vt
    scale = float((d * flip).sum() / (cs**2).sum(axis=1).mean())
    translation = mu_t - scale * rotation @ mu_s
    fitted = scale * src @ rotation.T + translation
    rms = float(np.sqrt(((fitted - dst) ** 2).sum(axis=1).mean()))
    return Similarity(scale, rotation, translation, rms)
