"""The articulation rig in Blender: shape keys named like the default model's controls.

Landmarks come from vertex groups the user assigns (``W2S mouth_corner_L`` ... ``W2S chin``,
optionally ``W2S jaw_pivot``; a group's vertices are averaged), or are built in for FLAME
topology, or else are found on the geometry (``landmarks.py``): the groups always win, and
**Find Mouth Landmarks** writes what was found as those groups, to inspect and adjust. Keys this
rig made are listed in the object's ``wav2sem_rig`` property, so adding the rig again replaces
only them; a key of the same name the user made stays as it is.

The performance layer's keys (``add_face_keys``: blinks, eye widening and squint, brows, cheeks,
nose) come from the same mouth frame plus the eyeballs found on the mesh (``eyes.py``); a head
without eyeball parts gets brows, cheeks and nose only.
"""

from __future__ import annotations

import hashlib

import bpy
import numpy as np
from bpy.props import BoolProperty, StringProperty

from wav2sem_contract import articulation, controls, upper_face
from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.performance import PERFORMANCE_CONTROLS

from .eyes import find_eyes
from .landmarks import GROUP_NAMES, LandmarkError, Landmarks, find_mouth_landmarks, triangulate
from .writers.common import rest_positions

FLAME_LANDMARKS, FLAME_VERTICES = articulation.FLAME_LANDMARKS, articulation.FLAME_VERTICES
LANDMARKS, OPTIONAL_LANDMARKS = articulation.LANDMARKS, articulation.OPTIONAL_LANDMARKS

GROUP_PREFIX = "W2S "
RIG_PROPERTY = "wav2sem_rig"
FOUND_PROPERTY = "wav2sem_found_groups"  # the W2S groups Find Mouth Landmarks wrote (not the user's)

# What the last automatic search found, per object name, until a writer reports it in its summary.
FOUND_NOTES: dict[str, str] = {}
_CACHE: dict[tuple, Landmarks] = {}


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
    ob: bpy.types.Object, rest: np.ndarray | None = None, names: tuple[str, ...] = LANDMARKS + OPTIONAL_LANDMARKS,
    detect: bool = False,
) -> dict[str, np.ndarray]:
    """Landmark positions of ``ob`` (object space): the weighted means of its ``W2S`` vertex groups
    (any of ``names``), else FLAME's built-ins for the mouth, else (``detect``) the ones found on the
    geometry for whatever the groups leave out."""
    rest = rest_positions(ob).astype(np.float64) if rest is None else rest
    if detect:
        FOUND_NOTES.pop(ob.name, None)  # a note is only ever about this search
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
    if not detect:
        raise Wav2SemError(
            "rig_landmarks",
            f"'{ob.name}' has no mouth landmarks (missing vertex groups: {', '.join(missing)}).",
            "Assign a vertex or two to each of those groups in Edit Mode, then try again.",
        )
    try:
        auto = detect_landmarks(ob, rest)
    except LandmarkError as exc:
        reason = str(exc).rstrip(".")
        raise Wav2SemError(
            "rig_landmarks",
            f"'{ob.name}' has no mouth landmarks: the vertex groups {', '.join(missing)} are missing and the "
            f"search of its geometry failed ({reason[:1].lower()}{reason[1:]}).",
            "Assign a vertex or two to each of those groups in Edit Mode, then try again.",
        ) from None
    FOUND_NOTES[ob.name] = f"mouth landmarks found automatically ({auto.describe(*_units(ob))})"
    return {**{n: auto.positions[n] for n in names if n in auto.positions}, **found}


