"""The performance layer (blinks, brows, eyes, cheeks, nose, head motion) as NLA tracks of its own.

The server computes the layer from the audio (``server/performance.py``) and returns it beside the
mouth's motion. Here it goes onto the head in two places, never into the mouth's action:

* the face controls, on the shape keys named like them (``browInnerUp`` also plays on a rig's
  ``browInnerUp_L``/``_R``), as the NLA track ``W2S Performance`` of the shape-key datablock;
* the head motion, on the object's ``delta_rotation_euler`` (added to the object's own rotation,
  which stays the animator's), as the NLA track ``W2S Head Motion`` of the object; or, for a head an
  armature deforms, on its head bone (``head_bone.py``) as the armature's track ``W2S Head Motion``,
  combined with the tracks below it.

So an animator can mute a track, scale it (the strip's Animated Influence) or bake it. Below each
track sits a ``... Rest`` track holding every channel at 0: Blender's NLA starts a shape key's value
from its RNA default, 1.0, so without it a muted or half-influence blink track would close the eyes.
A head with none of the layer's keys first gets the articulation rig's face keys (``rig.add_face_keys``:
blinks from the eyeballs found on its mesh, brows, cheeks, nose); controls still without a shape key
are listed in the summary; the head motion needs none.
"""

from __future__ import annotations

import bpy
import numpy as np

from wav2sem_contract import performance as names
from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.result import InferResult

from . import head_bone
from .compat import fcurves_of
from .head_bone import find_head_bone
from .key_paths import key_path
from .writers import PREFIX
from .writers.base import Timing
from .writers.common import LINEAR

FACE_TRACK = f"{PREFIX}Performance"
HEAD_TRACK = f"{PREFIX}Head Motion"
REST = " Rest"
OWN = "wav2sem_performance"  # custom property on the actions this module made
HEAD_OF = "wav2sem_head_of"  # on a head-bone action: the mesh whose layer it is
HEAD_PATH = "delta_rotation_euler"


def _new_action(name: str, id_type: str):
    """A new action and the F-curve collection to fill (4.4+ keeps F-curves in a slot's channelbag)."""
    action = bpy.data.actions.new(name)
    action[OWN] = True
    if hasattr(action, "slots"):
        from bpy_extras.anim_utils import action_ensure_channelbag_for_slot

        slot = action.slots.new(id_type=id_type, name=name)
        return action, action_ensure_channelbag_for_slot(action, slot).fcurves
    return action, action.fcurves


def _curve(fcurves, path: str, index: int, frames: np.ndarray, values: np.ndarray) -> None:
    fc = fcurves.new(path, index=index)
    fc.keyframe_points.add(len(frames))
    fc.keyframe_points.foreach_set("co", np.stack([frames, values], 1).astype(np.float32).ravel())
    fc.keyframe_points.foreach_set("interpolation", np.full(len(frames), LINEAR, np.int32))
    fc.update()


def _add_tracks(id_data: bpy.types.ID, track: str, channels: list[tuple[str, int, np.ndarray]],
                frames: np.ndarray) -> None:
    """The rest track (every channel 0) and above it the layer's track, each one strip that holds its
    ends, starting on whole frames (frames before and after the clip are keyed 0, so holding gives 0)."""
    first, last = int(np.floor(frames[0])) - 1, int(np.ceil(frames[-1])) + 1
    padded = np.concatenate([[first], frames, [last]])
    ad = id_data.animation_data or id_data.animation_data_create()
    for name, rest in ((track + REST, True), (track, False)):
        action, fcurves = _new_action(f"{name} {id_data.name}", id_data.id_type)
        for path, index, values in channels:
            if rest:
                _curve(fcurves, path, index, np.array([first], float), np.zeros(1))
            else:
                _curve(fcurves, path, index, padded, np.concatenate([[0.0], values, [0.0]]))
        nla = ad.nla_tracks.new()
        nla.name = name
        strip = nla.strips.new(name, first, action)
        strip.blend_type, strip.extrapolation = "REPLACE", "HOLD"


def _bone_track(ob: bpy.types.Object, arm: bpy.types.Object, bone: bpy.types.PoseBone, rotation: np.ndarray,
                frames: np.ndarray) -> str:
    """The head motion as a strip on ``arm`` keying ``bone``'s rotation, combined with the tracks below it;
    below it a rest strip combining the identity (which changes nothing), so that with the layer muted the
    NLA still drives the bone, from its rest, and no stale turn stays on it."""
    try:
        path, values = head_bone.local_rotations(ob, arm, bone, rotation)
    except ValueError as exc:
        return f"no head motion ({exc}: set it to Quaternion or an Euler mode)"
    rest = head_bone.rest_values(path)
    first, last = int(np.floor(frames[0])) - 1, int(np.ceil(frames[-1])) + 1
    padded = np.concatenate([[first], frames, [last]])
    full = f'pose.bones["{bpy.utils.escape_identifier(bone.name)}"].{path}'
    ad = arm.animation_data or arm.animation_data_create()
    for name, still in ((HEAD_TRACK + REST, True), (HEAD_TRACK, False)):
        action, fcurves = _new_action(f"{name} {ob.name}", arm.id_type)
        action[HEAD_OF] = ob.name
        for i in range(values.shape[1]):
            if still:
                _curve(fcurves, full, i, np.array([first], float), rest[i:i + 1])
            else:
                _curve(fcurves, full, i, padded, np.concatenate([[rest[i]], values[:, i], [rest[i]]]))
        nla = ad.nla_tracks.new()
        nla.name = name
        strip = nla.strips.new(name, first, action)
        strip.blend_type, strip.extrapolation = "COMBINE", "HOLD"
    note = f"head motion on the bone '{bone.name}' of '{arm.name}'"
    active = ad.action
    if active is not None and ad.action_blend_type == "REPLACE" and any(
            fc.data_path.startswith(f'pose.bones["{bpy.utils.escape_identifier(bone.name)}"].rotation')
            for fc in fcurves_of(arm, create=False) or ()):
        note += (f" (the action '{active.name}' keys that bone and hides it: push the action down to the NLA "
                 "or set its blending to Combine)")
    return note


