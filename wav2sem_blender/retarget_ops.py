"""Retargeting operators: put lip sync made on one head (FLAME, or any mesh with the add-on's
shape keys) onto a custom head or rig.

* ``wav2sem.align_heads``: moves the source object onto the target from corresponding landmarks.
* ``wav2sem.transfer_motion``: binds the target's vertices to the source surface; BAKE copies the
  source's shape keys (through the binding) and their F-curves, LIVE adds a Surface Deform modifier.
* ``wav2sem.solve_shape_keys``: fits the target's own shape keys to the source's motion, frame by frame.
* ``wav2sem.map_controls``: control curves (``jawOpen`` ...) onto a rig's keys through a mapping table.
* ``wav2sem.jaw_bone``: keys a jaw bone's rotation from jawOpen or from the source's chin motion.

Every operator checks everything first and changes nothing when it refuses (one plain sentence in
the report); a run is one undo step. The maths lives in ``retarget/`` (numpy only); this module
reads and writes Blender data in bulk (``foreach_get``/``foreach_set``, ``add_fcurve``).
"""

from __future__ import annotations

import math
import re

import bpy
import numpy as np
from bpy.props import EnumProperty, FloatProperty, IntProperty, StringProperty

from wav2sem_contract import articulation, controls
from wav2sem_contract.errors import Wav2SemError

from .compat import fcurves_of
from .properties import JAW_AXES, RETARGET_MODES
from .retarget.binding import bind, triangulate
from .retarget.jaw import jaw_angles, jaw_open_from_offsets
from .retarget.mapping import ARKIT_TO_VISEMES, map_controls, parse_mapping
from .retarget.solve import solve_weights
from .retarget.transform import RetargetError, similarity_from_landmarks
from .rig import FLAME_LANDMARKS, FLAME_VERTICES, GROUP_PREFIX, LANDMARKS, group_weights, landmarks_of
from .writers import PREFIX
from .writers.common import (
    add_fcurve,
    copy_fcurve,
    ensure_basis,
    key_path,
    new_shape_key,
    remove_own_shape_keys,
    rest_positions,
    scene_fps,
)
from .writers.controls import write_controls

ALIGN_OPTIONAL = ("nose_tip", "eye_L", "eye_R")
SURFACE_DEFORM = PREFIX + "Surface Deform"
FOLLOW_GROUP = PREFIX + "Retarget Weights"
TRANSFERRED = "wav2sem_transfer"  # names of the shape keys a BAKE transfer put on the target
SOLVE_ERROR = "wav2sem_solve_error"  # per-frame fit error of the last solve (world units)
SOLVE_FIRST_FRAME = "wav2sem_solve_first_frame"
AUTO_DISTANCE = 0.02  # automatic max distance: this fraction of the source's bounding-box diagonal
JAW_FULL_OPEN = 0.3  # fallback chin drop (in mouth widths) that counts as jawOpen = 1
MAPPING_PRESETS = [
    ("NAME", "By Name", "Each control drives the target key of the same name (or the mapping text)"),
    ("VISEMES", "ARKit to Visemes", "The built-in table from ARKit mouth controls to viseme keys (aa, oh, ...)"),
]
_KEY_PATH = re.compile(r'^key_blocks\["(.*)"\]\.value$')


def refuse(message: str) -> Wav2SemError:
    return Wav2SemError("retarget", message, "")


# -- reading the scene ----------------------------------------------------------------------------
def _object(name: str, role: str, kind: str = "MESH", fallback=None) -> bpy.types.Object:
    ob = bpy.data.objects.get(name) if name else fallback
    if ob is None:
        if name:
            raise refuse(f"There is no object called '{name}' to use as the {role}.")
        raise refuse(f"No {role} object is chosen; pick one in the Retarget panel or pass {role}=....")
    if ob.type != kind:
        raise refuse(f"The {role} '{ob.name}' is a {ob.type.lower()}, not a {kind.lower()}.")
    return ob


def _editable(ob: bpy.types.Object) -> None:
    if ob.library is not None or ob.data.library is not None:
        raise refuse(f"'{ob.name}' is linked from another .blend and cannot be changed here; make it local first.")
    if ob.mode == "EDIT":
        raise refuse(f"'{ob.name}' is in Edit Mode; switch to Object Mode first.")


def _distinct(source: bpy.types.Object, target: bpy.types.Object, shared_data: bool = False) -> None:
    if source == target or (source.data == target.data and not shared_data):
        raise refuse(f"The source and the target are the same mesh ('{source.name}'); pick two heads.")


def _rest(ob: bpy.types.Object) -> np.ndarray:
    return rest_positions(ob).astype(np.float64)


def _matrix(ob: bpy.types.Object) -> np.ndarray:
    return np.array(ob.matrix_world, dtype=np.float64)


def _world(ob: bpy.types.Object, points: np.ndarray) -> np.ndarray:
    m = _matrix(ob)
    return points @ m[:3, :3].T + m[:3, 3]


