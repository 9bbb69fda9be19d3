"""Control-weight results (T x K named controls) as F-curves on the object's own shape keys.

The keys must already exist (an ARKit-style rig, or one the procedural rig created); names
that are missing are reported, the others are written. If the keys already carry animation
in the current action, a new action is made and the old one kept (with a fake user), so
nothing the animator made is lost.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..compat import fcurves_of
from ..shared import Wav2SemError
from . import PREFIX
from .common import add_fcurve, key_path, keyframe_frames


def write_controls(
    ob: bpy.types.Object, weights: np.ndarray, names: list[str], model_fps: float, first_frame: float, fps: float
) -> dict:
    key = ob.data.shape_keys
    present = set(key.key_blocks.keys()) if key is not None else set()
    found = [(k, n) for k, n in enumerate(names) if n in present]
    missing = [n for n in names if n not in present]
    if not found:
        raise Wav2SemError(
            "no_matching_keys",
            f"'{ob.name}' has none of the {len(names)} controls the model drives ({', '.join(names[:4])}, ...).",
            "Add shape keys with those names (e.g. with the articulation rig), or use a mapping table.",
        )
    paths = {key_path(n) for _, n in found}
    fcurves = fcurves_of(key, create=False)
    if fcurves is not None and not key.animation_data.action.name.startswith(PREFIX):
        if any(fc.data_path in paths for fc in fcurves):
            key.animation_data.action.use_fake_user = True  # keep the animator's action
            key.animation_data.action = None
    fcurves = fcurves_of(key, action_name=f"{PREFIX}{ob.name} Controls")
    frames = keyframe_frames(first_frame, len(weights), model_fps, fps)
    for k, name in found:
        add_fcurve(fcurves, key_path(name), frames, np.clip(weights[:, k], 0.0, 1.0))
    return {"keys": len(found), "missing": missing, "frames": len(weights), "last_frame": float(frames[-1])}