def _layer_tracks(ob: bpy.types.Object):
    """(animated datablock, track name) of every place the layer of ``ob`` may have written."""
    yield (ob.data.shape_keys if ob.type == "MESH" else None), FACE_TRACK
    yield ob, HEAD_TRACK
    rigged = find_head_bone(ob)
    if rigged is not None:
        yield rigged[0], HEAD_TRACK


def clear(ob: bpy.types.Object) -> None:
    """Remove the layer's tracks (and their actions, unless something else uses them) from ``ob`` and
    from the armature whose head bone it turned."""
    for id_data, track in _layer_tracks(ob):
        ad = id_data.animation_data if id_data is not None else None
        if ad is None:
            continue
        for nla in list(ad.nla_tracks):
            if nla.name not in (track, track + REST):
                continue
            if id_data is not ob and id_data.id_type == "OBJECT" and not all(
                    s.action is not None and s.action.get(HEAD_OF) == ob.name for s in nla.strips):
                continue  # another head on the same armature wrote it
            actions = [s.action for s in nla.strips if s.action is not None and s.action.get(OWN)]
            ad.nla_tracks.remove(nla)
            for action in actions:
                if action.users == 0:
                    bpy.data.actions.remove(action)


def write(ob: bpy.types.Object, result: InferResult, timing: Timing, head: bool = True) -> list[str]:
    """Replace the layer on ``ob`` with the one ``result`` carries (none: only the old one goes);
    returns notes for the summary (what was written, which controls had no shape key)."""
    clear(ob)
    if names.WEIGHTS not in result:
        return []
    weights = np.asarray(result[names.WEIGHTS], np.float64)
    controls = [str(n) for n in result[names.NAMES]]
    frames = timing.frames(len(weights))
    cached = any(m.type == "MESH_CACHE" and m.show_viewport for m in ob.modifiers)
    notes = [] if cached else _ensure_face_keys(ob, controls)
    key = ob.data.shape_keys
    present = set(key.key_blocks.keys()) if key is not None else set()
    channels, skipped = [], []
    for k, name in enumerate(controls):
        keys = next((c for c in names.key_candidates(name) if all(n in present for n in c)), None)
        if keys is None:
            skipped.append(name)
            continue
        channels += [(key_path(n), 0, weights[:, k]) for n in keys]
    if channels:
        _add_tracks(key, FACE_TRACK, channels, frames)
    rotation = np.asarray(result[names.HEAD], np.float64) if head and names.HEAD in result else None
    head_note = ""
    if rotation is not None:
        rigged = find_head_bone(ob)
        if rigged is None:
            _add_tracks(ob, HEAD_TRACK, [(HEAD_PATH, i, rotation[:, i]) for i in range(3)], frames)
            head_note = "head motion"
        else:
            head_note = _bone_track(ob, *rigged, rotation, frames)
    written = len(controls) - len(skipped)
    parts = [f"{written} face controls" if written else "", head_note]
    note = "performance layer: " + (" + ".join(p for p in parts if p) or "nothing")
    if skipped and not written:
        note += " (the head has no eye, brow, cheek or nose shape keys)"
    elif skipped:
        note += f" (no shape keys for {', '.join(skipped)})"
    if channels and cached:
        note += "; the point cache replaces the shape keys' motion, so only the head motion shows"
    return [note, *notes]


def _ensure_face_keys(ob: bpy.types.Object, controls: list[str]) -> list[str]:
    """Give a head that has none of the layer's keys the rig's face keys (``rig.add_face_keys``), so
    the layer shows on any head; returns a note for the summary (what was found, or why not)."""
    key = ob.data.shape_keys
    present = set(key.key_blocks.keys()) if key is not None else set()
    if any(all(n in present for n in c) for name in controls for c in names.key_candidates(name)):
        return []
    from .rig import add_face_keys

    try:
        written, found = add_face_keys(ob)
    except Wav2SemError as exc:
        if exc.code == "rig_landmarks":  # the full story is Find Mouth Landmarks' to tell
            return [f"no face keys added (no mouth landmarks found on '{ob.name}')"]
        return [f"no face keys added ({exc.message.rstrip('.')})"]
    return [f"face keys added: {len(written)} ({found})"]