def _linear(ob: bpy.types.Object) -> np.ndarray:
    """The object's world matrix without translation: object-space vectors -> world vectors."""
    lin = _matrix(ob)[:3, :3]
    if abs(np.linalg.det(lin)) < 1e-12:
        raise refuse(f"'{ob.name}' has a zero scale; give it a non-zero scale first.")
    return lin


def _scale(ob: bpy.types.Object) -> float:
    return float(abs(np.linalg.det(_linear(ob))) ** (1 / 3))


def _triangles(ob: bpy.types.Object) -> np.ndarray:
    me = ob.data
    if len(me.polygons) == 0:
        raise refuse(f"'{ob.name}' has no faces, so nothing can be bound to its surface.")
    starts = np.empty(len(me.polygons), dtype=np.int64)
    sizes = np.empty(len(me.polygons), dtype=np.int64)
    me.polygons.foreach_get("loop_start", starts)
    me.polygons.foreach_get("loop_total", sizes)
    loop_vertex = np.empty(len(me.loops), dtype=np.int64)
    me.loops.foreach_get("vertex_index", loop_vertex)
    corners = np.repeat(starts - (np.cumsum(sizes) - sizes), sizes) + np.arange(sizes.sum())
    try:
        return triangulate(sizes, loop_vertex[corners])
    except RetargetError as exc:
        raise refuse(f"'{ob.name}': {exc}") from None


def _landmark_vertex(ob: bpy.types.Object, name: str) -> int | None:
    """The vertex standing for one landmark: the heaviest of its group, else FLAME's built-in."""
    w = group_weights(ob, [GROUP_PREFIX + name]).get(GROUP_PREFIX + name)
    if w is not None and w.max() > 0:
        return int(w.argmax())
    if len(ob.data.vertices) == FLAME_VERTICES and name in FLAME_LANDMARKS:
        return FLAME_LANDMARKS[name]
    return None


def _vertex_mask(ob: bpy.types.Object, group: str) -> np.ndarray | None:
    if not group:
        return None
    if group not in ob.vertex_groups:
        raise refuse(f"'{ob.name}' has no vertex group called '{group}'.")
    mask = group_weights(ob, [group])[group]
    if mask.max() <= 0:
        raise refuse(f"The vertex group '{group}' of '{ob.name}' is empty.")
    return mask


def _key_fcurves(key: bpy.types.Key | None) -> dict[str, bpy.types.FCurve]:
    """Shape-key name -> the F-curve animating its value in the key's active action (read only)."""
    if key is None or key.animation_data is None or key.animation_data.action is None:
        return {}
    ad, action = key.animation_data, key.animation_data.action
    if hasattr(action, "fcurves") and not getattr(action, "is_action_layered", False):
        curves = list(action.fcurves)
    else:
        from bpy_extras.anim_utils import action_get_channelbag_for_slot

        bag = action_get_channelbag_for_slot(action, ad.action_slot) if ad.action_slot else None
        curves = list(bag.fcurves) if bag is not None else []
    out = {}
    for fc in curves:
        m = _KEY_PATH.match(fc.data_path)
        if m and not fc.mute:
            out[m.group(1).replace('\\"', '"').replace("\\\\", "\\")] = fc
    return out


def _control_curves(ob: bpy.types.Object) -> dict[str, bpy.types.FCurve]:
    curves = _key_fcurves(ob.data.shape_keys)
    return {n: fc for n, fc in curves.items() if n in controls.CONTROLS and len(fc.keyframe_points)}


def _curve_range(curves) -> tuple[int, int]:
    lo = min(fc.range()[0] for fc in curves)
    hi = max(fc.range()[1] for fc in curves)
    return math.floor(lo + 1e-6), math.ceil(hi - 1e-6)


def _evaluate(fc: bpy.types.FCurve, frames: np.ndarray) -> np.ndarray:
    """Values of ``fc`` at ``frames``: numpy interpolation for plain linear curves, else ``evaluate``."""
    n = len(fc.keyframe_points)
    if n and fc.extrapolation == "CONSTANT" and len(fc.modifiers) == 0:
        interp = np.empty(n, dtype=np.int32)
        fc.keyframe_points.foreach_get("interpolation", interp)
        if (interp[:-1] == 1).all():  # LINEAR (the last key's interpolation plays no part)
            co = np.empty(2 * n, dtype=np.float64)
            fc.keyframe_points.foreach_get("co", co)
            return np.interp(frames, co[0::2], co[1::2])
    return np.array([fc.evaluate(float(f)) for f in frames])


def _key_deltas(ob: bpy.types.Object, blocks) -> np.ndarray:
    """(K, V, 3) object-space deltas of the given key blocks against their relative keys (and vertex groups)."""
    n = len(ob.data.vertices)
    cache: dict[str, np.ndarray] = {}

    def co(kb) -> np.ndarray:
        if kb.name not in cache:
            buf = np.empty(3 * n, dtype=np.float32)
            kb.data.foreach_get("co", buf)
            cache[kb.name] = buf.reshape(-1, 3)
        return cache[kb.name]

    out = np.empty((len(blocks), n, 3), dtype=np.float32)
    for k, kb in enumerate(blocks):
        out[k] = co(kb) - co(kb.relative_key)
        if kb.vertex_group:  # Blender scales the key by its vertex group
            w = group_weights(ob, [kb.vertex_group]).get(kb.vertex_group)
            if w is not None:
                out[k] *= w[:, None].astype(np.float32)
    return out


