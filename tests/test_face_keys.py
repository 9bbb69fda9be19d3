"""The rig's face keys for the performance layer (blinks, eyes, brows, cheeks, nose) on real heads.

FLAME (the shared sample: eyeballs are separate 546-vertex spheres), the ICT FaceKit head (its own
artist-made ARKit shapes are the reference the generic keys are compared with), the add-on's
procedural head (no eyeballs), and in real Blender the performance layer playing on a FLAME head that
had no face keys before.
"""

from __future__ import annotations

import json
from pathlib import Path

import bpy  # noqa: I001
import numpy as np
import pytest

from server.models.bundle import default_bundle, load_bundle
from server.pipeline import run
from tests import blender_env as be
from tests.helpers import read_ply, shared_fixture
from wav2sem_blender import performance as writer
from wav2sem_blender.eyes import _covered, find_eyes
from wav2sem_blender.head import head_geometry
from wav2sem_blender.landmarks import triangulate
from wav2sem_blender.writers.base import Timing
from wav2sem_contract import articulation, upper_face
from wav2sem_contract.controls import CONTROLS
from wav2sem_contract.performance import PERFORMANCE_CONTROLS
from wav2sem_contract.request import InferRequest

ROOT = Path(__file__).resolve().parents[1]


def flame():
    verts, tris = read_ply(shared_fixture("flame", "FLAME_sample.ply"))
    frame = articulation.mouth_frame(verts, {n: verts[i] for n, i in articulation.FLAME_LANDMARKS.items()})
    return verts, tris, frame


def uncovered(verts, tris, fixed, centre, radius, frame) -> float:
    """Share of the eyeball's front (within 0.6 radii of its middle, sideways) that no skin covers."""
    q = (frame.local(verts) - frame.local(centre[None])[0]) / radius
    ball = fixed & (np.linalg.norm(q, axis=1) < 1.5)
    front = np.flatnonzero(ball & (q[:, 2] > 0.3) & (np.abs(q[:, 0]) < 0.6))
    skin = ~fixed & (np.linalg.norm(q, axis=1) < 2.5)
    return float(1 - _covered(q[front], q[tris[skin[tris].all(1)]]).mean())


def test_flame_eyes_are_found_and_a_blink_covers_its_eye_only():
    verts, tris, frame = flame()
    parts = find_eyes(verts, tris, frame)
    eyes, w = parts.eyes, frame.width
    assert eyes is not None and eyes.found and parts.fixed.sum() == 2 * 546
    assert 0.2 < eyes.radius / w < 0.3  # FLAME's eyeballs: 12.5 mm on a 51 mm mouth
    assert frame.local(eyes.left[None])[0, 0] > 0 > frame.local(eyes.right[None])[0, 0]
    assert 0.3 < eyes.upper - eyes.lower < 1.2 and eyes.lower < 0 < eyes.upper + 0.3
    deltas = upper_face.face_deltas(verts, frame, eyes, parts.fixed)
    assert set(deltas) == set(PERFORMANCE_CONTROLS)
    for name, delta in deltas.items():
        assert not delta[parts.fixed].any(), f"{name} moves an eyeball"
        assert np.isfinite(delta).all()
    left, right = (eyes.left, eyes.radius), (eyes.right, eyes.radius)
    before = uncovered(verts, tris, parts.fixed, *left, frame)
    blink = verts + deltas["eyeBlink_L"]
    assert before > 0.3 and uncovered(blink, tris, parts.fixed, *left, frame) < 0.15
    assert uncovered(blink, tris, parts.fixed, *right, frame) == pytest.approx(
        uncovered(verts, tris, parts.fixed, *right, frame), abs=0.02)
    assert uncovered(verts + deltas["eyeWide_L"], tris, parts.fixed, *left, frame) > before + 0.03
    # lids slide over the eyeball, never into it
    outside = np.linalg.norm(verts - eyes.left, axis=1) >= eyes.radius
    moved = np.linalg.norm(deltas["eyeBlink_L"], axis=1) > 0
    assert (np.linalg.norm(blink[outside & moved] - eyes.left, axis=1) >= eyes.radius).all()
    # brows go up (inner up) and down (frown) along the face's up axis, on their own side
    up = frame.local(deltas["browInnerUp"] + frame.centre)[:, 1]
    assert up.max() > 0.08 * w and up.min() > -1e-9
    frown = frame.local(deltas["browDown_L"] + frame.centre)
    assert frown[:, 1].min() < -0.05 * w
    side = frame.local(verts)[:, 0]
    assert np.abs(frown[side < -0.3 * w]).max() < 0.1 * np.abs(frown).max()


