"""Retargeting in real Blender: align heads, transfer motion (bake / live), solve shape keys,
map controls, jaw bone. FLAME sample and the ICT FaceKit ARKit rig from ../shared/fixtures."""

from __future__ import annotations

import functools
import json
import math

import bpy
import numpy as np
import pytest
from mathutils import Matrix, bvhtree, geometry

from tests import blender_env as be
from tests.helpers import read_ply, shared_fixture
from wav2sem_blender.compat import fcurves_of
from wav2sem_blender.key_paths import key_path
from wav2sem_blender.retarget_ops import (
    FOLLOW_GROUP,
    SOLVE_ERROR,
    SURFACE_DEFORM,
    TRANSFERRED,
    WAV2SEM_OT_align_heads,
    WAV2SEM_OT_jaw_bone,
    WAV2SEM_OT_map_controls,
    WAV2SEM_OT_solve_shape_keys,
    WAV2SEM_OT_transfer_motion,
)
from wav2sem_blender.writers import compact
from wav2sem_blender.writers.base import Timing
from wav2sem_blender.writers.common import add_fcurve
from wav2sem_contract import articulation
from wav2sem_contract.controls import CONTROLS
from wav2sem_contract.result import InferResult


def write_compact(ob, weights, basis, bias, model_fps: float, first: float, fps: float) -> None:
    """The compact writer on arrays made here (the server's exact compact result has this form)."""
    arrays = {"weights": np.asarray(weights, np.float32), "basis": np.asarray(basis, np.float32),
              "bias": np.asarray(bias, np.float32), "max_error": np.float32(0), "exact": np.bool_(True)}
    compact.write(ob, InferResult("compact", model_fps, arrays), Timing(model_fps, first, fps))

MOTION_KEYS = ("jawOpen", "mouthPucker", "mouthSmile_L", "mouthFunnel", "mouthStretch_R")


# -- building scenes from arrays -------------------------------------------------------------------
@functools.cache
def flame() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """FLAME sample: vertices (metres, y up, face +z), triangles, and the articulation rig's deltas."""
    verts, tris = read_ply(shared_fixture("flame", "FLAME_sample.ply"))
    landmarks = {n: verts[i] for n, i in articulation.FLAME_LANDMARKS.items()}
    deltas = articulation.control_deltas(verts, articulation.mouth_frame(verts, landmarks))
    return verts, tris, deltas


@functools.cache
def ict() -> dict:
    data = np.load(shared_fixture("arkit_rig", "ict_facekit_arkit.npz"))
    out = {k: data[k] for k in ("neutral", "face_vertex_indices", "face_sizes", "names")}
    out["deltas"] = data["deltas"]
    out["landmarks"] = json.loads(str(data["vertex_ranges"]))["idx_to_landmark_verts"]  # iBUG 68 order
    return out


def make_mesh(name, verts, faces=None, sizes=None, matrix=None) -> bpy.types.Object:
    """A mesh object from arrays in bulk: ``faces`` (F, 3) triangles, or flat corners with ``sizes``."""
    faces = np.asarray(faces)
    sizes = np.full(len(faces), 3) if sizes is None else np.asarray(sizes)
    me = bpy.data.meshes.new(name)
    me.vertices.add(len(verts))
    me.vertices.foreach_set("co", np.asarray(verts, np.float32).ravel())
    me.loops.add(int(sizes.sum()))
    me.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    me.polygons.add(len(sizes))
    me.polygons.foreach_set("loop_start", (np.cumsum(sizes) - sizes).astype(np.int32))
    me.update(calc_edges=True)
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    if matrix is not None:
        ob.matrix_world = matrix
    return ob


def add_key(ob, name: str, delta: np.ndarray) -> bpy.types.ShapeKey:
    if ob.data.shape_keys is None:
        ob.shape_key_add(name="Basis", from_mix=False)
    kb = ob.shape_key_add(name=name, from_mix=False)
    kb.data.foreach_set("co", (be.positions(ob) + delta).astype(np.float32).ravel())
    kb.value = 0.0
    return kb


def key_co(kb) -> np.ndarray:
    co = np.empty(len(kb.data) * 3, np.float32)
    kb.data.foreach_get("co", co)
    return co.reshape(-1, 3)


def world(ob, points) -> np.ndarray:
    m = np.array(ob.matrix_world)
    return points @ m[:3, :3].T + m[:3, 3]


