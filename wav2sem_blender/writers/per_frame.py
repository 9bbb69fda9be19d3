"""Per-frame shape keys: one absolute shape key per model frame, driven by one ``eval_time`` F-curve.

Exact, but heavy (a full copy of the mesh per frame). Absolute keys because one relative key
per frame with its own F-curve plays back quadratically slower (measured: 3 ms/frame at 300
keys, 271 ms/frame at 3000). A mesh has a single Key datablock, so absolute mode cannot
coexist with the user's relative shape keys: such meshes are refused rather than converted.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..compat import fcurves_of
from ..shared import Wav2SemError
from . import PREFIX
from .common import (
    add_fcurve,
    ensure_basis,
    keyframe_frames,
    new_shape_key,
    remove_own_shape_keys,
    rest_positions,
)


def frame_name(i: int) -> str:
    return f"{PREFIX}F{i:05d}"


def check_per_frame(ob: bpy.types.Object) -> None:
    key = ob.data.shape_keys
    if key is None:
        return
    others = [kb.name for kb in key.key_blocks[1:] if not kb.name.startswith(PREFIX)]
    if others:
        raise Wav2SemError(
            "per_frame_conflict",
            f"'{ob.name}' has {len(others)} shape keys of its own ({', '.join(others[:3])}...), and per-frame "
            "mode needs absolute shape keys, which would change how they work.",
            "Use the Compact or Point Cache output mode for this mesh.",
        )


def write_per_frame(
    ob: bpy.types.Object, offsets: np.ndarray, model_fps: float, first_frame: float, fps: float
) -> dict:
    check_per_frame(ob)
    remove_own_shape_keys(ob)
    ensure_basis(ob)
    rest = rest_positions(ob)
    for i in range(len(offsets)):
        new_shape_key(ob, frame_name(i), rest + offsets[i])
    key = ob.data.shape_keys
    key.use_relative = False
    key["wav2sem_eval_time"] = True
    # Key positions drift from exact multiples of 10 (3000.0078 at T=300): read them back.
    positions = np.empty(len(key.key_blocks), dtype=np.float32)
    key.key_blocks.foreach_get("frame", positions)
    frames = keyframe_frames(first_frame, len(offsets), model_fps, fps)
    fcurves = fcurves_of(key, action_name=f"{PREFIX}{ob.name} Shape Keys")
    add_fcurve(fcurves, "eval_time", frames, positions[1 : len(offsets) + 1])
    return {"keys": len(offsets), "frames": len(offsets), "last_frame": float(frames[-1])}
