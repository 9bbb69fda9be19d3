"""Writing retargeting results into the scene: baked shape keys and their F-curves, the live Surface
Deform modifier, jaw-bone rotation curves, and removing what an earlier transfer left.

Callers check everything first (``retarget_io``); the functions here only change data, and leave
nothing half-made when Blender itself refuses (a Surface Deform that will not bind).
"""

from __future__ import annotations

import bpy
import numpy as np

from .compat import fcurves_of, key_fcurves
from .key_paths import key_name_of, key_path
from .retarget_io import refuse
from .writers import PREFIX, per_frame
from .writers.common import (
    add_fcurve,
    copy_fcurve,
    ensure_basis,
    new_shape_key,
    remove_shape_keys,
    rest_positions,
)

SURFACE_DEFORM = PREFIX + "Surface Deform"
FOLLOW_GROUP = PREFIX + "Retarget Weights"
TRANSFERRED = "wav2sem_transfer"  # names of the shape keys a BAKE transfer put on the target
RETARGET_SOURCE = "wav2sem_retarget_source"  # the source a transfer (either mode) came from


# -- BAKE ------------------------------------------------------------------------------------------
def bake_shape_keys(
    source: bpy.types.Object, target: bpy.types.Object, blocks: list[bpy.types.ShapeKey], moved: np.ndarray
) -> int:
    """Replace the target's own keys by copies of the source's ``blocks`` moved onto it (``moved``: (K, V, 3)
    target object-space deltas), with copies of their F-curves; returns how many F-curves were copied."""
    curves = key_fcurves(source.data.shape_keys)
    remove_surface_deform(target)
    # The per-frame writer's own clear also puts an absolute Key back to relative: the baked keys are relative.
    per_frame.clear(target)
    remove_shape_keys(target, lambda name: name.startswith(PREFIX))
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
    target[RETARGET_SOURCE] = source.name
    target.data.update()
    return n_curves


def remove_transferred_keys(ob: bpy.types.Object) -> None:
    """Remove the shape keys (and their F-curves) an earlier BAKE put on ``ob``."""
    key = ob.data.shape_keys
    names = set(ob.get(TRANSFERRED, []))
    if key is None or not names:
        return
    fcurves = fcurves_of(key, create=False)
    if fcurves is not None:
        for fc in list(fcurves):
            if key_name_of(fc.data_path) in names:
                fcurves.remove(fc)
    for kb in [kb for kb in key.key_blocks if kb.name in names]:
        ob.shape_key_remove(kb)
    del ob[TRANSFERRED]


# -- LIVE ------------------------------------------------------------------------------------------
def follow_live(
    context: bpy.types.Context, source: bpy.types.Object, target: bpy.types.Object, weights: np.ndarray
) -> bpy.types.Modifier:
    """A bound Surface Deform modifier on ``target`` following ``source``, the vertices weighted by
    ``weights`` (V,); an earlier transfer (either mode) is removed only once the new one is bound."""
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
    remove_surface_deform(target, keep=mod)
    remove_transferred_keys(target)
    group.name, mod.name = FOLLOW_GROUP, SURFACE_DEFORM
    mod.vertex_group = group.name  # a string: follows no rename
    target[RETARGET_SOURCE] = source.name
    return mod


def remove_surface_deform(ob: bpy.types.Object, keep: bpy.types.Modifier | None = None) -> None:
    """Remove what an earlier LIVE transfer put on ``ob`` (its modifier and weight group)."""
    for mod in [m for m in ob.modifiers if m.name.startswith(PREFIX) and m.type == "SURFACE_DEFORM" and m != keep]:
        ob.modifiers.remove(mod)
    group = ob.vertex_groups.get(FOLLOW_GROUP)
    if group is not None and (keep is None or keep.vertex_group != group.name):
        ob.vertex_groups.remove(group)


def _bind_at_rest(source: bpy.types.Object, target: bpy.types.Object, mod: bpy.types.Modifier) -> bool:
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


# -- jaw bone --------------------------------------------------------------------------------------
def key_bone_rotation(
    arm: bpy.types.Object, pb: bpy.types.PoseBone, axis: int, frames: np.ndarray, angles: np.ndarray
) -> int:
    """Rotation curves of pose bone ``pb``: its current rotation, then ``angles`` about a local axis;
    returns how many curves were keyed."""
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

