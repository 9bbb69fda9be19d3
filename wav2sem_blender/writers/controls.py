"""Control-weight results (T x K named controls) as F-curves on the object's own shape keys.

The keys must already exist (an ARKit-style rig, or one the procedural rig created); names
that are missing are reported, the others are written. Our curves go into the action the keys
already play, replacing only the F-curves of the keys we write, so the animator's other curves
(a blink, a brow) keep playing. Before a curve we did not write is replaced, the whole action is
copied to '<name> (before lip sync)' with a fake user, so nothing the animator made is lost.
A re-run recognises its own curves (by a fingerprint kept on the shape-key datablock) and
replaces them without another copy.
"""

from __future__ import annotations

import hashlib
import json

import bpy
import numpy as np

from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.result import InferResult

from ..compat import fcurves_of
from ..key_paths import key_path
from . import PREFIX
from .base import Summary, Timing, WriterSpec
from .common import add_fcurve, rest_positions

SPEC = WriterSpec("CONTROLS", "controls", "Control Curves",
                  "F-curves on the object's own shape keys named like the model's controls", request="offsets")

# Custom property on the Key datablock: {data path: fingerprint} of the curves we wrote last.
OWN_CURVES = "wav2sem_curves"
BACKUP_SUFFIX = " (before lip sync)"


def write(ob: bpy.types.Object, result: InferResult, timing: Timing) -> Summary:
    """Curves on the controls' shape keys; the articulation rig is added when the head has none of them.

    Vertex offsets cannot become control curves: such a result is refused, never written as something else.
    """
    prepare(ob, result)
    names = result.names
    notes = []
    if ensure_control_keys(ob, names):
        from ..rig import take_found_note

        notes.append("articulation rig added")
        notes += take_found_note(ob)
    info = write_controls(ob, result["weights"], names, timing.model_fps, timing.first_frame, timing.fps)
    if info["missing"]:
        notes.append(f"missing: {', '.join(info['missing'])}")
    if info["replaced"]:
        notes.append(f"replaced your curves for {', '.join(info['replaced'])} "
                     f"(the originals are kept in the action '{info['backup']}')")
    return Summary(info["frames"], info["last_frame"], f"{info['keys']} controls", notes)


def prepare(ob: bpy.types.Object, result: InferResult) -> InferResult:
    """Refuse, before anything in the scene changes, vertex offsets and a head that needs the rig but
    whose mouth landmarks cannot give one."""
    if result.kind != "controls":
        raise Wav2SemError(
            "wrong_result",
            "Control Curves needs a model that outputs named controls; this one outputs vertex offsets.",
            "Pick Compact, Per Frame or Point Cache, or the default model.",
        )
    key = ob.data.shape_keys
    if key is None or not any(n in key.key_blocks for n in result.names):
        from ..rig import rig_deltas

        rig_deltas(ob, rest_positions(ob).astype(np.float64))
    return result


def ensure_control_keys(ob: bpy.types.Object, names: list[str]) -> bool:
    """Give ``ob`` the articulation rig when it has none of the control shape keys; True if added."""
    key = ob.data.shape_keys
    if key is not None and any(n in key.key_blocks for n in names):
        return False
    from ..rig import add_articulation_rig

    add_articulation_rig(ob)
    return True


def clear(ob: bpy.types.Object) -> None:
    """Remove the control curves we wrote that nobody has edited since (edited ones are the animator's)."""
    key = ob.data.shape_keys
    own = _own_fingerprints(key)
    fcurves = fcurves_of(key, create=False) if key is not None else None
    if fcurves is None or not own:
        return
    for fc in list(fcurves):
        if own.get(fc.data_path) == _fingerprint(fc):
            fcurves.remove(fc)
    del key[OWN_CURVES]


def write_controls(
    ob: bpy.types.Object, weights: np.ndarray, names: list[str], model_fps: float, first_frame: float, fps: float
) -> dict:
    """Key the named controls; the summary's ``replaced`` lists keys whose own curves were replaced
    and ``backup`` names the action that keeps the originals (None when nothing was replaced)."""
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
    own = _own_fingerprints(key)
    replaced: list[str] = []
    backup = None
    fcurves = fcurves_of(key, create=False)
    if fcurves is not None:
        action = key.animation_data.action
        # Files from before fingerprints: everything in our own action is ours.
        legacy_own = action.name.startswith(PREFIX) and not own
        for _, name in found:
            fc = fcurves.find(key_path(name), index=0)
            if fc is not None and not legacy_own and own.get(fc.data_path) != _fingerprint(fc):
                replaced.append(name)
        if replaced:
            backup = action.copy()
            backup.name = action.name + BACKUP_SUFFIX  # Blender adds .001 if a backup already exists
            backup.use_fake_user = True
    fcurves = fcurves_of(key, action_name=f"{PREFIX}{ob.name} Controls")
    frames = Timing(model_fps, first_frame, fps).frames(len(weights))
    for k, name in found:
        fc = add_fcurve(fcurves, key_path(name), frames, np.clip(weights[:, k], 0.0, 1.0))
        own[fc.data_path] = _fingerprint(fc)
    key[OWN_CURVES] = json.dumps(own, sort_keys=True)
    return {
        "keys": len(found),
        "missing": missing,
        "frames": len(weights),
        "last_frame": float(frames[-1]),
        "replaced": replaced,
        "backup": backup.name if backup is not None else None,
    }


def _own_fingerprints(key: bpy.types.Key | None) -> dict[str, str]:
    try:
        return dict(json.loads(key[OWN_CURVES])) if key is not None and OWN_CURVES in key else {}
    except (TypeError, ValueError):  # hand-edited property: trust nothing, back up instead
        return {}


def _fingerprint(fc: bpy.types.FCurve) -> str:
    """Keys and interpolation: changes when anyone edits the curve after we wrote it."""
    points = fc.keyframe_points
    co = np.empty(2 * len(points), dtype=np.float32)
    interpolation = np.empty(len(points), dtype=np.int32)
    points.foreach_get("co", co)
    points.foreach_get("interpolation", interpolation)
    return hashlib.sha1(co.tobytes() + interpolation.tobytes()).hexdigest()[:16]
