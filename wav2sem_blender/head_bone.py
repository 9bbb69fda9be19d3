"""The performance layer's head motion on a rigged character's head bone.

A head deformed by an armature turns with its head bone, not with its object (turning the object
would turn the whole body bound to it). The head bone is found by name on the armature that deforms
the mesh (``Head``, ``head``, ``DEF-head``, ``mixamorig:Head``, ``CC_Base_Head``, ``J_Bip_C_Head``,
``c_head.x`` ...; not ``HeadTop_End`` and other tips), the deforming one nearest the root first.

The layer's angles are about the head object's own axes (nod about X, tilt about Y, turn about Z,
for a head facing -Y with Z up); here they become the bone's local rotation (the bone's rest
orientation differs from the object's axes on every rig), keyed on one NLA strip that *combines* with
what is below it, so the animator's own head animation in the NLA stays and the layer adds to it.
"""

from __future__ import annotations

import re

import bpy
import numpy as np
from mathutils import Euler, Matrix

HEAD = re.compile(r"(^|[^a-z])head($|[^a-z])", re.IGNORECASE)
TIP = re.compile(r"top|end|nub|tip|_end", re.IGNORECASE)


def find_head_bone(ob: bpy.types.Object) -> tuple[bpy.types.Object, bpy.types.PoseBone] | None:
    """(armature object, head pose bone) for a mesh an armature deforms, or None."""
    arm = ob.find_armature() if ob.type == "MESH" else None
    if arm is None or arm.pose is None:
        return None
    bones = [b for b in arm.data.bones if HEAD.search(b.name) and not TIP.search(b.name)]
    if not bones:
        return None
    best = min(bones, key=lambda b: (not b.use_deform, len(b.parent_recursive), b.name))
    return arm, arm.pose.bones[best.name]


def _rotation(m: Matrix) -> Matrix:
    return m.to_3x3().normalized()


def local_rotations(ob: bpy.types.Object, arm: bpy.types.Object, bone: bpy.types.PoseBone,
                    angles: np.ndarray) -> tuple[str, np.ndarray]:
    """The bone channel to key (``rotation_quaternion`` or ``rotation_euler``) and its values per frame
    ((T, 4) or (T, 3)) for ``angles`` (T, 3), XYZ Euler radians about ``ob``'s axes."""
    to_world = _rotation(ob.matrix_world)
    to_arm = _rotation(arm.matrix_world).inverted()
    rest = _rotation(bone.bone.matrix_local)  # the bone's rest orientation in armature space
    into_bone = rest.inverted() @ to_arm @ to_world
    out_of_bone = into_bone.inverted()
    if bone.rotation_mode == "AXIS_ANGLE":
        raise ValueError(f"the head bone '{bone.name}' rotates in axis-angle mode")
    quaternion = bone.rotation_mode == "QUATERNION"
    values, previous = [], None
    for a in angles:
        local = into_bone @ Euler(a.tolist(), "XYZ").to_matrix() @ out_of_bone
        if quaternion:
            q = local.to_quaternion()
            if previous is not None and q.dot(previous) < 0:  # stay on one side: no spin through 360
                q.negate()
            previous = q
            values.append(tuple(q))
        else:  # an Euler bone keeps its own axis order; compatible with the previous frame's angles
            e = local.to_euler(bone.rotation_mode, previous) if previous is not None else local.to_euler(
                bone.rotation_mode)
            previous = e
            values.append(tuple(e))
    return ("rotation_quaternion" if quaternion else "rotation_euler"), np.asarray(values, np.float64)


def rest_values(path: str) -> np.ndarray:
    """A bone channel's values at rest: the identity rotation."""
    return np.array([1.0, 0.0, 0.0, 0.0]) if path == "rotation_quaternion" else np.zeros(3)
