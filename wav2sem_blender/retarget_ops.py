"""Retargeting operators: put lip sync made on one head (FLAME, or any mesh with the add-on's
shape keys) onto a custom head or rig.

* ``wav2sem.align_heads``: moves the source object onto the target from corresponding landmarks.
* ``wav2sem.transfer_motion``: binds the target's vertices to the source surface; BAKE copies the
  source's shape keys (through the binding) and their F-curves, LIVE adds a Surface Deform modifier.
* ``wav2sem.solve_shape_keys``: fits the target's own shape keys to the source's motion, frame by frame.
* ``wav2sem.map_controls``: control curves (``jawOpen`` ...) onto a rig's keys through a mapping table.
* ``wav2sem.jaw_bone``: keys a jaw bone's rotation from jawOpen or from the source's chin motion.

Every operator checks everything first and changes nothing when it refuses (one plain sentence in
the report); a run is one undo step. The operators only route arguments and reports: the maths lives
in ``retarget/`` (numpy only), ``retarget_io`` reads Blender data into arrays and ``retarget_write``
puts the results back, both in bulk.
"""

from __future__ import annotations

import math

import bpy
import numpy as np
from bpy.props import EnumProperty, FloatProperty, IntProperty, StringProperty

from wav2sem_contract import articulation, controls
from wav2sem_contract.errors import Wav2SemError

from .compat import key_fcurves
from .eyes import find_eyes
from .landmarks import triangulate
from .properties import JAW_AXES, RETARGET_MODES
from .retarget.binding import bind
from .retarget.jaw import jaw_angles, jaw_open_from_offsets
from .retarget.mapping import ARKIT_TO_VISEMES, map_controls, parse_mapping
from .retarget.solve import solve_weights
from .retarget.transform import RetargetError, similarity_from_landmarks
from .retarget_io import (
    animated_keys,
    animated_offsets,
    check_distinct,
    check_editable,
    check_surface_deform,
    control_curves,
    curve_range,
    evaluate,
    find_object,
    key_deltas,
    landmark_vertex,
    refuse,
    rest_of,
    to_world,
    transferable_keys,
    triangles_of,
    vertex_mask,
    world_linear,
    world_scale,
)
from .retarget_write import (
    FOLLOW_GROUP,
    SURFACE_DEFORM,
    TRANSFERRED,
    bake_shape_keys,
    follow_live,
    key_bone_rotation,
)
from .rig import LANDMARKS, landmarks_of, mesh_faces, take_found_note
from .writers import PREFIX
from .writers.common import scene_fps
from .writers.controls import write_controls

__all__ = [  # FOLLOW_GROUP, SURFACE_DEFORM, TRANSFERRED: where they were before the split
    "FOLLOW_GROUP",
    "SOLVE_ERROR",
    "SOLVE_FIRST_FRAME",
    "SURFACE_DEFORM",
    "TRANSFERRED",
    "WAV2SEM_OT_align_heads",
    "WAV2SEM_OT_jaw_bone",
    "WAV2SEM_OT_map_controls",
    "WAV2SEM_OT_solve_shape_keys",
    "WAV2SEM_OT_transfer_motion",
    "register",
    "unregister",
]

ALIGN_OPTIONAL = ("nose_tip", "eye_L", "eye_R")
SOLVE_ERROR = "wav2sem_solve_error"  # per-frame fit error of the last solve (world units)
SOLVE_FIRST_FRAME = "wav2sem_solve_first_frame"
AUTO_DISTANCE = 0.02  # automatic max distance: this fraction of the source's bounding-box diagonal
JAW_FULL_OPEN = 0.3  # fallback chin drop (in mouth widths) that counts as jawOpen = 1
MAPPING_PRESETS = [
    ("NAME", "By Name", "Each control drives the target key of the same name (or the mapping text)"),
    ("VISEMES", "ARKit to Visemes", "The built-in table from ARKit mouth controls to viseme keys (aa, oh, ...)"),
]


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
        source = find_object(self.arg("source"), "source")
        target = find_object(self.arg("target"), "target", fallback=context.active_object)
        check_distinct(source, target, shared_data)
        return source, target

    def frames(self, curves: dict[str, bpy.types.FCurve]) -> np.ndarray:
        """The frames to read: Start/End when given, else the curves' keyed range."""
        lo, hi = curve_range(curves.values())
        first = self.frame_start if self.properties.is_property_set("frame_start") else lo
        last = self.frame_end if self.properties.is_property_set("frame_end") else hi
        if last < first:
            raise refuse(f"The frame range {first}-{last} is empty.")
        return np.arange(first, last + 1, dtype=np.float64)

    def distances(self, source_world: np.ndarray) -> tuple[float, float]:
        """Max Distance and Falloff, with 0 read as a size relative to the source head."""
        size = float(np.linalg.norm(np.ptp(source_world, axis=0)))
        max_distance = self.arg("max_distance") or AUTO_DISTANCE * size
        falloff = self.arg("falloff") or max_distance
        return max_distance, falloff


