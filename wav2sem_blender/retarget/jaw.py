"""Jaw opening from vertex motion, and jaw-bone angles from it (for rigs with a jaw bone)."""

from __future__ import annotations

import numpy as np

from .mapping import zero_phase_lowpass
from .transform import RetargetError


def _vertex(offsets: np.ndarray, index: int, what: str) -> np.ndarray:
    if not -offsets.shape[1] <= index < offsets.shape[1]:
        raise RetargetError(f"The {what} vertex {index} is not on the mesh ({offsets.shape[1]} vertices).")
    return offsets[:, index].astype(np.float64)


def jaw_open_from_offsets(offsets: np.ndarray, chin: int, lip_upper: int | None, up: np.ndarray,
                          full_open: float) -> np.ndarray:
    """jawOpen (T,) in [0, 1]: the chin's drop along ``up`` over ``full_open`` (same units).

    With ``lip_upper`` the drop is measured relative to the upper lip, so a head that moves
    as a whole (nods, or an offset baked into every vertex) does not open the jaw.
    """
    arr = np.asarray(offsets)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise RetargetError(f"The offsets must have shape (frames, vertices, 3), not {arr.shape}.")
    axis = np.asarray(up, dtype=np.float64).reshape(-1)
    if axis.shape != (3,) or not np.isfinite(axis).all() or np.linalg.norm(axis) == 0:
        raise RetargetError("The up direction must be a non-zero 3D vector.")
    if not (full_open > 0 and np.isfinite(full_open)):
        raise RetargetError("The full jaw opening distance must be positive.")
    motion = _vertex(arr, chin, "chin")
    if lip_upper is not None:
        motion = motion - _vertex(arr, lip_upper, "upper lip")
    drop = -(motion @ (axis / np.linalg.norm(axis)))
    return np.clip(drop / full_open, 0.0, 1.0)


def jaw_angles(jaw_open: np.ndarray, max_angle_radians: float = 0.35, smooth: float = 0.0) -> np.ndarray:
    """Jaw-bone opening angles (T,) in radians: jaw_open (clipped to [0, 1]) times the maximum.

    ``smooth`` is a zero-phase low-pass time constant in frames (0: none), applied before the
    scaling; it cannot push the angle outside [0, max_angle_radians].
    """
    x = np.clip(np.asarray(jaw_open, dtype=np.float64).reshape(-1), 0.0, 1.0)
    if not (smooth >= 0 and np.isfinite(smooth)):
        raise RetargetError("The jaw smoothing must be zero or positive.")
    if smooth > 0:
        x = zero_phase_lowpass(x, smooth, fps=1.0)
    return x * float(max_angle_radians)