def vectors(ob, v) -> np.ndarray:
    return v @ np.array(ob.matrix_world)[:3, :3].T


def smooth_weights(frames: int, k: int, seed: int = 0) -> np.ndarray:
    """Speech-like weights in (0, 1): a few smooth random sinusoids per key."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None] / 30.0
    w = 0.5 + 0.25 * np.sin(2 * np.pi * rng.uniform(1, 4, k) * t + rng.uniform(0, 6, k))
    return w + 0.2 * np.sin(2 * np.pi * rng.uniform(4, 7, k) * t + rng.uniform(0, 6, k))


def flame_speaking(name="FLAME", frames=12, matrix=None, seed=0):
    """A FLAME head with compact-writer keys (W2S Bias, W2S Basis NN) and their F-curves.

    Returns the object and the true per-frame offsets (T, V, 3), object space.
    """
    verts, tris, deltas = flame()
    ob = make_mesh(name, verts, tris, matrix=matrix)
    basis = np.stack([deltas[n] for n in MOTION_KEYS[:4]])
    bias = 0.2 * deltas["mouthStretch_R"]
    weights = smooth_weights(frames, len(basis), seed)
    write_compact(ob, weights, basis, bias, 30.0, 1, 30.0)
    return ob, bias + np.tensordot(weights, basis, axes=1)


def decimated_copy(name: str, ratio: float = 0.4):
    """(vertices, triangles) of FLAME decimated by Blender's own Decimate (collapse) modifier."""
    verts, tris, _ = flame()
    tmp = make_mesh("tmp", verts, tris)
    mod = tmp.modifiers.new("d", "DECIMATE")
    mod.ratio = ratio
    me = bpy.data.meshes.new_from_object(tmp.evaluated_get(bpy.context.evaluated_depsgraph_get()))
    bpy.data.objects.remove(tmp)
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    me.calc_loop_triangles()
    faces = np.empty(len(me.loop_triangles) * 3, np.int32)
    me.loop_triangles.foreach_get("vertices", faces)
    bpy.data.meshes.remove(me)
    return co.reshape(-1, 3).astype(np.float64), faces.reshape(-1, 3)