def test_ict_generic_keys_move_like_its_artists_shapes():
    data = np.load(shared_fixture("arkit_rig", "ict_facekit_arkit.npz"))
    verts = data["neutral"].astype(np.float64)
    marks = json.loads(str(data["vertex_ranges"]))["idx_to_landmark_verts"]  # iBUG 68 order
    picks = {"mouth_corner_L": 54, "mouth_corner_R": 48, "lip_upper": 62, "lip_lower": 66, "chin": 8}
    frame = articulation.mouth_frame(verts, {n: verts[marks[i]] for n, i in picks.items()})
    parts = find_eyes(verts, triangulate(data["face_vertex_indices"], data["face_sizes"]), frame)
    assert parts.eyes is not None and 0.2 < parts.eyes.radius / frame.width < 0.35
    ours = upper_face.face_deltas(verts, frame, parts.eyes, parts.fixed)
    names = [str(n) for n in data["names"]]

    def cosine(name: str) -> float:
        theirs = data["deltas"][names.index(name)].astype(np.float64).ravel()
        mine = ours[name].ravel()
        return float(mine @ theirs / np.linalg.norm(mine) / np.linalg.norm(theirs))

    # measured: blink 0.67, wide 0.72, squint 0.52, outer brow 0.70, frown 0.49, cheek 0.41, sneer 0.24
    assert cosine("eyeBlink_L") > 0.5 and cosine("eyeBlink_R") > 0.5 and cosine("eyeWide_L") > 0.5
    for name in ("eyeSquint_L", "browOuterUp_L", "browDown_R", "cheekSquint_L", "noseSneer_R"):
        assert cosine(name) > 0.15, name


def test_a_head_without_eyeballs_gets_brows_cheeks_and_nose_only():
    verts, faces, groups = head_geometry()
    landmarks = {name.removeprefix("W2S "): verts[idx].mean(0) for name, idx in groups.items()}
    frame = articulation.mouth_frame(verts, landmarks)
    parts = find_eyes(verts, triangulate(faces), frame)
    assert parts.eyes is None and not parts.fixed.any() and "no eyeballs" in parts.note
    deltas = upper_face.face_deltas(verts, frame, None)
    assert set(deltas) == set(upper_face.FACE_CONTROLS)
    assert all(np.abs(d).max() > 0.01 * frame.width for d in deltas.values())


@pytest.fixture(scope="module")
def layer_result():
    bundle = load_bundle(default_bundle())
    audio = str(ROOT / "assets" / "sample_sentence.wav")
    return run(bundle, InferRequest(audio, bundle=str(default_bundle()), performance=1.0, seed=1))


def test_the_layer_plays_on_a_flame_head_that_had_no_face_keys(layer_result):
    verts, tris, _ = flame()
    be.reset(30)
    me = bpy.data.meshes.new("FLAME")
    me.from_pydata(verts.tolist(), [], tris.tolist())
    ob = bpy.data.objects.new("FLAME", me)
    bpy.context.scene.collection.objects.link(ob)
    assert bpy.ops.wav2sem.add_rig(object="FLAME") == {"FINISHED"}
    keys = ob.data.shape_keys.key_blocks
    assert [k.name for k in keys] == ["Basis", *CONTROLS, *PERFORMANCE_CONTROLS]
    mouth = {n: np.array([p.co for p in keys[n].data]) for n in CONTROLS}
    for name in PERFORMANCE_CONTROLS:  # the rig's face keys go; the layer must bring them back
        ob.shape_key_remove(keys[name])
    notes = writer.write(ob, layer_result, Timing(layer_result.fps, 1, 30.0))
    assert notes[0] == "performance layer: 15 face controls + head motion"
    assert notes[1].startswith("face keys added: 15 (eyes found")
    assert {n: np.array([p.co for p in keys[n].data]) for n in CONTROLS}.keys() == mouth.keys()
    for name in CONTROLS:
        np.testing.assert_array_equal(np.array([p.co for p in keys[name].data]), mouth[name])
    blink = layer_result["performance_weights"][:, PERFORMANCE_CONTROLS.index("eyeBlink_L")]
    frame = int(np.argmax(blink))
    bpy.context.scene.frame_set(1 + round(frame * 30.0 / layer_result.fps))
    assert keys["eyeBlink_L"].value > 0.5
