"""The procedural articulation rig: landmarks -> control shape keys, on the generated head and on FLAME."""

from __future__ import annotations

import bpy  # noqa: I001
import numpy as np
import pytest

from tests import blender_env as be
from tests.helpers import boundary_loops, read_ply, shared_fixture
from wav2sem_blender.head import head_geometry, make_head_object
from wav2sem_blender.rig import RIG_PROPERTY, add_articulation_rig, landmarks_of
from wav2sem_contract.articulation import FLAME_LANDMARKS, RigError, control_deltas, mouth_frame
from wav2sem_contract.controls import CONTROLS
from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.performance import PERFORMANCE_CONTROLS
from wav2sem_contract.upper_face import FACE_CONTROLS


def generated_head():
    verts, faces, groups = head_geometry()
    landmarks = {name.removeprefix("W2S "): verts[idx].mean(0) for name, idx in groups.items()}
    index = {name.removeprefix("W2S "): idx[0] for name, idx in groups.items()}
    return verts, landmarks, index


def flame_head():
    verts, faces = read_ply(shared_fixture("flame", "FLAME_sample.ply"))
    return verts, faces, {n: verts[i] for n, i in FLAME_LANDMARKS.items()}


def check_articulation(verts, landmarks, index):
    """The behaviour every rig must show, in the mouth's own frame."""
    frame = mouth_frame(verts, landmarks)
    deltas = control_deltas(verts, frame)
    assert set(deltas) == set(CONTROLS)
    w = frame.width

    def move(control, landmark):  # (lateral, up, forward) displacement of a landmark, in mouth widths
        return frame.local(frame.centre + deltas[control][index[landmark]][None])[0] / w

    chin, lower, upper = move("jawOpen", "chin"), move("jawOpen", "lip_lower"), move("jawOpen", "lip_upper")
    assert chin[1] < -0.25 and lower[1] < -0.2, (chin, lower)  # the jaw drops the chin and the lower lip
    assert abs(upper[1]) < 0.1 * abs(lower[1])  # and leaves the upper lip
    far = frame.local(verts)[:, 2] < frame.local(frame.pivot[None])[0, 2]  # behind the jaw pivot
    assert np.abs(deltas["jawOpen"][far]).max() < 1e-9
    for name, d in deltas.items():
        assert np.abs(d[far]).max() < 0.02 * w, name  # nothing moves the back of the head
    # closing brings the lips together, opening the lower lip parts them
    assert move("mouthClose", "lip_upper")[1] < 0 < move("mouthClose", "lip_lower")[1]
    assert move("mouthLowerDown_L", "lip_lower")[1] < 0 and move("mouthUpperUp_R", "lip_upper")[1] > 0
    # rounding: pucker pulls the corners in and the lips forward
    assert move("mouthPucker", "mouth_corner_L")[0] < -0.1 and move("mouthPucker", "mouth_corner_R")[0] > 0.1
    assert move("mouthPucker", "lip_upper")[2] > 0.07 and move("mouthFunnel", "lip_lower")[2] > 0.07
    # spreading is one-sided
    assert move("mouthStretch_L", "mouth_corner_L")[0] > 0.05 and abs(move("mouthStretch_L", "mouth_corner_R")[0]) < 0.01
    assert move("mouthSmile_R", "mouth_corner_R")[1] > 0.05 and move("mouthSmile_R", "mouth_corner_R")[0] < -0.03
    # the left/right controls mirror each other
    for left in [c for c in CONTROLS if c.endswith("_L")]:
        a, b = np.linalg.norm(deltas[left], axis=1).max(), np.linalg.norm(deltas[left[:-1] + "R"], axis=1).max()
        assert a == pytest.approx(b, rel=0.25), left
    return frame, deltas


def test_generated_head_articulates():
    verts, landmarks, index = generated_head()
    check_articulation(verts, landmarks, index)


def test_flame_landmarks_lie_on_the_mouth_opening_and_articulate():
    verts, faces, landmarks = flame_head()
    loops = boundary_loops(faces)  # FLAME has two: the neck and, above it, the mouth
    assert len(loops) == 2
    mouth = max(loops, key=lambda loop: verts[sorted(loop), 1].mean())
    assert len(mouth) == 32
    for name in ("mouth_corner_L", "mouth_corner_R", "lip_upper", "lip_lower"):
        assert FLAME_LANDMARKS[name] in mouth, name
    loop = verts[sorted(mouth)]
    assert verts[FLAME_LANDMARKS["mouth_corner_L"], 0] == pytest.approx(loop[:, 0].max())
    assert verts[FLAME_LANDMARKS["mouth_corner_R"], 0] == pytest.approx(loop[:, 0].min())
    frame, deltas = check_articulation(verts, landmarks, FLAME_LANDMARKS)
    assert 0.04 < frame.width < 0.07  # metres: a human mouth
    # FLAME's face looks along +z with y up; the derived frame agrees
    assert frame.forward @ np.array([0, 0, 1.0]) > 0.9 and frame.up @ np.array([0, 1.0, 0]) > 0.9
    opened = (verts + deltas["jawOpen"])[FLAME_LANDMARKS["chin"]] - verts[FLAME_LANDMARKS["chin"]]
    assert 0.01 < np.linalg.norm(opened) < 0.04  # a full jawOpen moves the chin 1-4 cm