def surface_reference(source, target) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference (Blender's BVH tree): for each target vertex, the source triangle of
    its closest surface point and that point's barycentric coordinates."""
    verts, tris, _ = flame()
    tree = bvhtree.BVHTree.FromPolygons(verts.tolist(), tris.tolist())
    to_source = np.linalg.inv(np.array(source.matrix_world)) @ np.array(target.matrix_world)
    points = be.positions(target) @ to_source[:3, :3].T + to_source[:3, 3]
    tri_index, bary = np.empty(len(points), np.int64), np.empty((len(points), 3))
    for i, p in enumerate(points):
        loc, _, face, _ = tree.find_nearest(p)
        a, b, c = (verts[j] for j in tris[face])
        tri_index[i] = face
        bary[i] = geometry.barycentric_transform(loc, a, b, c, (1, 0, 0), (0, 1, 0), (0, 0, 1))
    return tris[tri_index], bary


def snapshot(*obs) -> list:
    out = []
    for ob in obs:
        snap = be.scene_snapshot(ob)
        snap["matrix"] = np.array(ob.matrix_world)
        snap["groups"] = [g.name for g in ob.vertex_groups]
        out.append(snap)
    return out


def same(a: list, b: list) -> bool:
    """Snapshots equal (arrays to float32 precision: undo rebuilds matrices from loc/rot/scale)."""
    for x, y in zip(a, b, strict=True):
        for k in x:
            if isinstance(x[k], np.ndarray):
                if x[k].shape != y[k].shape or not np.allclose(x[k], y[k], rtol=1e-6, atol=1e-7):
                    return False
            elif x[k] != y[k]:
                return False
    return True


# -- tests -----------------------------------------------------------------------------------------
def test_operators_are_undoable_with_a_one_line_tooltip():
    be.reset()
    for cls in (WAV2SEM_OT_align_heads, WAV2SEM_OT_transfer_motion, WAV2SEM_OT_solve_shape_keys,
                WAV2SEM_OT_map_controls, WAV2SEM_OT_jaw_bone):
        assert cls.bl_options == {"REGISTER", "UNDO"}, cls
        assert cls.__doc__ and "\n" not in cls.__doc__.strip(), cls
    assert hasattr(bpy.types, "WAV2SEM_PT_retarget")
    assert bpy.types.WAV2SEM_PT_retarget.bl_parent_id == "WAV2SEM_PT_main"
    assert bpy.context.scene.wav2sem_retarget.mode == "BAKE"


def test_retarget_panel_draws_its_settings_and_five_buttons():
    be.reset()
    seen = []
    panel = type("P", (), {"layout": be.Recorder(seen)})()
    bpy.types.WAV2SEM_PT_retarget.draw(panel, bpy.context)
    assert [s for s in seen if s.startswith("wav2sem.")] == [
        "wav2sem.align_heads", "wav2sem.transfer_motion", "wav2sem.solve_shape_keys", "wav2sem.map_controls",
        "wav2sem.jaw_bone"]
    assert {"source", "target", "mode", "vertex_group", "keys", "mapping_text", "armature", "bone"} <= set(seen)


def test_align_heads_recovers_a_known_transform():
    be.reset()
    verts, tris, _ = flame()
    source = make_mesh("FLAME", verts, tris, matrix=Matrix.Rotation(math.pi / 2, 4, "X"))
    known = Matrix.Translation((0.3, -1.2, 0.5)) @ Matrix.Rotation(0.7, 4, (1, 2, 0.5)) @ Matrix.Scale(2.5, 4)
    target = make_mesh("Head", verts, tris, matrix=known)  # same geometry: built-in FLAME landmarks on both
    assert bpy.ops.wav2sem.align_heads(source="FLAME", target="Head") == {"FINISHED"}
    assert np.abs(np.array(source.matrix_world) - np.array(known)).max() < 1e-5
    assert source["wav2sem_align_rms"] < 1e-6
    # without arguments the operator takes the Retarget panel's objects
    source.matrix_world = Matrix()
    settings = bpy.context.scene.wav2sem_retarget
    settings.source, settings.target = source, target
    assert bpy.ops.wav2sem.align_heads() == {"FINISHED"}
    assert np.abs(np.array(source.matrix_world) - np.array(known)).max() < 1e-5


def test_align_heads_finds_the_landmarks_of_a_head_without_groups():
    """ICT (centimetres, its own topology, no W2S groups) onto FLAME (metres): the mouth found on ICT's
    geometry and both heads' eyeballs place ICT's own mouth corners and chin onto FLAME's."""
    be.reset()
    verts, tris, _ = flame()
    target = make_mesh("FLAME", verts, tris, matrix=Matrix.Rotation(math.pi / 2, 4, "X"))
    data = ict()
    turned = Matrix.Translation((1.0, 2.0, 0.0)) @ Matrix.Rotation(0.4, 4, "Z")
    source = make_mesh("ICT", data["neutral"], data["face_vertex_indices"], data["face_sizes"], matrix=turned)
    assert not source.vertex_groups
    assert bpy.ops.wav2sem.align_heads(source="ICT", target="FLAME") == {"FINISHED"}
    marks = data["landmarks"]
    ict_points = {"mouth_corner_L": marks[54], "mouth_corner_R": marks[48], "chin": marks[8]}
    flame_width = np.linalg.norm(verts[articulation.FLAME_LANDMARKS["mouth_corner_L"]]
                                 - verts[articulation.FLAME_LANDMARKS["mouth_corner_R"]])
    # two different faces: the corners agree closely, the chins less (measured 0.35 mouth widths apart:
    # ICT's chin point is the bottom of its chin, FLAME's the most forward point, on another jaw)
    for name, index in ict_points.items():
        moved = world(source, data["neutral"][index][None])[0]
        goal = world(target, verts[articulation.FLAME_LANDMARKS[name]][None])[0]
        assert np.linalg.norm(moved - goal) < (0.45 if name == "chin" else 0.25) * flame_width, name
    assert 0.005 < np.abs(np.linalg.det(np.array(source.matrix_world)[:3, :3])) ** (1 / 3) < 0.02  # cm -> m


def test_align_heads_refuses_degenerate_landmarks_and_changes_nothing():
    be.reset()
    verts, tris, _ = flame()
    source = make_mesh("FLAME", verts, tris)
    target = make_mesh("Blob", verts[:3000] * 2.0, tris[np.all(tris < 3000, axis=1)])
    for name in articulation.LANDMARKS:  # every landmark on one vertex
        target.vertex_groups.new(name="W2S " + name).add([7], 1.0, "REPLACE")
    before = snapshot(source, target)
    with pytest.raises(RuntimeError, match="degenerate"):
        bpy.ops.wav2sem.align_heads(source="FLAME", target="Blob")
    assert same(before, snapshot(source, target))
    with pytest.raises(RuntimeError, match="no mouth landmarks"):  # neither groups nor FLAME topology
        bpy.ops.wav2sem.align_heads(source="FLAME", target=make_mesh("Bare", verts[:3000], tris[:10]).name)


def transfer_scene(jitter: float = 0.0):
    """A speaking FLAME (rotated like an OBJ import) and a decimated copy of it whose mesh data is
    in centimetres and turned, with an object matrix putting it back onto the source in world space.

    ``jitter`` (metres) nudges the copy's vertices off the source's: many of a decimated mesh's
    vertices coincide exactly with the original's, which Blender's Surface Deform cannot bind.
    """
    rot_x = Matrix.Rotation(math.pi / 2, 4, "X")
    source, offsets = flame_speaking("FLAME", frames=12, matrix=rot_x)
    verts, tris = decimated_copy("Low")
    verts = verts + np.random.default_rng(0).uniform(-jitter, jitter, verts.shape)
    data_from_source = np.array(Matrix.Rotation(0.5, 4, "Z") @ Matrix.Scale(100.0, 4))
    target = make_mesh("Low", verts @ data_from_source[:3, :3].T, tris,
                       matrix=rot_x @ Matrix(np.linalg.inv(data_from_source).tolist()))
    mine = add_key(target, "browUp", np.zeros_like(verts))
    mine.data[0].co = (9.0, 9.0, 9.0)
    curve = fcurves_of(source.data.shape_keys).find(key_path("W2S Basis 01"))  # an animator's edit: Bezier
    curve.keyframe_points.foreach_set("interpolation", np.full(len(curve.keyframe_points), 2, np.int32))
    curve.keyframe_points[3].co.y += 0.3
    curve.update()
    return source, target, offsets


def test_bake_transfer_onto_a_decimated_copy_matches_the_source_surface_and_survives_its_deletion():
    be.reset()
    source, target, _ = transfer_scene()
    assert bpy.ops.wav2sem.transfer_motion(source="FLAME", target="Low", mode="BAKE") == {"FINISHED"}
    assert bpy.ops.wav2sem.transfer_motion(source="FLAME", target="Low", mode="BAKE") == {"FINISHED"}  # re-run
    names = [kb.name for kb in target.data.shape_keys.key_blocks]
    assert names == ["Basis", "browUp", "W2S Bias"] + [f"W2S Basis {k:02d}" for k in range(4)]  # no .001
    assert tuple(target.data.shape_keys.key_blocks["browUp"].data[0].co) == (9.0, 9.0, 9.0)
    assert sorted(target[TRANSFERRED]) == sorted(names[2:])
    assert {fc.data_path for fc in fcurves_of(target.data.shape_keys)} == {key_path(n) for n in names[3:]}

    between = np.linspace(0.5, 12.5, 49)  # the copied curves play the same between frames too
    for fc in fcurves_of(source.data.shape_keys):
        copy = fcurves_of(target.data.shape_keys).find(fc.data_path)
        assert np.abs([copy.evaluate(f) - fc.evaluate(f) for f in between]).max() < 1e-6, fc.data_path

    corners, bary = surface_reference(source, target)
    rest_s, rest_t = be.positions(source), be.positions(target)
    expected, moved = {}, {}
    for frame in (1, 5, 12):
        disp = be.evaluated(source, frame) - rest_s  # Blender's own evaluation of the source
        reference = vectors(source, np.einsum("vj,vjd->vd", bary, disp[corners]))
        got = vectors(target, be.evaluated(target, frame) - rest_t)
        peak = np.linalg.norm(reference, axis=1).max()
        error = np.linalg.norm(got - reference, axis=1).max()
        assert peak > 2e-3 and error < 1e-4 * peak + 1e-7, (frame, peak, error)  # metres
        expected[frame] = got
    bpy.data.objects.remove(source)  # the baked keys and curves live on the target alone
    for frame, got in expected.items():
        moved[frame] = vectors(target, be.evaluated(target, frame) - rest_t)
        assert np.abs(moved[frame] - got).max() < 1e-7


def test_live_transfer_binds_surface_deform_and_replaces_a_bake():
    be.reset()
    source, target, _ = transfer_scene(jitter=1e-5)
    assert bpy.ops.wav2sem.transfer_motion(source="FLAME", target="Low") == {"FINISHED"}  # BAKE by default
    assert bpy.ops.wav2sem.transfer_motion(source="FLAME", target="Low", mode="LIVE") == {"FINISHED"}
    assert [kb.name for kb in target.data.shape_keys.key_blocks] == ["Basis", "browUp"]  # the bake went
    mod = target.modifiers[SURFACE_DEFORM]
    assert mod.type == "SURFACE_DEFORM" and mod.is_bound and mod.target == source
    assert mod.vertex_group == FOLLOW_GROUP and FOLLOW_GROUP in target.vertex_groups
    corners, bary = surface_reference(source, target)
    disp = be.evaluated(source, 6) - be.positions(source)
    reference = vectors(source, np.einsum("vj,vjd->vd", bary, disp[corners]))
    got = vectors(target, be.evaluated(target, 6) - be.positions(target))
    peak = np.linalg.norm(reference, axis=1).max()
    # Surface Deform interpolates differently from closest-point binding: close, not equal
    assert np.linalg.norm(got - reference, axis=1).max() < 0.02 * peak  # measured 0.5 %
    assert bpy.ops.wav2sem.transfer_motion(source="FLAME", target="Low", mode="LIVE") == {"FINISHED"}
    assert [m.name for m in target.modifiers] == [SURFACE_DEFORM]  # re-run replaces its own modifier


def test_live_transfer_that_surface_deform_cannot_bind_keeps_the_earlier_bake():
    be.reset()
    source, target, _ = transfer_scene()  # no jitter: vertices exactly on the source's
    assert bpy.ops.wav2sem.transfer_motion(source="FLAME", target="Low") == {"FINISHED"}
    before = snapshot(source, target)
    with pytest.raises(RuntimeError, match="could not bind"):
        bpy.ops.wav2sem.transfer_motion(source="FLAME", target="Low", mode="LIVE")
    assert same(before, snapshot(source, target))


def test_bake_restricted_to_a_vertex_group():
    be.reset()
    source, target, _ = transfer_scene()
    lower = np.flatnonzero(world(target, be.positions(target))[:, 2] < world(source, be.positions(source))[
        articulation.FLAME_LANDMARKS["lip_lower"], 2])  # below the lower lip (z is up in world space)
    target.vertex_groups.new(name="jaw").add(lower.tolist(), 1.0, "REPLACE")
    assert bpy.ops.wav2sem.transfer_motion(source="FLAME", target="Low", vertex_group="jaw") == {"FINISHED"}
    moved = np.linalg.norm(be.evaluated(target, 6) - be.positions(target), axis=1)
    inside = np.zeros(len(moved), bool)
    inside[lower] = True
    assert moved[~inside].max() == 0.0 and moved[inside].max() > 0.1  # cm: the data is in centimetres


@pytest.mark.parametrize("mode", ["BAKE", "LIVE"])
def test_transfer_without_overlap_is_refused_and_leaves_the_target_alone(mode):
    be.reset()
    source, target, _ = transfer_scene()
    target.location.x += 2.0  # two metres away
    bpy.context.view_layer.update()
    before = snapshot(source, target)
    with pytest.raises(RuntimeError, match="do not overlap"):
        bpy.ops.wav2sem.transfer_motion(source="FLAME", target="Low", mode=mode)
    with pytest.raises(RuntimeError, match="no vertex group called 'lips'"):
        bpy.ops.wav2sem.transfer_motion(source="FLAME", target="Low", mode=mode, vertex_group="lips")
    assert same(before, snapshot(source, target))


def test_transfer_is_one_undo_step():
    be.reset()
    transfer_scene()
    before = snapshot(bpy.data.objects["Low"])
    bpy.ops.ed.undo_push(message="before transfer")
    assert bpy.ops.wav2sem.transfer_motion(source="FLAME", target="Low") == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Transfer Motion")
    bpy.ops.ed.undo()
    assert same(before, snapshot(bpy.data.objects["Low"]))
    bpy.ops.ed.redo()
    assert "W2S Bias" in bpy.data.objects["Low"].data.shape_keys.key_blocks


def test_solve_recovers_the_weights_of_a_synthetic_rig():
    be.reset()
    verts, tris, deltas = flame()
    frames, k = 15, len(MOTION_KEYS)
    true = np.clip(smooth_weights(frames, k, seed=3), 0.02, 0.98)
    keys = np.stack([deltas[n] for n in MOTION_KEYS])
    rng = np.random.default_rng(1)
    mix = np.eye(k) + 0.3 * rng.normal(size=(k, k))  # the source's own basis: other combinations
    source = make_mesh("FLAME", verts, tris)
    write_compact(source, true @ np.linalg.inv(mix), np.tensordot(mix, keys, axes=1), np.zeros_like(verts),
                  30.0, 1, 30.0)
    # the rig: the same head, mesh data in cm and turned, keys = the known shapes (+ a brow key)
    data_from_source = np.array(Matrix.Rotation(-0.4, 4, "Y") @ Matrix.Scale(100.0, 4))
    lin = data_from_source[:3, :3]
    target = make_mesh("Rig", verts @ lin.T, tris, matrix=Matrix(np.linalg.inv(data_from_source).tolist()))
    for name, d in zip(MOTION_KEYS, keys, strict=True):
        add_key(target, name, d @ lin.T)
    add_key(target, "browUp", np.where(verts[:, 1:2] > 0.05, [0, 0.5, 0], 0) * np.ones((1, 3)))
    animated = fcurves_of(target.data.shape_keys, action_name="Animator")
    add_fcurve(animated, key_path("jawOpen"), np.array([1.0, 20.0]), np.array([0.0, 1.0]))

    assert bpy.ops.wav2sem.solve_shape_keys(source="FLAME", target="Rig", smooth=0.0) == {"FINISHED"}
    summary = bpy.context.scene.wav2sem_retarget.last_summary
    assert "fit error" in summary and "worst frame" in summary, summary
    key = target.data.shape_keys
    # the solved curves go into the animator's action; the jawOpen curve they replaced is kept in a copy
    assert key.animation_data.action.name == "Animator"
    assert bpy.data.actions["Animator (before lip sync)"].use_fake_user
    curves = {fc.data_path: fc for fc in fcurves_of(key)}
    got = np.array([[curves[key_path(n)].evaluate(f) for n in MOTION_KEYS + ("browUp",)]
                    for f in range(1, frames + 1)])
    assert np.abs(got[:, :k] - true).max() < 1e-4, np.abs(got[:, :k] - true).max()  # measured 2e-6
    assert np.abs(got[:, k]).max() < 1e-4  # the brow does not move in the source
    error = np.array(target[SOLVE_ERROR])
    assert error.shape == (frames,) and error.max() < 2e-5  # metres
    with pytest.raises(RuntimeError, match="no shape keys called nope"):
        bpy.ops.wav2sem.solve_shape_keys(source="FLAME", target="Rig", keys="jawOpen, nope")


def ict_object(keys: tuple[str, ...]) -> bpy.types.Object:
    """The ICT FaceKit head (cm, object scale 0.01) with the given ARKit keys and W2S landmark groups."""
    rig = ict()
    ob = make_mesh("ICT", rig["neutral"], rig["face_vertex_indices"], rig["face_sizes"],
                   matrix=Matrix.Translation((0.02, 0.01, -0.03)) @ Matrix.Scale(0.01, 4))
    names = list(rig["names"])
    for name in keys:
        add_key(ob, name, rig["deltas"][names.index(name)].astype(np.float32))
    lm = rig["landmarks"]  # iBUG 68: 48/54 mouth corners, 62/66 inner lips, 8 chin, 30 nose, 36-47 eyes
    groups = {"mouth_corner_L": [lm[54]], "mouth_corner_R": [lm[48]], "lip_upper": [lm[62]],
              "lip_lower": [lm[66]], "chin": [lm[8]], "nose_tip": [lm[30]],
              "eye_L": [lm[i] for i in range(42, 48)], "eye_R": [lm[i] for i in range(36, 42)]}
    for name, idx in groups.items():
        ob.vertex_groups.new(name="W2S " + name).add(idx, 1.0, "REPLACE")
    return ob


def test_solve_from_flame_onto_the_ict_rig():
    be.reset()
    mouth = ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthSmile_L", "mouthSmile_R",
             "mouthStretch_L", "mouthStretch_R")
    target = ict_object(mouth)
    verts, tris, deltas = flame()
    source = make_mesh("FLAME", verts, tris)
    jaw = np.array([0.0, 0.3, 0.6, 1.0, 0.5])
    pucker = np.array([0.0, 0.5, 0.0, 0.2, 0.8])
    write_compact(source, np.column_stack([jaw, pucker]), np.stack([deltas["jawOpen"], deltas["mouthPucker"]]),
                  np.zeros_like(verts), 30.0, 1, 30.0)
    assert bpy.ops.wav2sem.align_heads(source="FLAME", target="ICT") == {"FINISHED"}
    scale = source.matrix_world.to_scale()
    assert 0.8 < scale.x < 1.25 and source["wav2sem_align_rms"] < 0.01  # metres: both heads are human-sized
    assert bpy.ops.wav2sem.solve_shape_keys(source="FLAME", target="ICT", keys=",".join(mouth)) == {"FINISHED"}
    error = np.array(target[SOLVE_ERROR])
    assert error.shape == (5,) and np.isfinite(error).all() and error.max() < 0.01
    curves = {fc.data_path: fc for fc in fcurves_of(target.data.shape_keys)}
    solved_jaw = np.array([curves[key_path("jawOpen")].evaluate(f) for f in range(1, 6)])
    assert np.corrcoef(solved_jaw, jaw)[0, 1] > 0.9, solved_jaw


