"""The performance layer's head motion on a rigged head: the head bone turns, not the object.

Real Blender: an armature (spine, neck, a rolled ``DEF-head`` bone whose axes differ from the
object's, and a ``HeadTop_End`` tip) deforming a mesh, and a result carrying known head angles. The
evaluated mesh must turn about the head bone exactly as the angles say, about the head object's axes.
"""

from __future__ import annotations

import bpy  # noqa: I001
import numpy as np
import pytest
from mathutils import Euler, Matrix

from tests import blender_env as be
from wav2sem_blender import performance as writer
from wav2sem_blender.head_bone import find_head_bone
from wav2sem_blender.writers.base import Timing
from wav2sem_contract import performance as names
from wav2sem_contract.result import InferResult

T = 40


def rigged_head(rotation_mode: str = "QUATERNION") -> tuple[bpy.types.Object, bpy.types.Object]:
    be.reset(30)
    arm = bpy.data.objects.new("Rig", bpy.data.armatures.new("Rig"))
    bpy.context.scene.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    bones = arm.data.edit_bones
    spine = bones.new("spine")
    spine.head, spine.tail = (0, 0, -0.5), (0, 0, -0.2)
    neck = bones.new("neck")
    neck.head, neck.tail, neck.parent = (0, 0, -0.2), (0, 0.02, -0.1), spine
    head = bones.new("DEF-head")
    head.head, head.tail, head.parent, head.roll = (0, 0.02, -0.1), (0.01, 0.03, 0.12), neck, 0.7
    top = bones.new("HeadTop_End")
    top.head, top.tail, top.parent = (0.01, 0.03, 0.12), (0.01, 0.03, 0.2), head
    bpy.ops.object.mode_set(mode="OBJECT")
    arm.pose.bones["DEF-head"].rotation_mode = rotation_mode
    ob = be.make_head(n=5000)
    group = ob.vertex_groups.new(name="DEF-head")
    group.add(list(range(len(ob.data.vertices))), 1.0, "REPLACE")
    ob.modifiers.new("Armature", "ARMATURE").object = arm
    return arm, ob


def result(angles: np.ndarray) -> InferResult:
    weights = np.zeros((len(angles), len(names.PERFORMANCE_CONTROLS)), np.float32)
    return InferResult("controls", 30.0, {"weights": np.zeros((len(angles), 1), np.float32), "names": np.array(["x"]),
                                          names.WEIGHTS: weights, names.NAMES: np.array(names.PERFORMANCE_CONTROLS),
                                          names.HEAD: angles.astype(np.float32)})


def angles() -> np.ndarray:
    t = np.arange(T) / 30.0
    return np.stack([0.15 * np.sin(4 * t), 0.08 * np.sin(7 * t + 1), -0.2 * np.sin(3 * t + 2)], 1)


def evaluated(ob) -> np.ndarray:
    mesh = ob.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    out = np.array([v.co for v in mesh.vertices])
    ob.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh_clear()
    return out


@pytest.mark.parametrize("mode", ["QUATERNION", "YXZ"])
def test_the_head_bone_turns_the_head_by_the_layers_angles(mode):
    arm, ob = rigged_head(mode)
    assert find_head_bone(ob)[1].name == "DEF-head"  # not the tip, not the neck
    rest = np.array([v.co for v in ob.data.vertices])
    pivot = np.array(arm.data.bones["DEF-head"].head_local)
    a = angles()
    notes = writer.write(ob, result(a), Timing(30.0, 1, 30.0))
    assert notes[0].startswith("performance layer: head motion on the bone 'DEF-head' of 'Rig'")
    tracks = arm.animation_data.nla_tracks
    assert [t.name for t in tracks] == ["W2S Head Motion Rest", "W2S Head Motion"]
    assert {t.strips[0].blend_type for t in tracks} == {"COMBINE"}
    assert ob.animation_data is None or not ob.animation_data.nla_tracks  # the object stays where it is
    for f in (5, 17, 33):
        bpy.context.scene.frame_set(f)
        turn = np.array(Euler(a[f - 1].tolist(), "XYZ").to_matrix())
        np.testing.assert_allclose(evaluated(ob), pivot + (rest - pivot) @ turn.T, atol=2e-5)
        np.testing.assert_allclose(np.array(ob.delta_rotation_euler), 0.0)
    tracks["W2S Head Motion"].mute = True
    bpy.context.scene.frame_set(17)
    np.testing.assert_allclose(evaluated(ob), rest, atol=1e-6)
    writer.clear(ob)
    assert not arm.animation_data.nla_tracks
    assert not [x for x in bpy.data.actions if x.get(writer.OWN)]


def test_the_layer_adds_to_the_animators_own_head_turn():
    arm, ob = rigged_head()
    pose = arm.pose.bones["DEF-head"]
    own = Matrix.Rotation(0.3, 3, "Y").to_quaternion()  # the animator's tilt, on an NLA strip of their own
    pose.rotation_quaternion = own
    pose.keyframe_insert("rotation_quaternion", frame=1)
    action = arm.animation_data.action
    track = arm.animation_data.nla_tracks.new()
    track.strips.new("mine", 1, action)
    arm.animation_data.action = None
    pose.rotation_quaternion = (1, 0, 0, 0)
    a = angles()
    writer.write(ob, result(a), Timing(30.0, 1, 30.0))
    bpy.context.scene.frame_set(9)
    bpy.context.view_layer.update()
    ours = arm.animation_data.nla_tracks["W2S Head Motion"]
    with_layer = np.array(arm.pose.bones["DEF-head"].matrix.to_3x3())
    ours.mute = True
    bpy.context.view_layer.update()
    alone = np.array(arm.pose.bones["DEF-head"].matrix.to_3x3())
    rest = np.array(arm.data.bones["DEF-head"].matrix_local.to_3x3())
    np.testing.assert_allclose(alone, rest @ np.array(own.to_matrix()), atol=1e-5)  # theirs, untouched
    assert np.abs(with_layer - alone).max() > 0.01  # and ours on top of it
    writer.clear(ob)
    assert [t.name for t in arm.animation_data.nla_tracks] == [track.name]  # theirs stays