def _align_landmarks(ob: bpy.types.Object, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Landmarks to align ``ob`` on: its W2S groups, FLAME's, or the mouth found on its geometry; and the
    eye centres from its eyeballs (``eyes.py``) where no ``W2S eye_L``/``eye_R`` group gives them."""
    rest = rest_of(ob)
    found = landmarks_of(ob, rest, names, detect=True)
    if "eye_L" in found and "eye_R" in found:
        return found
    try:
        frame = articulation.mouth_frame(rest, found)
    except articulation.RigError:
        return found  # the fit says what is wrong with these landmarks
    flat, sizes = mesh_faces(ob)
    eyes = find_eyes(rest, triangulate(flat, sizes), frame).eyes
    if eyes is not None and eyes.found:
        found = {"eye_L": eyes.left, "eye_R": eyes.right, **found}
    return found


class WAV2SEM_OT_align_heads(_RetargetOperator, bpy.types.Operator):
    """Move the source head onto the target from their landmarks (W2S vertex groups, FLAME's, or found)"""

    bl_idname = "wav2sem.align_heads"
    bl_label = "Align Heads"

    source: StringProperty(name="Source", description="The head to move", options={"SKIP_SAVE"})
    target: StringProperty(name="Target", description="The head to align to", options={"SKIP_SAVE"})

    def run(self, context) -> str:
        source, target = self.source_target(context, shared_data=True)  # linked duplicates may be aligned
        if source.library is not None:
            raise refuse(f"'{source.name}' is linked from another .blend and cannot be moved here.")
        names = LANDMARKS + ALIGN_OPTIONAL
        src, dst = _align_landmarks(source, names), _align_landmarks(target, names)
        common = [n for n in names if n in src and n in dst]
        try:
            fit = similarity_from_landmarks(to_world(source, np.array([src[n] for n in common])),
                                            to_world(target, np.array([dst[n] for n in common])))
        except RetargetError as exc:
            raise refuse(str(exc)) from None
        if not (np.isfinite(fit.matrix()).all() and fit.scale > 0):
            raise refuse("The landmarks give no usable alignment; check the W2S vertex groups.")
        from mathutils import Matrix

        source.matrix_world = Matrix(fit.matrix().tolist()) @ source.matrix_world
        source["wav2sem_align_rms"] = fit.rms
        found = "".join(f"; '{ob.name}': {note}" for ob in (source, target) for note in take_found_note(ob))
        return (f"Aligned '{source.name}' to '{target.name}' on {len(common)} landmarks ({', '.join(common)}): "
                f"scale {fit.scale:.4g}, landmark error {_length(context, fit.rms)} (rms){found}")


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
        check_editable(target)
        mode = self.arg("mode")
        mask = vertex_mask(target, self.arg("vertex_group"))
        blocks = transferable_keys(source) if mode == "BAKE" else None
        source_world = to_world(source, rest_of(source))
        max_distance, falloff = self.distances(source_world)
        try:
            binding = bind(source_world, triangles_of(source), to_world(target, rest_of(target)),
                           max_distance=max_distance, falloff=falloff, mask=mask)
        except RetargetError as exc:
            raise refuse(str(exc)) from None
        following = int((binding.weights > 0).sum())
        if following == 0:
            raise refuse(f"No vertex of '{target.name}' lies near '{source.name}'; align the heads first.")
        if mode == "LIVE":
            check_surface_deform(source)
            return self.live(context, source, target, binding.weights, following)
        return self.bake(source, target, blocks, binding, following)

    def bake(self, source, target, blocks, binding, following) -> str:
        # source object space -> world -> target object space (rotation and scale; no translation)
        to_target = np.linalg.solve(world_linear(target), world_linear(source))  # L_t^-1 L_s
        moved = binding.transfer(key_deltas(source, blocks) @ to_target.T.astype(np.float32))  # (K, Vt, 3)
        n_curves = bake_shape_keys(source, target, blocks, moved)
        return (f"Baked {len(blocks)} shape keys and {n_curves} F-curves from '{source.name}' onto "
                f"'{target.name}' ({following} of {len(binding.weights)} vertices follow)")

    def live(self, context, source, target, weights, following) -> str:
        mod = follow_live(context, source, target, weights)
        return (f"'{target.name}' follows '{source.name}' live through the '{mod.name}' modifier "
                f"({following} of {len(weights)} vertices)")


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
        check_editable(target)
        _, curves = animated_keys(source, "source")
        frames = self.frames(curves)
        names = self.target_keys(target)
        blocks = [target.data.shape_keys.key_blocks[n] for n in names]
        source_world = to_world(source, rest_of(source))
        max_distance, falloff = self.distances(source_world)
        try:  # the source's vertices onto the target's surface: target keys seen at the source vertices
            binding = bind(to_world(target, rest_of(target)), triangles_of(target), source_world,
                           max_distance=max_distance, falloff=falloff)
        except RetargetError as exc:
            raise refuse(str(exc)) from None
        to_source = np.linalg.solve(world_linear(source), world_linear(target))  # L_s^-1 L_t
        basis = binding.transfer(key_deltas(target, blocks) @ to_source.T.astype(np.float32))
        reach = np.sqrt(((basis.astype(np.float64) ** 2).sum(-1) * binding.weights).sum(-1))
        live = reach > 1e-9 * max(float(reach.max()), 1e-300)
        skipped = [n for n, ok in zip(names, live, strict=True) if not ok]
        if not live.any():
            raise refuse(f"None of the keys of '{target.name}' moves the part of it that overlaps '{source.name}'.")
        names, basis = [n for n, ok in zip(names, live, strict=True) if ok], basis[live]
        offsets = animated_offsets(source, frames)
        try:
            result = solve_weights(basis, offsets, smooth=self.arg("smooth"), vertex_weights=binding.weights)
        except RetargetError as exc:
            raise refuse(str(exc)) from None
        fps = scene_fps(context.scene)
        write_controls(target, np.asarray(result.weights), names, fps, float(frames[0]), fps)
        scale = world_scale(source)  # source object units -> world units
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
        target = find_object(self.arg("target"), "target", fallback=context.active_object)
        check_editable(target)
        source = find_object(self.arg("source"), "source") if self.arg("source") else target
        curves = control_curves(source)
        if not curves and source != target and not self.properties.is_property_set("source"):
            source, curves = target, control_curves(target)  # the panel's Source has none: the rig's own
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
        lo, hi = curve_range(curves.values())
        frames = np.arange(lo, hi + 1, dtype=np.float64)
        weights = np.stack([evaluate(curves[n], frames) for n in names], axis=1)
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
        arm = find_object(self.arg("armature"), "armature", kind="ARMATURE", fallback=active)
        if arm.library is not None:
            raise refuse(f"'{arm.name}' is linked from another .blend and cannot be animated here.")
        bone = self.arg("bone")
        if not bone:
            raise refuse(f"No jaw bone is chosen; pass bone=... with a bone of '{arm.name}'.")
        pb = arm.pose.bones.get(bone)
        if pb is None:
            raise refuse(f"The armature '{arm.name}' has no bone called '{bone}'.")
        source = find_object(self.arg("source"), "source", fallback=context.scene.wav2sem.target)
        frames, jaw_open, what = self.jaw_open(source)
        axis = self.arg("axis")
        sign = -1.0 if axis.startswith("-") else 1.0
        angle = float(self.arg("max_angle"))
        try:
            angles = sign * math.copysign(1.0, angle) * np.asarray(
                jaw_angles(jaw_open, max_angle_radians=abs(angle)), dtype=np.float64)
        except RetargetError as exc:
            raise refuse(str(exc)) from None
        n_curves = key_bone_rotation(arm, pb, "XYZ".index(axis[-1]), frames, angles)
        curves = "1 curve" if n_curves == 1 else f"{n_curves} curves"
        return (f"Keyed the rotation of '{bone}' ({curves}) on {len(frames)} frames from {what} "
                f"of '{source.name}' (up to {math.degrees(float(np.abs(angles).max())):.1f} degrees)")

    def jaw_open(self, source: bpy.types.Object) -> tuple[np.ndarray, np.ndarray, str]:
        key = source.data.shape_keys
        fc = key_fcurves(key).get("jawOpen")
        if fc is not None and len(fc.keyframe_points):
            lo, hi = curve_range([fc])
            frames = np.arange(lo, hi + 1, dtype=np.float64)
            return frames, evaluate(fc, frames), "jawOpen"
        chin = landmark_vertex(source, "chin")
        if chin is None:
            raise refuse(f"'{source.name}' has no animated jawOpen key and no chin landmark (a W2S chin vertex "
                         "group, or FLAME topology).")
        _, curves = animated_keys(source, "source")
        lo, hi = curve_range(curves.values())
        frames = np.arange(lo, hi + 1, dtype=np.float64)
        rest = rest_of(source)
        try:
            mouth = articulation.mouth_frame(rest, landmarks_of(source, rest, LANDMARKS))
        except articulation.RigError as exc:
            raise refuse(f"The mouth landmarks of '{source.name}' do not make sense: {exc}.") from None
        lip = landmark_vertex(source, "lip_upper")
        # jawOpen = 1 is the chin drop the articulation rig's jawOpen key gives this head
        rig_jaw = articulation.control_deltas(rest, mouth)["jawOpen"]
        drop = -float((rig_jaw[chin] - (rig_jaw[lip] if lip is not None else 0.0)) @ mouth.up)
        full_open = drop if drop > 1e-3 * mouth.width else JAW_FULL_OPEN * mouth.width
        try:
            jaw = jaw_open_from_offsets(animated_offsets(source, frames), chin, lip, mouth.up, full_open)
        except RetargetError as exc:
            raise refuse(str(exc)) from None
        return frames, np.asarray(jaw, dtype=np.float64), "the chin motion"


classes = (
    WAV2SEM_OT_align_heads,
    WAV2SEM_OT_transfer_motion,
    WAV2SEM_OT_solve_shape_keys,
    WAV2SEM_OT_map_controls,
    WAV2SEM_OT_jaw_bone,
)

register, unregister = bpy.utils.register_classes_factory(classes)
