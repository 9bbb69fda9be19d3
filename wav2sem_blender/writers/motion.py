"""A controls result as vertex motion on a particular mesh: the one place that decides it.

A control model (the embedded default) answers weights of named controls. The curve writer
keys them on shape keys of those names; every other output mode needs vertex offsets, so the
controls are evaluated here: each control's delta is the object's own shape key of that name
(an ARKit-style rig) or, when it has none, the articulation rig computed in memory from the
mouth landmarks (nothing is added to the mesh; landmarks found on the geometry are reported through
``take_found_note`` in the writer's summary). offsets(t) = sum_k weights[t, k] * delta_k,
which is exactly what the shape keys would play.
"""

from __future__ import annotations

import bpy
import numpy as np

from wav2sem_contract.result import InferResult

from ..rig import rig_deltas, take_found_note

__all__ = ["as_compact", "as_offsets", "control_deltas", "take_found_note"]
from .common import rest_positions


def control_deltas(ob: bpy.types.Object, names: list[str]) -> np.ndarray:
    """(K, V, 3) delta of each control on ``ob``: its own shape key, else the articulation rig's."""
    rest = rest_positions(ob)
    key = ob.data.shape_keys
    blocks = key.key_blocks if key is not None else {}
    deltas = np.zeros((len(names), len(rest), 3), dtype=np.float32)
    rig = None
    co = np.empty(rest.size, dtype=np.float32)
    for k, name in enumerate(names):
        block = blocks.get(name) if key is not None else None
        if block is not None:
            block.data.foreach_get("co", co)
            deltas[k] = co.reshape(-1, 3) - rest
            continue
        if rig is None:
            rig = rig_deltas(ob, rest.astype(np.float64))
        deltas[k] = rig.get(name, 0.0)
    return deltas


def as_compact(ob: bpy.types.Object, result: InferResult) -> InferResult:
    """A controls result as an exact compact one: the controls' deltas are the basis, no bias."""
    if result.kind != "controls":
        return result
    basis = control_deltas(ob, result.names)
    weights = np.clip(result["weights"], 0.0, 1.0).astype(np.float32)
    arrays = {"weights": weights, "basis": basis, "bias": np.zeros(basis.shape[1:], np.float32),
              "max_error": np.float32(0.0), "exact": np.bool_(True)}
    return InferResult("compact", result.fps, arrays, result.provenance, result.path)


def as_offsets(ob: bpy.types.Object, result: InferResult) -> InferResult:
    """Any result as per-vertex offsets (T, V, 3) on ``ob``."""
    if result.kind == "offsets":
        return result
    compact = as_compact(ob, result)
    w, basis, bias = compact["weights"], compact["basis"], compact["bias"]
    offsets = np.einsum("tk,kvc->tvc", w, basis, optimize=True) + bias[None]
    return InferResult("offsets", result.fps, {"offsets": offsets.astype(np.float32)}, result.provenance, result.path)
