"""Control-weight results (T x K named controls) written onto a rig's own shape keys."""

from __future__ import annotations

import bpy  # noqa: I001
import numpy as np
import pytest

from tests import blender_env as be
from wav2sem_blender.compat import action_fcurves, fcurves_of
from wav2sem_blender.writers.controls import write_controls
from wav2sem_contract.errors import Wav2SemError


def rig_with_keys(names: list[str]) -> bpy.types.Object:
    ob = be.make_head(n=5000)
    ob.shape_key_add(name="Basis")
    for name in names:
        ob.shape_key_add(name=name, from_mix=False)
    return ob


def test_controls_drive_existing_keys_in_the_animators_action():
    be.reset(24)
    ob = rig_with_keys(["jawOpen", "mouthClose", "browInnerUp"])
    key = ob.data.shape_keys
    key.key_blocks["jawOpen"].value = 0.7
    key.key_blocks["jawOpen"].keyframe_insert("value", frame=1)
    key.key_blocks["browInnerUp"].value = 0.4
    key.key_blocks["browInnerUp"].keyframe_insert("value", frame=1)
    old_action = key.animation_data.action
    t = np.arange(60) / 30.0
    weights = np.stack([0.5 + 0.5 * np.sin(2 * np.pi * t), np.linspace(0, 1, 60), np.full(60, 0.3)], 1)
    info = write_controls(ob, weights.astype(np.float32), ["jawOpen", "mouthClose", "mouthFunnel"], 30.0, 1, 24.0)
    assert info["missing"] == ["mouthFunnel"] and info["keys"] == 2
    assert key.animation_data.action == old_action  # the animator's other curves keep playing
    assert {fc.data_path for fc in fcurves_of(key, create=False)} == {
        'key_blocks["jawOpen"].value', 'key_blocks["mouthClose"].value', 'key_blocks["browInnerUp"].value'}
    backup = bpy.data.actions[info["backup"]]
    assert info["replaced"] == ["jawOpen"] and backup.use_fake_user  # nothing lost
    for frame in (1, 5, 20, 40):
        bpy.context.scene.frame_set(frame)
        m = (frame - 1) * 30 / 24  # model frame at this scene frame
        i0, w = int(m), m - int(m)
        for k, name in enumerate(["jawOpen", "mouthClose"]):
            expected = (1 - w) * weights[i0, k] + w * weights[min(i0 + 1, 59), k]
            assert key.key_blocks[name].value == pytest.approx(expected, abs=1e-5)
    # the animator's curves are all still in the kept copy
    assert {fc.data_path for fc in action_fcurves(backup)} == {
        'key_blocks["jawOpen"].value', 'key_blocks["browInnerUp"].value'}


def test_controls_refuse_a_rig_without_any_matching_key():
    be.reset()
    ob = rig_with_keys(["Smile"])
    with pytest.raises(Wav2SemError) as err:
        write_controls(ob, np.zeros((10, 2), np.float32), ["jawOpen", "mouthClose"], 30.0, 1, 30.0)
    assert err.value.code == "no_matching_keys" and "jawOpen" in err.value.message
    assert ob.data.shape_keys.animation_data is None