def _animated_offsets(ob: bpy.types.Object, frames: np.ndarray) -> np.ndarray:
    """(T, V, 3) object-space offsets of ``ob``'s relative shape keys at ``frames``, from the F-curves.

    What Blender evaluates: each unmuted key adds value x (key - relative key), values clamped to
    the key's slider range, the delta scaled by the key's vertex group; keys without a curve hold their value.
    Only the active action counts (not NLA strips or drivers).
    """
    key = ob.data.shape_keys
    curves = _key_fcurves(key)
    blocks, values = [], []
    for kb in key.key_blocks:
        if kb == key.reference_key or kb.mute:
            continue
        fc = curves.get(kb.name)
        v = _evaluate(fc, frames) if fc is not None else np.full(len(frames), kb.value)
        v = np.clip(v, kb.slider_min, kb.slider_max)
        if np.abs(v).max() > 0:
            blocks.append(kb)
            values.append(v)
    offsets = np.zeros((len(frames), len(ob.data.vertices), 3), dtype=np.float32)
    if not blocks:
        return offsets
    deltas = _key_deltas(ob, blocks)
    values = np.stack(values, axis=1).astype(np.float32)  # (T, K)
    step = max(1, (1 << 24) // max(1, deltas[0].size))
    for t0 in range(0, len(frames), step):
        offsets[t0:t0 + step] = np.tensordot(values[t0:t0 + step], deltas, axes=1)
    return offsets


def _animated_range(ob: bpy.types.Object, role: str) -> tuple[bpy.types.Key, dict]:
    key = ob.data.shape_keys
    if key is None or len(key.key_blocks) < 2:
        raise refuse(f"The {role} '{ob.name}' has no shape keys.")
    if not key.use_relative:
        raise refuse(f"The {role} '{ob.name}' has absolute shape keys (one per frame), which cannot be read here; "
                     "generate it as Compact Shape Keys.")
    curves = {n: fc for n, fc in _key_fcurves(key).items() if n in key.key_blocks and len(fc.keyframe_points)}
    if not curves:
        raise refuse(f"The {role} '{ob.name}' has no animated shape keys.")
    return key, curves


def _frames(op, curves) -> np.ndarray:
    lo, hi = _curve_range(curves.values())
    first = op.frame_start if op.properties.is_property_set("frame_start") else lo
    last = op.frame_end if op.properties.is_property_set("frame_end") else hi
    if last < first:
        raise refuse(f"The frame range {first}-{last} is empty.")
    return np.arange(first, last + 1, dtype=np.float64)


def _auto_distances(op, source_world: np.ndarray) -> tuple[float, float]:
    size = float(np.linalg.norm(np.ptp(source_world, axis=0)))
    max_distance = op.arg("max_distance") or AUTO_DISTANCE * size
    falloff = op.arg("falloff") or max_distance
    return max_distance, falloff


def _length(context, value: float) -> str:
    """A world-space distance for a report: millimetres in metric scenes (lip motion is mm-sized)."""
    units = context.scene.unit_settings
    if units.system == "METRIC":
        return f"{value * units.scale_length * 1000:.3g} mm"
    if units.system == "IMPERIAL":
        return bpy.utils.units.to_string(units.system, "LENGTH", value * units.scale_length, precision=3)
    return f"{value:.3g}"


# -- the operators ---------------------------------------------------------------------------------
class _RetargetOperator:
    """Shared: arguments fall back to the Retarget panel's settings; Wav2SemError -> report + CANCELLED."""

    bl_options = {"REGISTER", "UNDO"}

    def arg(self, name: str):
        if self.properties.is_property_set(name):
            return getattr(self, name)
        value = getattr(bpy.context.scene.wav2sem_retarget, name, getattr(self, name))
        return value.name if isinstance(value, bpy.types.ID) else value

    def execute(self, context):
        try:
            summary = self.run(context)
        except Wav2SemError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        context.scene.wav2sem_retarget.last_summary = summary
        self.report({"INFO"}, summary)
        return {"FINISHED"}

    def source_target(self, context, shared_data: bool = False) -> tuple[bpy.types.Object, bpy.types.Object]:
        source = _object(self.arg("source"), "source")
        target = _object(self.arg("target"), "target", fallback=context.active_object)
        _distinct(source, target, shared_data)
        return source, target


class WAV2SEM_OT_align_heads(_RetargetOperator, bpy.types.Operator):
    """Move the source head onto the target from their mouth landmarks (W2S vertex groups or FLAME's)"""

    bl_idname = "wav2sem.align_heads"
    bl_label = "Align Heads"

    source: StringProperty(name="Source", description="The head to move", options={"SKIP_SAVE"})
    target: StringProperty(name="Target", description="The head to align to", options={"SKIP_SAVE"})

    def run(self, context) -> str:
        source, target = self.source_target(context, shared_data=True)  # linked duplicates may be aligned
        if source.library is not None:
            raise refuse(f"'{source.name}' is linked from another .blend and cannot be moved here.")
        names = LANDMARKS + ALIGN_OPTIONAL
        src = landmarks_of(source, _rest(source), names)
        dst = landmarks_of(target, _rest(target), names)
        common = [n for n in names if n in src and n in dst]
        try:
            fit = similarity_from_landmarks(_world(source, np.array([src[n] for n in common])),
                                            _world(target, np.array([dst[n] for n in common])))
        except RetargetError as exc:
            raise refuse(str(exc)) from None
        if not (np.isfinite(fit.matrix()).all() and fit.scale > 0):
            raise refuse("The landmarks give no usable alignment; check the W2S vertex groups.")
        from mathutils import Matrix

        source.matrix_world = Matrix(fit.matrix().tolist()) @ source.matrix_world
        source["wav2sem_align_rms"] = fit.rms
        return (f"Aligned '{source.name}' to '{target.name}' on {len(common)} landmarks: scale {fit.scale:.4g}, "
                f"landmark error {_length(context, fit.rms)} (rms)")


class WAV2SEM_OT_transfer_motion(_RetargetOperator, bpy.types.Operator):
    """Carry the source's lip sync onto the target's own vertices (bake shape keys, or follow live)"""

    bl_idname = "wav2sem.transfer_motion"
    bl_label = "Transfer Motion"

    source: StringProperty(name="Source", description="The animated head", options={"SKIP_SAVE"})
    target: StringProperty(name="Target", description="The head to animate", options={"SKIP_SAVE"})
    vertex_group: StringProperty(name="Vertex Group", description="Only these target vertices follow",
                                 options={"SKIP_SAVE"})
    max_distance: FloatProperty(name="Max Distance", min=0.0, subtype="DISTANCE", unit="LENGTH",
                                description="Farther target vertices do not follow (0: automatic)",
                                options={"SKIP_SAVE"})
    falloff: FloatProperty(name="Falloff", min=0.0, subtype="DISTANCE", unit="LENGTH",
                           description="Fade-out beyond Max Distance (0: as much as Max Distance)",
                           options={"SKIP_SAVE"})
    mode: EnumProperty(name="Transfer", items=RETARGET_MODES, default="BAKE", options={"SKIP_SAVE"})

    def run(self, context) -> str:
        source, target = self.source_target(context)
        _editable(target)
        mode = self.arg("mode")
        mask = _vertex_mask(target, self.arg("vertex_group"))
        blocks = _transferable_keys(source) if mode == "BAKE" else None
        source_world = _world(source, _rest(source))
        max_distance, falloff = _auto_distances(self, source_world)
        try:
            binding = bind(source_world, _triangles(source), _world(target, _rest(target)),
                           max_distance=max_distance, falloff=falloff, mask=mask)
        except RetargetError as exc:
            raise refuse(str(exc)) from None
        following = int((binding.weights > 0).sum())
        if following == 0:
            raise refuse(f"No vertex of '{target.name}' lies near '{source.name}'; align the heads first.")
        if mode == "LIVE":
            _check_surface_deform(source)
            return self.live(context, source, target, binding.weights, following)
        return self.bake(source, target, blocks, binding, following)

    def bake(self, source, target, blocks, binding, following) -> str:
        # source object space -> world -> target object space (rotation and scale; no translation)
        to_target = np.linalg.solve(_linear(target), _linear(source))  # L_t^-1 L_s
        deltas = _key_deltas(source, blocks)
        moved = binding.transfer(deltas @ to_target.T.astype(np.float32))  # (K, Vt, 3)
        curves = _key_fcurves(source.data.shape_keys)
        _remove_surface_deform(target)
        remove_own_shape_keys(target)
        ensure_basis(target)
        rest = rest_positions(target)
        names = {kb.name: kb.name if kb.name.startswith(PREFIX) else PREFIX + kb.name for kb in blocks}
        fcurves = fcurves_of(target.data.shape_keys, action_name=f"{PREFIX}{target.name} Shape Keys")
        made, n_curves = {}, 0
        for k, kb in enumerate(blocks):
            new = new_shape_key(target, names[kb.name], rest + moved[k])
            new.slider_min, new.slider_max = kb.slider_min, kb.slider_max
            new.value, new.mute, new.interpolation = kb.value, kb.mute, kb.interpolation
            made[kb.name] = new
            fc = curves.get(kb.name)
            if fc is not None:
                copy_fcurve(fcurves, key_path(new.name), fc)
                n_curves += 1
        for kb in blocks:  # keys stacked on other transferred keys keep that relation
            if kb.relative_key.name in made:
                made[kb.name].relative_key = made[kb.relative_key.name]
        target[TRANSFERRED] = [kb.name for kb in made.values()]
        target["wav2sem_retarget_source"] = source.name
        target.data.update()
        return (f"Baked {len(blocks)} shape keys and {n_curves} F-curves from '{source.name}' onto "
                f"'{target.name}' ({following} of {len(binding.weights)} vertices follow)")

    def live(self, context, source, target, weights, following) -> str:
        # Bind a new modifier first; only once it is bound does the previous transfer go.
        group = target.vertex_groups.new(name=FOLLOW_GROUP + " new")
        for w in np.unique(weights[weights > 0]):  # one call per distinct weight
            group.add(np.flatnonzero(weights == w).tolist(), float(w), "REPLACE")
        mod = target.modifiers.new(SURFACE_DEFORM + " new", "SURFACE_DEFORM")
        mod.target = source
        mod.vertex_group = group.name
        with context.temp_override(object=target, active_object=target):
            if len(target.modifiers) > 1:  # before any armature: it follows the face at rest
                bpy.ops.object.modifier_move_to_index(modifier=mod.name, index=0)
            bound = _bind_at_rest(source, target, mod)
        if not bound:
            target.modifiers.remove(mod)
            target.vertex_groups.remove(group)
            raise refuse(f"Blender's Surface Deform could not bind '{target.name}' to '{source.name}' "
                         "(it refuses target vertices lying exactly on source vertices, and concave or overlapping "
                         "source faces); use Bake instead.")
        _remove_surface_deform(target, keep=mod)
        _remove_transferred_keys(target)
        group.name, mod.name = FOLLOW_GROUP, SURFACE_DEFORM
        mod.vertex_group = group.name  # a string: follows no rename
        target["wav2sem_retarget_source"] = source.name
        return (f"'{target.name}' follows '{source.name}' live through the '{mod.name}' modifier "
                f"({following} of {len(weights)} vertices)")


def _transferable_keys(source: bpy.types.Object) -> list:
    """The add-on's own shape keys of the source (W2S ...), else all its relative keys."""
    key = source.data.shape_keys
    if key is None or len(key.key_blocks) < 2:
        cache = any(m.type == "MESH_CACHE" for m in source.modifiers)
        hint = "use Live for a point cache" if cache else "generate lip sync on it first"
        raise refuse(f"The source '{source.name}' has no shape keys to bake; {hint}.")
    if not key.use_relative:
        raise refuse(f"The source '{source.name}' has absolute shape keys (one per frame); use Live instead.")
    blocks = [kb for kb in key.key_blocks if kb != key.reference_key]
    own = [kb for kb in blocks if kb.name.startswith(PREFIX)]
    return own or blocks


def _check_surface_deform(source: bpy.types.Object) -> None:
    if len(source.data.polygons) == 0:
        raise refuse(f"The source '{source.name}' has no faces for Surface Deform to follow.")


def _remove_surface_deform(ob: bpy.types.Object, keep=None) -> None:
    """Remove what an earlier LIVE transfer put on ``ob`` (its modifier and weight group)."""
    for mod in [m for m in ob.modifiers if m.name.startswith(PREFIX) and m.type == "SURFACE_DEFORM" and m != keep]:
        ob.modifiers.remove(mod)
    group = ob.vertex_groups.get(FOLLOW_GROUP)
    if group is not None and (keep is None or keep.vertex_group != group.name):
        ob.vertex_groups.remove(group)


def _remove_transferred_keys(ob: bpy.types.Object) -> None:
    """Remove the shape keys (and their F-curves) an earlier BAKE put on ``ob``."""
    key = ob.data.shape_keys
    names = set(ob.get(TRANSFERRED, []))
    if key is None or not names:
        return
    fcurves = fcurves_of(key, create=False)
    if fcurves is not None:
        for fc in list(fcurves):
            m = _KEY_PATH.match(fc.data_path)
            if m and m.group(1) in names:
                fcurves.remove(fc)
    for kb in [kb for kb in key.key_blocks if kb.name in names]:
        ob.shape_key_remove(kb)
    del ob[TRANSFERRED]


def _bind_at_rest(source: bpy.types.Object, target: bpy.types.Object, mod) -> bool:
    """Bind Surface Deform while both meshes show their rest shape (basis key, no point cache)."""
    saved = [(ob, ob.show_only_shape_key, ob.active_shape_key_index) for ob in (source, target)]
    caches = [m for m in source.modifiers if m.type == "MESH_CACHE" and m.show_viewport]
    try:
        for ob in (source, target):
            if ob.data.shape_keys is not None:
                ob.active_shape_key_index = 0
                ob.show_only_shape_key = True
        for m in caches:
            m.show_viewport = False
        bpy.context.view_layer.update()
        bpy.ops.object.surfacedeform_bind(modifier=mod.name)
        bpy.context.view_layer.update()
    finally:
        for ob, only, index in saved:
            ob.show_only_shape_key, ob.active_shape_key_index = only, index
        for m in caches:
            m.show_viewport = True
    return bool(mod.is_bound)


class WAV2SEM_OT_solve_shape_keys(_RetargetOperator, bpy.types.Operator):
    """Animate the target's own shape keys so they best reproduce the source's motion, frame by frame"""

    bl_idname = "wav2sem.solve_shape_keys"
    bl_label = "Solve Shape Keys"

    source: StringProperty(name="Source", description="The animated head", options={"SKIP_SAVE"})
    target: StringProperty(name="Target", description="The rig whose shape keys to animate", options={"SKIP_SAVE"})
    keys: StringProperty(name="Keys", description="Target keys to use, comma separated (empty: all but the basis)",
                         options={"SKIP_SAVE"})
    smooth: FloatProperty(name="Smoothness", default=0.01, min=0.0, soft_max=10.0, options={"SKIP_SAVE"},
                          description="Temporal smoothing of the weights")
    max_distance: FloatProperty(name="Max Distance", min=0.0, subtype="DISTANCE", unit="LENGTH",
                                description="Source vertices farther from the target do not count (0: automatic)",
                                options={"SKIP_SAVE"})
    falloff: FloatProperty(name="Falloff", min=0.0, subtype="DISTANCE", unit="LENGTH", options={"SKIP_SAVE"},
                           description="Fade-out beyond Max Distance (0: as much as Max Distance)")
    frame_start: IntProperty(name="Start", description="First frame (default: the source's animated range)",
                             options={"SKIP_SAVE"})
    frame_end: IntProperty(name="End", description="Last frame (default: the source's animated range)",
                           options={"SKIP_SAVE"})

    def run(self, context) -> str:
        source, target = self.source_target(context)
        _editable(target)
        _, curves = _animated_range(source, "source")
        frames = _frames(self, curves)
        names = self.target_keys(target)
        blocks = [target.data.shape_keys.key_blocks[n] for n in names]
        source_world = _world(source, _rest(source))
        max_distance, falloff = _auto_distances(self, source_world)
        try:  # the source's vertices onto the target's surface: target keys seen at the source vertices
            binding = bind(_world(target, _rest(target)), _triangles(target), source_world,
                           max_distance=max_distance, falloff=falloff)
        except RetargetError as exc:
            raise refuse(str(exc)) from None
        to_source = np.linalg.solve(_linear(source), _linear(target))  # L_s^-1 L_t
        basis = binding.transfer(_key_deltas(target, blocks) @ to_source.T.astype(np.float32))
        reach = np.sqrt(((basis.astype(np.float64) ** 2).sum(-1) * binding.weights).sum(-1))
        live = reach > 1e-9 * max(float(reach.max()), 1e-300)
        skipped = [n for n, ok in zip(names, live, strict=True) if not ok]
        if not live.any():
            raise refuse(f"None of the keys of '{target.name}' moves the part of it that overlaps '{source.name}'.")
        names, basis = [n for n, ok in zip(names, live, strict=True) if ok], basis[live]
        offsets = _animated_offsets(source, frames)
        try:
            result = solve_weights(basis, offsets, smooth=self.arg("smooth"), vertex_weights=binding.weights)
        except RetargetError as exc:
            raise refuse(str(exc)) from None
        fps = scene_fps(context.scene)
        write_controls(target, np.asarray(result.weights), names, fps, float(frames[0]), fps)
        scale = _scale(source)  # source object units -> world units
        error = np.asarray(result.error, dtype=np.float64) * scale
        worst = int(np.argmax(error))
        target[SOLVE_ERROR] = error.tolist()
        target[SOLVE_FIRST_FRAME] = int(frames[0])
        return (f"Solved {len(names)} shape keys of '{target.name}' over frames {int(frames[0])}-{int(frames[-1])}: "
                f"fit error {_length(context, float(result.rms) * scale)} rms, worst frame {int(frames[worst])} "
                f"({_length(context, float(error[worst]))})"
                + (f"; skipped (they move nothing near the source): {', '.join(skipped)}" if skipped else ""))

    def target_keys(self, target: bpy.types.Object) -> list[str]:
        key = target.data.shape_keys
        if key is None or len(key.key_blocks) < 2:
            raise refuse(f"The target '{target.name}' has no shape keys to solve for.")
        wanted = [n.strip() for n in self.arg("keys").split(",") if n.strip()]
        if wanted:
            missing = [n for n in wanted if n not in key.key_blocks]
            if missing:
                raise refuse(f"The target '{target.name}' has no shape keys called {', '.join(missing)}.")
            if key.reference_key.name in wanted:
                raise refuse(f"'{key.reference_key.name}' is the basis of '{target.name}' and cannot be solved for.")
            return list(dict.fromkeys(wanted))
        names = [kb.name for kb in key.key_blocks if kb != key.reference_key and not kb.name.startswith(PREFIX)]
        if not names:
            raise refuse(f"The target '{target.name}' has no shape keys of its own to solve for.")
        return names


class WAV2SEM_OT_map_controls(_RetargetOperator, bpy.types.Operator):
    """Drive the target rig's shape keys from the lip sync control curves through a mapping table"""

    bl_idname = "wav2sem.map_controls"
    bl_label = "Map Controls"

    source: StringProperty(name="Source", description="The object whose shape keys carry the control curves "
                           "(default: the target itself)", options={"SKIP_SAVE"})
    target: StringProperty(name="Target", description="The rig to drive", options={"SKIP_SAVE"})
    mapping_text: StringProperty(name="Mapping", description="A text block name or inline 'jawOpen = aa * 0.8' "
                                 "lines (empty: by name)", options={"SKIP_SAVE"})
    preset: EnumProperty(name="Preset", items=MAPPING_PRESETS, default="NAME", options={"SKIP_SAVE"},
                         description="Mapping used when no mapping text is given")
    smoothing: FloatProperty(name="Smoothing", min=0.0, soft_max=0.2, options={"SKIP_SAVE"},
                             description="Smoothing of the mapped curves, in seconds")

    def arg(self, name: str):
        return self.preset if name == "preset" else super().arg(name)

    def run(self, context) -> str:
        target = _object(self.arg("target"), "target", fallback=context.active_object)
        _editable(target)
        source = _object(self.arg("source"), "source") if self.arg("source") else target
        curves = _control_curves(source)
        if not curves and source != target and not self.properties.is_property_set("source"):
            source, curves = target, _control_curves(target)  # the panel's Source has none: the rig's own
        if not curves:
            raise refuse(f"'{source.name}' has no control curves (jawOpen, mouthClose, ...) on its shape keys.")
        names = [n for n in controls.CONTROLS if n in curves]
        mapping = self.mapping()
        if source == target and mapping is None:
            raise refuse(f"The controls of '{target.name}' already drive its keys of the same names; "
                         "give a mapping or a different source.")
        target_key = target.data.shape_keys
        target_names = [kb.name for kb in target_key.key_blocks if kb != target_key.reference_key] \
            if target_key is not None else []
        if not target_names:
            raise refuse(f"The target '{target.name}' has no shape keys to drive.")
        lo, hi = _curve_range(curves.values())
        frames = np.arange(lo, hi + 1, dtype=np.float64)
        weights = np.stack([_evaluate(curves[n], frames) for n in names], axis=1)
        fps = scene_fps(context.scene)
        try:
            mapped = map_controls(weights, names, mapping, target_names, smoothing=self.arg("smoothing"), fps=fps)
        except RetargetError as exc:
            raise refuse(str(exc)) from None
        out_names = [str(n) for n in mapped.names]
        if not any(n in target_names for n in out_names):
            raise refuse(f"None of the mapped keys ({', '.join(out_names[:4]) or 'none'}) exist on '{target.name}'.")
        info = write_controls(target, np.asarray(mapped.weights), out_names, fps, float(frames[0]), fps)
        missing = list(dict.fromkeys([*mapped.missing, *info["missing"]]))
        unknown = list(dict.fromkeys(getattr(mapped, "unknown", [])))
        keys = "1 shape key" if info["keys"] == 1 else f"{info['keys']} shape keys"
        text = f"Mapped {len(names)} controls of '{source.name}' onto {keys} of '{target.name}'"
        if missing:
            text += f"; no key on the rig for: {', '.join(missing)}"
        if unknown:
            text += f"; names in the mapping found nowhere: {', '.join(unknown)}"
        return text

    def mapping(self):
        text = self.arg("mapping_text").strip()
        if not text:
            return dict(ARKIT_TO_VISEMES) if self.arg("preset") == "VISEMES" else None
        block = bpy.data.texts.get(text)
        if block is not None:
            text = block.as_string()
        elif "=" not in text:
            raise refuse(f"There is no text block called '{text}', and it is not a mapping line like 'jawOpen = aa'.")
        try:
            return parse_mapping(text.replace(";", "\n"))
        except RetargetError as exc:
            raise refuse(str(exc)) from None


class WAV2SEM_OT_jaw_bone(_RetargetOperator, bpy.types.Operator):
    """Key a jaw bone's rotation from the source's jawOpen curve or from its chin motion"""

    bl_idname = "wav2sem.jaw_bone"
    bl_label = "Animate Jaw Bone"

    armature: StringProperty(name="Armature", options={"SKIP_SAVE"})
    bone: StringProperty(name="Jaw Bone", options={"SKIP_SAVE"})
    source: StringProperty(name="Source", description="The head with jawOpen or FLAME motion (default: the "
                           "Retarget source, else the lip sync target)", options={"SKIP_SAVE"})
    axis: EnumProperty(name="Axis", items=JAW_AXES, default="X", options={"SKIP_SAVE"})
    max_angle: FloatProperty(name="Max Angle", default=math.radians(20), min=-math.pi, max=math.pi,
                             subtype="ANGLE", options={"SKIP_SAVE"}, description="Rotation at jawOpen = 1")

    def run(self, context) -> str:
        active = context.active_object if context.active_object and context.active_object.type == "ARMATURE" \
            else None
        arm = _object(self.arg("armature"), "armature", kind="ARMATURE", fallback=active)
        if arm.library is not None:
            raise refuse(f"'{arm.name}' is linked from another .blend and cannot be animated here.")
        bone = self.arg("bone")
        if not bone:
            raise refuse(f"No jaw bone is chosen; pass bone=... with a bone of '{arm.name}'.")
        pb = arm.pose.bones.get(bone)
        if pb is None:
            raise refuse(f"The armature '{arm.name}' has no bone called '{bone}'.")
        source = _object(self.arg("source"), "source", fallback=context.scene.wav2sem.target)
        frames, jaw_open, what = self.jaw_open(source)
        axis = self.arg("axis")
        sign = -1.0 if axis.startswith("-") else 1.0
        angle = float(self.arg("max_angle"))
        try:
            angles = sign * math.copysign(1.0, angle) * np.asarray(
                jaw_angles(jaw_open, max_angle_radians=abs(angle)), dtype=np.float64)
        except RetargetError as exc:
            raise refuse(str(exc)) from None
        n_curves = _key_bone_rotation(arm, pb, "XYZ".index(axis[-1]), frames, angles)
        curves = "1 curve" if n_curves == 1 else f"{n_curves} curves"
        return (f"Keyed the rotation of '{bone}' ({curves}) on {len(frames)} frames from {what} "
                f"of '{source.name}' (up to {math.degrees(float(np.abs(angles).max())):.1f} degrees)")

    def jaw_open(self, source: bpy.types.Object) -> tuple[np.ndarray, np.ndarray, str]:
        key = source.data.shape_keys
        fc = _key_fcurves(key).get("jawOpen")
        if fc is not None and len(fc.keyframe_points):
            lo, hi = _curve_range([fc])
            frames = np.arange(lo, hi + 1, dtype=np.float64)
            return frames, _evaluate(fc, frames), "jawOpen"
        chin = _landmark_vertex(source, "chin")
        if chin is None:
            raise refuse(f"'{source.name}' has no animated jawOpen key and no chin landmark (a W2S chin vertex "
                         "group, or FLAME topology).")
        _, curves = _animated_range(source, "source")
        lo, hi = _curve_range(curves.values())
        frames = np.arange(lo, hi + 1, dtype=np.float64)
        rest = _rest(source)
        try:
            mouth = articulation.mouth_frame(rest, landmarks_of(source, rest, LANDMARKS))
        except articulation.RigError as exc:
            raise refuse(f"The mouth landmarks of '{source.name}' do not make sense: {exc}.") from None
        lip = _landmark_vertex(source, "lip_upper")
        # jawOpen = 1 is the chin drop the articulation rig's jawOpen key gives this head
        rig_jaw = articulation.control_deltas(rest, mouth)["jawOpen"]
        drop = -float((rig_jaw[chin] - (rig_jaw[lip] if lip is not None else 0.0)) @ mouth.up)
        full_open = drop if drop > 1e-3 * mouth.width else JAW_FULL_OPEN * mouth.width
        try:
            jaw = jaw_open_from_offsets(_animated_offsets(source, frames), chin, lip, mouth.up, full_open)
        except RetargetError as exc:
            raise refuse(str(exc)) from None
        return frames, np.asarray(jaw, dtype=np.float64), "the chin motion"


def _key_bone_rotation(arm, pb, axis: int, frames: np.ndarray, angles: np.ndarray) -> int:
    """Rotation curves of pose bone ``pb``: its current rotation, then ``angles`` about a local axis."""
    base = f'pose.bones["{bpy.utils.escape_identifier(pb.name)}"]'
    fcurves = fcurves_of(arm, action_name=f"{PREFIX}{arm.name} Jaw")
    mode = pb.rotation_mode
    if mode in ("QUATERNION", "AXIS_ANGLE"):
        if mode == "QUATERNION":
            q0 = np.array(pb.rotation_quaternion, dtype=np.float64)
        else:
            from mathutils import Quaternion, Vector

            a0 = pb.rotation_axis_angle
            q0 = np.array(Quaternion(Vector(a0[1:]), a0[0]), dtype=np.float64)
        turn = np.zeros((len(angles), 4))
        turn[:, 0], turn[:, 1 + axis] = np.cos(angles / 2), np.sin(angles / 2)
        q = _quat_mul(q0, turn)
        if mode == "QUATERNION":
            values, path = q, base + ".rotation_quaternion"
        else:
            w = np.clip(q[:, 0], -1.0, 1.0)
            half = np.sqrt(np.maximum(1.0 - w * w, 0.0))
            axes = np.where(half[:, None] > 1e-9, q[:, 1:] / np.maximum(half, 1e-12)[:, None], np.eye(3)[axis])
            values, path = np.column_stack([2 * np.arccos(w), axes]), base + ".rotation_axis_angle"
        for i in range(4):
            add_fcurve(fcurves, path, frames, values[:, i], index=i)
        return 4
    add_fcurve(fcurves, base + ".rotation_euler", frames, pb.rotation_euler[axis] + angles, index=axis)
    return 1


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of one quaternion ``a`` (4,) with many ``b`` (T, 4), (w, x, y, z) order."""
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b.T
    return np.column_stack([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ])


classes = (
    WAV2SEM_OT_align_heads,
    WAV2SEM_OT_transfer_motion,
    WAV2SEM_OT_solve_shape_keys,
    WAV2SEM_OT_map_controls,
    WAV2SEM_OT_jaw_bone,
)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