def control_source(frames: int = 10):
    """A small mesh whose shape keys are named like the controls, three of them animated."""
    be.make_head("Gen", n=4970)
    ob = bpy.data.objects["Gen"]
    for name in CONTROLS:
        add_key(ob, name, np.full((len(ob.data.vertices), 3), 0.001))
    fcurves = fcurves_of(ob.data.shape_keys)
    t = np.arange(1, frames + 1, dtype=np.float64)
    values = {"jawOpen": np.linspace(0, 1, frames), "mouthPucker": 0.5 + 0.4 * np.sin(t),
              "mouthSmile_L": np.full(frames, 0.25)}
    for name, v in values.items():
        add_fcurve(fcurves, key_path(name), t, v)
    return ob, t, values


def test_map_controls_onto_a_partial_rig_with_a_mapping_text():
    be.reset()
    _, t, values = control_source()
    rig = be.make_head("Rig", n=4970, seed=1)
    for name in ("aa", "oh", "mouthSmile_L"):
        add_key(rig, name, np.full((len(rig.data.vertices), 3), 0.002))
    text = bpy.data.texts.new("Visemes")
    text.write("# ARKit control = rig key * gain\njawOpen = aa * 0.8, oh * 0.3\nmouthPucker = oh\n"
               "mouthSmile_L = mouthSmile_L, mbp * 0.5\nmouthClose = mouthSmile_L\n")
    assert bpy.ops.wav2sem.map_controls(source="Gen", target="Rig", mapping_text="Visemes") == {"FINISHED"}
    summary = bpy.context.scene.wav2sem_retarget.last_summary
    # the mapping names a key the rig lacks, and a control the source does not animate
    assert "found nowhere: mbp, mouthClose" in summary, summary
    curves = {fc.data_path: fc for fc in fcurves_of(rig.data.shape_keys)}
    got = {n: np.array([curves[key_path(n)].evaluate(f) for f in t]) for n in ("aa", "oh", "mouthSmile_L")}
    assert np.allclose(got["aa"], 0.8 * values["jawOpen"], atol=1e-5)
    assert np.allclose(got["oh"], np.clip(0.3 * values["jawOpen"] + values["mouthPucker"], 0, 1), atol=1e-5)
    assert np.allclose(got["mouthSmile_L"], values["mouthSmile_L"], atol=1e-5)
    # by name (no mapping): only mouthSmile_L exists on the rig; the others are reported
    assert bpy.ops.wav2sem.map_controls(source="Gen", target="Rig") == {"FINISHED"}
    summary = bpy.context.scene.wav2sem_retarget.last_summary
    assert "jawOpen" in summary and "mouthPucker" in summary, summary
    with pytest.raises(RuntimeError, match="no text block called 'Nope'"):
        bpy.ops.wav2sem.map_controls(source="Gen", target="Rig", mapping_text="Nope")


