"""The articulation rig in Blender: shape keys named like the default model's controls.

Landmarks come from vertex groups the user assigns (``W2S mouth_corner_L`` ... ``W2S chin``,
optionally ``W2S jaw_pivot``; a group's vertices are averaged), or are built in for FLAME
topology. Keys this rig made are listed in the object's ``wav2sem_rig`` property, so adding
the rig again replaces only them; a key of the same name the user made stays as it is.
"""

from __future__ import annotations

import bpy
import numpy as np
from bpy.props import StringProperty

from wav2sem_contract import articulation, controls
from wav2sem_contract.errors import Wav2SemError

from .writers.common import rest_positions

FLAME_LANDMARKS, FLAME_VERTICES = articulation.FLAME_LANDMARKS, articulation.FLAME_VERTICES
LANDMARKS, OPTIONAL_LANDMARKS = articulation.LANDMARKS, articulation.OPTIONAL_LANDMARKS

GROUP_PREFIX = "W2S "
RIG_PROPERTY = "wav2sem_rig"


def group_weights(ob: bpy.types.Object, names: list[str]) -> dict[str, np.ndarray]:
    """(V,) weights of each named vertex group that exists (one pass over the vertices: Blender has
    no bulk access to group weights)."""
    index = {ob.vertex_groups[n].index: n for n in names if n in ob.vertex_groups}
    out = {n: np.zeros(len(ob.data.vertices)) for n in index.values()}
    if not index:
        return out
    for v in ob.data.vertices:
        for g in v.groups:
            name = index.get(g.group)
            if name is not None:
                out[name][v.index] = g.weight
    return out


def landmarks_of(
    ob: bpy.types.Object, rest: np.ndarray | None = None, names: tuple[str, ...] = LANDMARKS + OPTIONAL_LANDMARKS
) -> dict[str, np.ndarray]:
    """Landmark positions of ``ob`` (object space): the weighted means of its ``W2S`` vertex groups
    (any of ``names``), else FLAME's built-ins for the mouth."""
    rest = rest_positions(ob).astype(np.float64) if rest is None else rest
    weights = group_weights(ob, [GROUP_PREFIX + n for n in names])
    found = {}
    for n in names:
        w = weights.get(GROUP_PREFIX + n)
        if w is not None and w.sum() > 0:
            found[n] = (w[:, None] * rest).sum(0) / w.sum()
    if all(n in found for n in LANDMARKS):
        return found
    if len(rest) == FLAME_VERTICES:
        return {**{n: rest[i] for n, i in FLAME_LANDMARKS.items()}, **found}
    missing = [GROUP_PREFIX + n for n in LANDMARKS if n not in found]
    raise Wav2SemError(
        "rig_landmarks",
        f"'{ob.name}' has no mouth landmarks (missing vertex groups: {', '.join(missing)}).",
        "Assign a vertex or two to each of those groups in Edit Mode, then try again.",
    )


def rig_deltas(ob: bpy.types.Object, rest: np.ndarray) -> dict[str, np.ndarray]:
    """Each control's (V, 3) delta on ``ob`` at ``rest`` (float64), from its mouth landmarks."""
    try:
        frame = articulation.mouth_frame(rest, landmarks_of(ob, rest))
    except articulation.RigError as exc:
        raise Wav2SemError("rig_landmarks", f"The mouth landmarks of '{ob.name}' do not make sense: {exc}.",
                           "Check the W2S vertex groups (corners left/right, lips, chin).") from None
    return articulation.control_deltas(rest, frame)


def add_articulation_rig(ob: bpy.types.Object) -> list[str]:
    """Add (or refresh) the control shape keys on ``ob``; returns the names written."""
    if ob is None or ob.type != "MESH":
        raise Wav2SemError("rig_target", "The articulation rig needs a mesh object.", "Select a head mesh.")
    if ob.library is not None or ob.data.library is not None:
        raise Wav2SemError("rig_target", f"'{ob.name}' is linked from a library and cannot get shape keys.",
                           "Make it local (Object > Relation > Make Local) first.")
    rest = rest_positions(ob).astype(np.float64)
    deltas = rig_deltas(ob, rest)
    if ob.data.shape_keys is None:
        ob.shape_key_add(name="Basis", from_mix=False)
    blocks = ob.data.shape_keys.key_blocks
    ours = set(ob.get(RIG_PROPERTY, []))
    written = []
    for name in controls.CONTROLS:
        if name in blocks and name not in ours:
            continue  # the user's own key of that name drives the control instead
        block = blocks.get(name)
        if block is None:  # a new key rests at 0 (Blender gives new keys 1.0: the face would start deformed)
            block = ob.shape_key_add(name=name, from_mix=False)
            block.value = 0.0
        block.slider_min, block.slider_max = 0.0, 1.0
        block.data.foreach_set("co", (rest + deltas[name]).astype(np.float32).ravel())
        written.append(name)
    ob[RIG_PROPERTY] = sorted(ours | set(written))
    ob.data.update()
    return written


class WAV2SEM_OT_add_rig(bpy.types.Operator):
    """Add shape keys for the lip sync controls (jaw, lips, corners) from the mouth landmarks"""

    bl_idname = "wav2sem.add_rig"
    bl_label = "Add Articulation Rig"
    bl_options = {"REGISTER", "UNDO"}

    object: StringProperty(name="Object", description="Mesh to rig (default: the panel's target, else the active object)",
                           options={"SKIP_SAVE"})

    def execute(self, context):
        settings = getattr(context.scene, "wav2sem", None)
        fallback = (settings.target if settings is not None else None) or context.active_object
        ob = bpy.data.objects.get(self.object) if self.object else fallback
        if ob is None:
            self.report({"ERROR"}, "No object to rig: select a head mesh or pass object=...")
            return {"CANCELLED"}
        was_edit = ob.mode == "EDIT"
        if was_edit:  # edit-mode changes live in the BMesh until we leave edit mode
            bpy.ops.object.mode_set(mode="OBJECT")
        try:
            names = add_articulation_rig(ob)
        except Wav2SemError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        finally:
            if was_edit:
                bpy.ops.object.mode_set(mode="EDIT")
        self.report({"INFO"}, f"Articulation rig on '{ob.name}': {len(names)} shape keys")
        return {"FINISHED"}


classes = (WAV2SEM_OT_add_rig,)

register, unregister = bpy.utils.register_classes_factory(classes)