@pytest.mark.parametrize(
    "change, message",
    [({"mouth_corner_R": "mouth_corner_L"}, "same place"), ({"chin": "mouth_corner_L"}, "chin"),
     ({"lip_upper": "lip_lower", "lip_lower": "lip_upper"}, "below")],
)
def test_degenerate_landmarks_are_refused(change, message):
    verts, landmarks, _ = generated_head()
    bad = {**landmarks, **{k: landmarks[v] for k, v in change.items()}}
    with pytest.raises(RigError, match=message):
        mouth_frame(verts, bad)


def key_names(ob):
    return [k.name for k in ob.data.shape_keys.key_blocks]


def test_rig_in_blender_replaces_only_its_own_keys():
    be.reset()
    ob = make_head_object("Head")
    ob.shape_key_add(name="Basis")
    mine = ob.shape_key_add(name="mouthSmile_L", from_mix=False)  # the animator's own sculpt
    mine.data[0].co = (9.0, 9.0, 9.0)
    brow = ob.shape_key_add(name="browUp", from_mix=False)
    brow.value = 0.5
    written = add_articulation_rig(ob)
    assert set(written) == set(CONTROLS) - {"mouthSmile_L"}
    assert mine.data[0].co[0] == 9.0 and key_names(ob)[:3] == ["Basis", "mouthSmile_L", "browUp"]
    assert set(ob[RIG_PROPERTY]) == set(written)
    verts = np.array([v.co for v in ob.data.vertices])
    jaw = np.array([p.co for p in ob.data.shape_keys.key_blocks["jawOpen"].data]) - verts
    _, landmarks, index = generated_head()
    assert jaw[index["chin"], 2] < -0.005  # the chin drops (z is up on the generated head)
    again = add_articulation_rig(ob)  # refreshing rewrites the rig's keys, not the user's
    assert again == written and len(key_names(ob)) == 3 + len(written)
    assert mine.data[0].co[0] == 9.0 and brow.value == 0.5


def test_rig_on_flame_mesh_through_the_operator():
    be.reset()
    verts, faces, _ = flame_head()
    me = bpy.data.meshes.new("FLAME")
    me.from_pydata(verts.tolist(), [], faces.tolist())
    ob = bpy.data.objects.new("FLAME", me)
    bpy.context.scene.collection.objects.link(ob)
    assert set(landmarks_of(ob)) >= set(FLAME_LANDMARKS)  # built in: no vertex groups needed
    assert bpy.ops.wav2sem.add_rig(object="FLAME") == {"FINISHED"}
    assert key_names(ob) == ["Basis", *CONTROLS, *PERFORMANCE_CONTROLS]  # FLAME has eyeballs: all face keys


def test_mesh_without_landmarks_is_refused_and_left_alone():
    be.reset()
    ob = be.make_head(n=5000)
    with pytest.raises(Wav2SemError, match="W2S mouth_corner_L") as info:
        add_articulation_rig(ob)
    assert info.value.code == "rig_landmarks"
    assert ob.data.shape_keys is None
    with pytest.raises(RuntimeError, match="no mouth landmarks"):
        bpy.ops.wav2sem.add_rig(object=ob.name)
    assert ob.data.shape_keys is None


def test_operator_defaults_to_the_panels_target():
    be.reset()
    ob = make_head_object("Head")
    bpy.context.scene.wav2sem.target = ob
    assert bpy.ops.wav2sem.add_rig() == {"FINISHED"}
    assert key_names(ob) == ["Basis", *CONTROLS, *FACE_CONTROLS]  # no eyeballs: no eye keys


def test_main_panel_offers_the_rig():
    be.reset()
    seen = []
    bpy.types.WAV2SEM_PT_main.draw(type("P", (), {"layout": be.Recorder(seen)})(), bpy.context)
    assert "wav2sem.add_rig" in seen and "wav2sem.generate" in seen and "audio" in seen