def armature(name="Rig") -> tuple[bpy.types.Object, bpy.types.PoseBone]:
    arm = bpy.data.objects.new(name, bpy.data.armatures.new(name))
    bpy.context.scene.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    bone = arm.data.edit_bones.new("jaw")
    bone.head, bone.tail = (0, 0, 0), (0, -0.1, -0.03)
    bpy.ops.object.mode_set(mode="OBJECT")
    return arm, arm.pose.bones["jaw"]


def test_jaw_bone_rotation_follows_jaw_open():
    be.reset()
    _, t, values = control_source()
    arm, pb = armature()
    assert pb.rotation_mode == "QUATERNION"
    max_angle = math.radians(20)
    assert bpy.ops.wav2sem.jaw_bone(armature="Rig", bone="jaw", source="Gen", axis="X",
                                    max_angle=max_angle) == {"FINISHED"}
    curves = {(fc.data_path, fc.array_index): fc for fc in fcurves_of(arm)}
    path = 'pose.bones["jaw"].rotation_quaternion'
    q = np.array([[curves[(path, i)].evaluate(f) for i in range(4)] for f in t])
    angle = 2 * np.arctan2(q[:, 1], q[:, 0])  # about +X
    assert np.allclose(angle, max_angle * values["jawOpen"], atol=1e-4)
    assert np.abs(q[:, 2:]).max() < 1e-6
    pb.rotation_mode = "XYZ"
    pb.rotation_euler = (0.0, 0.0, 0.1)
    assert bpy.ops.wav2sem.jaw_bone(armature="Rig", bone="jaw", source="Gen", axis="-Z",
                                    max_angle=max_angle) == {"FINISHED"}
    fc = fcurves_of(arm).find('pose.bones["jaw"].rotation_euler', index=2)
    z = np.array([fc.evaluate(f) for f in t])
    assert np.allclose(z, 0.1 - max_angle * values["jawOpen"], atol=1e-5)
    with pytest.raises(RuntimeError, match="no bone called 'chin'"):
        bpy.ops.wav2sem.jaw_bone(armature="Rig", bone="chin", source="Gen")


