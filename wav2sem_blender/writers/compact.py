"""Compact shape keys (the default): a bias key plus K basis keys, one F-curve per key.

``offsets(t) = bias + sum_k weights[t, k] * basis[k]``. Each basis key is scaled so that its
weights fit the slider range [-1, 1] (Blender clamps values to -10..10 at most), which also
keeps the keys directly editable by an animator.
"""

from __future__ import annotations

import bpy
import numpy as np

from wav2sem_contract.result import InferResult

from ..compat import fcurves_of
from ..key_paths import key_path
from . import PREFIX
from .base import Summary, Timing, WriterSpec
from .common import add_fcurve, ensure_basis, new_shape_key, remove_shape_keys, rest_positions
from .motion import as_compact, take_found_note

SPEC = WriterSpec(
    "COMPACT", "compact", "Compact Shape Keys",
    "A few basis shape keys with one F-curve each: light and editable (default)", request="compact",
)
BIAS = PREFIX + "Bias"


def basis_name(k: int) -> str:
    return f"{PREFIX}Basis {k:02d}"


def is_own(name: str) -> bool:
    return name == BIAS or name.startswith(f"{PREFIX}Basis ")


# What can refuse the result, before anything in the scene changes: a controls result on a head whose
# rig cannot be computed.
prepare = as_compact


def clear(ob: bpy.types.Object) -> None:
    remove_shape_keys(ob, is_own)


def write(ob: bpy.types.Object, result: InferResult, timing: Timing) -> Summary:
    """Bias + basis keys on ``ob``; a controls result becomes an exact basis of the controls' deltas."""
    result = as_compact(ob, result)
    weights, basis, bias = result["weights"], result["basis"], result["bias"]
    clear(ob)
    ensure_basis(ob)
    rest = rest_positions(ob)
    new_shape_key(ob, BIAS, rest + bias).value = 1.0
    scale = np.abs(weights).max(axis=0)
    scale[scale == 0] = 1.0
    frames = timing.frames(len(weights))
    fcurves = fcurves_of(ob.data.shape_keys, action_name=f"{PREFIX}{ob.name} Shape Keys")
    for k in range(basis.shape[0]):
        kb = new_shape_key(ob, basis_name(k), rest + basis[k] * scale[k])
        kb.slider_min = -1.0
        add_fcurve(fcurves, key_path(kb.name), frames, weights[:, k] / scale[k])
    detail = f"{basis.shape[0] + 1} keys, max error {float(result['max_error']) * 1000:.3f} mm"
    return Summary(len(weights), timing.last_frame(len(weights)), detail, take_found_note(ob))
