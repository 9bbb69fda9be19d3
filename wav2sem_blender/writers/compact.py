"""Compact shape keys (the default): a bias key plus K basis keys, one F-curve per key.

``offsets(t) = bias + sum_k weights[t, k] * basis[k]``. Each basis key is scaled so that its
weights fit the slider range [-1, 1] (Blender clamps values to -10..10 at most), which also
keeps the keys directly editable by an animator.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..compat import fcurves_of
from . import PREFIX
from .common import (
    add_fcurve,
    ensure_basis,
    key_path,
    keyframe_frames,
    new_shape_key,
    remove_own_shape_keys,
    rest_positions,
)

BIAS = PREFIX + "Bias"


def basis_name(k: int) -> str:
    return f"{PREFIX}Basis {k:02d}"


def write_compact(
    ob: bpy.types.Object,
    weights: np.ndarray,
    basis: np.ndarray,
    bias: np.ndarray,
    model_fps: float,
    first_frame: float,
    fps: float,
) -> dict:
    """Write the compact result on ``ob``; returns a summary (keys, frames)."""
    remove_own_shape_keys(ob)
    ensure_basis(ob)
    rest = rest_positions(ob)
    new_shape_key(ob, BIAS, rest + bias).value = 1.0
    scale = np.abs(weights).max(axis=0)
    scale[scale == 0] = 1.0
    frames = keyframe_frames(first_frame, len(weights), model_fps, fps)
    fcurves = fcurves_of(ob.data.shape_keys, action_name=f"{PREFIX}{ob.name} Shape Keys")
    for k in range(basis.shape[0]):
        kb = new_shape_key(ob, basis_name(k), rest + basis[k] * scale[k])
        kb.slider_min = -1.0
        add_fcurve(fcurves, key_path(kb.name), frames, weights[:, k] / scale[k])
    return {"keys": basis.shape[0] + 1, "frames": len(weights), "last_frame": float(frames[-1])}