def test_jaw_bone_from_flame_chin_motion():
    be.reset()
    verts, tris, deltas = flame()
    source = make_mesh("FLAME", verts, tris)
    jaw = np.array([0.0, 0.2, 0.5, 0.9, 0.4, 0.1])
    write_compact(source, np.column_stack([jaw, 0.5 * jaw[::-1]]),
                  np.stack([deltas["jawOpen"], deltas["mouthSmile_L"]]), np.zeros_like(verts), 30.0, 1, 30.0)
    arm, pb = armature()
    pb.rotation_mode = "XYZ"
    assert bpy.ops.wav2sem.jaw_bone(armature="Rig", bone="jaw", source="FLAME") == {"FINISHED"}
    fc = fcurves_of(arm).find('pose.bones["jaw"].rotation_euler', index=0)
    angles = np.array([fc.evaluate(f) for f in range(1, 7)])
    # jawOpen = 1 is the articulation rig's own full opening: the angle follows the jaw weight
    assert np.abs(angles - math.radians(20) * jaw).max() < 0.1 * math.radians(20), angles
    assert np.corrcoef(angles, jaw)[0, 1] > 0.99, angles


def test_bake_onto_a_head_with_per_frame_output_gives_it_relative_keys_again():
    from wav2sem_blender.writers import per_frame

    be.reset()
    source, target, _ = transfer_scene()
    target.shape_key_clear()  # per-frame output needs a mesh without keys of its own
    rest_t = be.positions(target)
    offsets = np.zeros((12, len(rest_t), 3), np.float32)
    per_frame.write(target, InferResult("offsets", 30.0, {"offsets": offsets}), Timing(30.0, 1, 30.0))
    assert not target.data.shape_keys.use_relative
    assert bpy.ops.wav2sem.transfer_motion(source="FLAME", target="Low", mode="BAKE") == {"FINISHED"}
    key = target.data.shape_keys
    assert key.use_relative and "wav2sem_eval_time" not in key
    assert {fc.data_path for fc in fcurves_of(key)} == {key_path(f"W2S Basis {k:02d}") for k in range(4)}
    corners, bary = surface_reference(source, target)
    disp = be.evaluated(source, 5) - be.positions(source)
    reference = vectors(source, np.einsum("vj,vjd->vd", bary, disp[corners]))
    got = vectors(target, be.evaluated(target, 5) - rest_t)
    peak = np.linalg.norm(reference, axis=1).max()
    assert peak > 2e-3 and np.linalg.norm(got - reference, axis=1).max() < 1e-4 * peak + 1e-7
