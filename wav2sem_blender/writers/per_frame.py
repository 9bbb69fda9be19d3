"""Per-frame shape keys: one absolute shape key per model frame, driven by one ``eval_time`` F-curve.

Exact, but heavy (a full copy of the mesh per frame). Absolute keys because one relative key
per frame with its own F-curve plays back quadratically slower (measured: 3 ms/frame at 300
keys, 271 ms/frame at 3000). A mesh has a single Key datablock, so absolute mode cannot
coexist with the user's relative shape keys: such meshes are refused rather than converted.
"""

from __future__ import annotations

import bpy
import numpy as np

from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.result import InferResult

from ..compat import fcurves_of
from . import PREFIX
from .base import Summary, Timing, WriterSpec
from .common import add_fcurve, ensure_basis, new_shape_key, remove_shape_keys, rest_positions
from .motion import as_offsets, take_found_note

SPEC = WriterSpec("PER_FRAME", "per-frame", "Shape Key per Frame", "One absolute shape key per frame, exact but heavy",
                  request="offsets")
EVAL_TIME = "wav2sem_eval_time"  # on the Key: its eval_time curve and absolute mode are ours


def frame_name(i: int) -> str:
    return f"{PREFIX}F{i:05d}"


def is_own(name: str) -> bool:
    return name.startswith(f"{PREFIX}F")


def check(ob: bpy.types.Object) -> None:
    """Refuse before inference: absolute keys would change how the mesh's own keys work."""
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


def clear(ob: bpy.types.Object) -> None:
    key = ob.data.shape_keys
    ours = key is not None and bool(key.get(EVAL_TIME))
    remove_shape_keys(ob, is_own, also_paths=("eval_time",) if ours else ())
    key = ob.data.shape_keys
    if key is not None and ours:
        key.use_relative = True
        del key[EVAL_TIME]


def prepare(ob: bpy.types.Object, result: InferResult) -> InferResult:
    """The result as offsets on ``ob``, or a refusal, before anything in the scene changes."""
    check(ob)
    return as_offsets(ob, result)


def write(ob: bpy.types.Object, result: InferResult, timing: Timing) -> Summary:
    offsets = prepare(ob, result)["offsets"]
    clear(ob)
    ensure_basis(ob)
    rest = rest_positions(ob)
    for i in range(len(offsets)):
        new_shape_key(ob, frame_name(i), rest + offsets[i])
    key = ob.data.shape_keys
    key.use_relative = False
    key[EVAL_TIME] = True
    # Key positions drift from exact multiples of 10 (3000.0078 at T=300): read them back.
    positions = np.empty(len(key.key_blocks), dtype=np.float32)
    key.key_blocks.foreach_get("frame", positions)
    frames = timing.frames(len(offsets))
    fcurves = fcurves_of(key, action_name=f"{PREFIX}{ob.name} Shape Keys")
    add_fcurve(fcurves, "eval_time", frames, positions[1 : len(offsets) + 1])
    return Summary(len(offsets), timing.last_frame(len(offsets)), f"{len(offsets)} shape keys", take_found_note(ob))