def mesh_faces(ob: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    """(flat corner vertex indices, corners per polygon) of ``ob``'s mesh, in polygon order."""
    me = ob.data
    n = len(me.polygons)
    # (int32 buffers: Blender's own type for these; another width is not converted)
    starts, totals = np.empty(n, np.int32), np.empty(n, np.int32)
    me.polygons.foreach_get("loop_start", starts)
    me.polygons.foreach_get("loop_total", totals)
    corners = np.empty(len(me.loops), np.int32)
    me.loops.foreach_get("vertex_index", corners)
    starts, totals, corners = starts.astype(np.int64), totals.astype(np.int64), corners.astype(np.int64)
    offsets = np.arange(totals.sum()) - np.repeat(np.cumsum(totals) - totals, totals)
    return corners[np.repeat(starts, totals) + offsets], totals


def detect_landmarks(ob: bpy.types.Object, rest: np.ndarray | None = None) -> Landmarks:
    """The mouth landmarks found on ``ob``'s geometry (remembered for the same mesh shape: a Generate
    asks twice, once to check and once to write)."""
    rest = rest_positions(ob).astype(np.float64) if rest is None else rest
    flat, sizes = mesh_faces(ob)
    digest = hashlib.sha1(np.ascontiguousarray(rest, np.float64).tobytes() + flat.tobytes() + sizes.tobytes())
    key = (ob.name, digest.hexdigest())
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = find_mouth_landmarks(rest, flat, sizes)
    return _CACHE[key]


def _units(ob: bpy.types.Object) -> tuple[float, str]:
    """Metres per object-space unit (the object's scale and the scene's unit scale) for reports."""
    scale = float(np.abs(np.linalg.det(np.array(ob.matrix_world)[:3, :3]))) ** (1 / 3)
    return scale * bpy.context.scene.unit_settings.scale_length, "m"


def take_found_note(ob: bpy.types.Object) -> list[str]:
    """The summary note for landmarks found automatically on ``ob`` since the last call (or none)."""
    note = FOUND_NOTES.pop(ob.name, None)
    return [note] if note else []


def rig_deltas(ob: bpy.types.Object, rest: np.ndarray) -> dict[str, np.ndarray]:
    """Each control's (V, 3) delta on ``ob`` at ``rest`` (float64), from its mouth landmarks."""
    try:
        frame = articulation.mouth_frame(rest, landmarks_of(ob, rest, detect=True))
    except articulation.RigError as exc:
        raise Wav2SemError("rig_landmarks", f"The mouth landmarks of '{ob.name}' do not make sense: {exc}.",
                           "Check the W2S vertex groups (corners left/right, lips, chin).") from None
    return articulation.control_deltas(rest, frame)


def _write_keys(ob: bpy.types.Object, rest: np.ndarray, deltas: dict[str, np.ndarray], names) -> list[str]:
    """Write ``deltas`` as shape keys (in ``names`` order) except where the user has a key of that name
    (it drives the control instead); records what the rig owns. Returns the names written."""
    if ob.data.shape_keys is None:
        ob.shape_key_add(name="Basis", from_mix=False)
    blocks = ob.data.shape_keys.key_blocks
    ours = set(ob.get(RIG_PROPERTY, []))
    written = []
    for name in names:
        if name not in deltas or (name in blocks and name not in ours):
            continue
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


def _check_rig_target(ob: bpy.types.Object | None) -> None:
    if ob is None or ob.type != "MESH":
        raise Wav2SemError("rig_target", "The articulation rig needs a mesh object.", "Select a head mesh.")
    if ob.library is not None or ob.data.library is not None:
        raise Wav2SemError("rig_target", f"'{ob.name}' is linked from a library and cannot get shape keys.",
                           "Make it local (Object > Relation > Make Local) first.")


def add_articulation_rig(ob: bpy.types.Object) -> list[str]:
    """Add (or refresh) the control shape keys on ``ob``; returns the names written."""
    _check_rig_target(ob)
    rest = rest_positions(ob).astype(np.float64)
    return _write_keys(ob, rest, rig_deltas(ob, rest), controls.CONTROLS)


def add_face_keys(ob: bpy.types.Object) -> tuple[list[str], str]:
    """Add (or refresh) the performance layer's keys (blinks, eyes, brows, cheeks, nose) on ``ob`` from its
    mouth landmarks and the eyeballs found on its mesh; returns (the names written, what was found)."""
    _check_rig_target(ob)
    rest = rest_positions(ob).astype(np.float64)
    try:
        frame = articulation.mouth_frame(rest, landmarks_of(ob, rest, detect=True))
    except articulation.RigError as exc:
        raise Wav2SemError("rig_landmarks", f"The mouth landmarks of '{ob.name}' do not make sense: {exc}.",
                           "Check the W2S vertex groups (corners left/right, lips, chin).") from None
    flat, sizes = mesh_faces(ob)
    found = find_eyes(rest, triangulate(flat, sizes), frame)
    deltas = upper_face.face_deltas(rest, frame, found.eyes, found.fixed)
    return _write_keys(ob, rest, deltas, PERFORMANCE_CONTROLS), found.note


def chosen_head(context: bpy.types.Context, name: str) -> bpy.types.Object | None:
    """The object an operator works on: the one named, else the panel's target, else the active object."""
    if name:
        return bpy.data.objects.get(name)
    settings = getattr(context.scene, "wav2sem", None)
    return (settings.target if settings is not None else None) or context.active_object


class WAV2SEM_OT_add_rig(bpy.types.Operator):
    """Add shape keys for the lip sync (jaw, lips, corners) and the face (blinks, brows, cheeks, nose)"""

    bl_idname = "wav2sem.add_rig"
    bl_label = "Add Articulation Rig"
    bl_options = {"REGISTER", "UNDO"}

    object: StringProperty(name="Object", description="Mesh to rig (default: the panel's target, else the active object)",
                           options={"SKIP_SAVE"})

    def execute(self, context):
        ob = chosen_head(context, self.object)
        if ob is None:
            self.report({"ERROR"}, "No object to rig: select a head mesh or pass object=...")
            return {"CANCELLED"}
        was_edit = ob.mode == "EDIT"
        if was_edit:  # edit-mode changes live in the BMesh until we leave edit mode
            bpy.ops.object.mode_set(mode="OBJECT")
        try:
            names = add_articulation_rig(ob)
            face, eyes = add_face_keys(ob)
        except Wav2SemError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        finally:
            if was_edit:
                bpy.ops.object.mode_set(mode="EDIT")
        found = "".join(f"; {note}" for note in take_found_note(ob))
        self.report({"INFO"}, f"Articulation rig on '{ob.name}': {len(names)} mouth and {len(face)} face shape keys "
                              f"({eyes}){found}")
        return {"FINISHED"}


def write_found_groups(ob: bpy.types.Object, found: Landmarks, replace: bool = False) -> tuple[list[str], list[str]]:
    """The found landmarks as ``W2S`` vertex groups; a group the user made is kept unless ``replace``.
    Returns (groups written, groups kept)."""
    ours = set(ob.get(FOUND_PROPERTY, []))
    written, kept = [], []
    for name in GROUP_NAMES:
        indices = found.indices.get(name)
        group_name = GROUP_PREFIX + name
        group = ob.vertex_groups.get(group_name)
        if group is not None and group_name not in ours and not replace:
            kept.append(group_name)
            continue
        if indices is None:
            if group is not None and group_name in ours:  # an earlier search's, now without a match
                ob.vertex_groups.remove(group)
            continue
        if group is None:
            group = ob.vertex_groups.new(name=group_name)
        else:
            group.remove(list(range(len(ob.data.vertices))))
        group.add(indices, 1.0, "REPLACE")
        written.append(group_name)
    ob[FOUND_PROPERTY] = sorted((ours - set(kept)) | set(written))
    return written, kept


def _select_only(ob: bpy.types.Object, indices: list[int]) -> None:
    """Select just these vertices: Edit Mode then shows where the landmarks are."""
    me = ob.data
    mask = np.zeros(len(me.vertices), bool)
    mask[indices] = True
    me.vertices.foreach_set("select", mask)
    # Nothing else selected: drop the edge and face selection layers (setting edge flags through
    # foreach_set crashed Blender 5.0.1; a missing layer reads as all unselected).
    for name in (".select_edge", ".select_poly"):
        layer = me.attributes.get(name)
        if layer is not None:
            me.attributes.remove(layer)


class WAV2SEM_OT_find_landmarks(bpy.types.Operator):
    """Find the mouth corners, lips, chin and jaw pivot on the geometry and write them as W2S vertex groups to check"""

    bl_idname = "wav2sem.find_landmarks"
    bl_label = "Find Mouth Landmarks"
    bl_options = {"REGISTER", "UNDO"}

    object: StringProperty(name="Object", description="Head mesh (default: the panel's target, else the active object)",
                           options={"SKIP_SAVE"})
    replace: BoolProperty(name="Replace My Groups", default=False, options={"SKIP_SAVE"},
                          description="Also overwrite W2S groups you assigned yourself")

    def execute(self, context):
        ob = chosen_head(context, self.object)
        if ob is None or ob.type != "MESH":
            self.report({"ERROR"}, "No head mesh to search: select one or pass object=...")
            return {"CANCELLED"}
        if ob.library is not None or ob.data.library is not None:
            self.report({"ERROR"}, f"'{ob.name}' is linked from a library; make it local to add vertex groups.")
            return {"CANCELLED"}
        was_edit = ob.mode == "EDIT"
        if was_edit:  # the mesh's edits live in the BMesh until edit mode is left
            bpy.ops.object.mode_set(mode="OBJECT")
        try:
            try:
                found = detect_landmarks(ob)
            except LandmarkError as exc:
                names = ", ".join(GROUP_PREFIX + n for n in LANDMARKS)
                self.report({"ERROR"}, f"{str(exc).rstrip('.')} on '{ob.name}'; assign the vertex groups {names} "
                                       "by hand in Edit Mode (a vertex or two each).")
                return {"CANCELLED"}
            written, kept = write_found_groups(ob, found, self.replace)
            _select_only(ob, sorted({i for n in written for i in found.indices[n.removeprefix(GROUP_PREFIX)]}))
            if written:
                ob.vertex_groups.active_index = ob.vertex_groups[written[0]].index
            ob.data.update()
        finally:
            if was_edit:
                bpy.ops.object.mode_set(mode="EDIT")
        text = f"Mouth landmarks on '{ob.name}': {found.describe(*_units(ob))}"
        if kept:
            text += f"; kept your {', '.join(kept)}"
        self.report({"INFO"}, text + ". They are selected in Edit Mode; move a group's vertex to adjust.")
        return {"FINISHED"}


classes = (WAV2SEM_OT_add_rig, WAV2SEM_OT_find_landmarks)

register, unregister = bpy.utils.register_classes_factory(classes)
