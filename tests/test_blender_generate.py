"""Generate Lip Sync end to end in real Blender with the real server subprocess.

The reference motion comes from the server's own pipeline run in this process on the same
bundle and audio; the Blender side is checked through the depsgraph (what the viewport and
renders see), at several frames, for every output mode and for 30->24/25 fps conversion.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import bpy  # noqa: I001
import numpy as np
import pytest

from server.models.bundle import load_bundle
from server.pipeline import run
from tests import blender_env as be
from tests.bundles import make_tiny_bundle, speech_like
from wav2sem_blender import operators
from wav2sem_blender.compat import fcurves_of
from wav2sem_contract.request import InferRequest


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("blender")
    bundle = make_tiny_bundle(tmp / "ff")
    audio = speech_like(tmp / "speech.wav", 2.0)
    offsets = run(load_bundle(bundle), InferRequest(str(audio)))["offsets"]
    return {"tmp": tmp, "bundle": bundle, "audio": audio, "offsets": offsets}


@pytest.fixture(autouse=True)
def clean_scene():
    be.reset()
    yield
    operators.CANCEL.clear()


def generate(assets, **kwargs):
    args = {"audio": str(assets["audio"]), "object": "Head", "bundle": str(assets["bundle"])}
    args.update(kwargs)
    try:
        return bpy.ops.wav2sem.generate(**args)
    except RuntimeError:  # bpy.ops raises on an ERROR report; the message is in the status
        return {"CANCELLED"}


def message() -> str:
    return bpy.context.window_manager.wav2sem_status.message


@pytest.mark.parametrize("mode", ["COMPACT", "PER_FRAME", "POINT_CACHE"])
def test_every_mode_reproduces_the_offsets(assets, mode):
    ob = be.make_head()
    rest = be.positions(ob).copy()
    offsets = assets["offsets"]
    first = 5
    # the mouth alone: the performance layer would add face keys (this 5023-vertex head takes FLAME's
    # landmarks) whose motion is not the model's offsets
    assert generate(assets, mode=mode, start_frame=first, performance=0.0) == {"FINISHED"}, message()
    tol = 2e-6
    if mode == "COMPACT":
        keys = [kb.name for kb in ob.data.shape_keys.key_blocks]
        assert keys[0] == "Basis" and "W2S Bias" in keys and len(keys) == 2 + 16  # tiny FaceFormer: d = 16
    T = len(offsets)
    for i in (0, 1, 7, T // 2, T - 1):
        got = be.evaluated(ob, first + i)
        np.testing.assert_allclose(got, rest + offsets[i], atol=tol, err_msg=f"{mode} frame {i}")
    assert np.abs(offsets).max() > 1e-3  # the check above is not trivially satisfied
    np.testing.assert_array_equal(be.positions(ob), rest)  # the mesh itself stays the rest pose
    assert ob["wav2sem_model_fps"] == 30.0 and "frames at 30 fps" in message()


@pytest.mark.parametrize("fps,fps_base", [(24, 1.0), (25, 1.0)])
@pytest.mark.parametrize("mode", ["COMPACT", "POINT_CACHE"])
def test_fps_conversion_resamples_in_time(assets, mode, fps, fps_base):
    be.reset(fps, fps_base)
    ob = be.make_head()
    rest = be.positions(ob).copy()
    assert generate(assets, mode=mode) == {"FINISHED"}, message()
    scene = bpy.context.scene
    assert (scene.render.fps, scene.render.fps_base) == (fps, fps_base)  # the scene was not changed
    T = len(assets["offsets"])
    last = int(1 + (T - 1) * fps / 30.0)
    for frame in (1, 2, 3, 10, last - 1, last):
        expected = rest + be.resample(assets["offsets"], 30.0, fps / fps_base, frame, 1)
        np.testing.assert_allclose(be.evaluated(ob, frame), expected, atol=2e-6, err_msg=f"frame {frame}")
    assert f"scene {fps:g} fps" in message()


def test_sound_strip_is_aligned(assets):
    if not bpy.app.build_options.audaspace:
        pytest.skip("this Blender build has no audio support")
    be.reset(25)
    be.make_head()
    bpy.context.scene.frame_end = 10
    assert generate(assets, start_frame=12) == {"FINISHED"}, message()
    scene = bpy.context.scene
    strip = next(s for s in scene.sequence_editor.strips_all if s.name == "W2S Head")
    assert strip.frame_final_start == 12
    assert Path(bpy.path.abspath(strip.sound.filepath)) == assets["audio"]
    assert abs(strip.frame_final_duration - 2.0 * 25) <= 1
    assert scene.frame_end >= strip.frame_final_end - 1  # range extended to the end of the sound
    assert scene.sync_mode == "AUDIO_SYNC"


def test_rerun_replaces_only_own_data(assets):
    ob = be.make_head()
    ob.shape_key_add(name="Basis")
    smile = ob.shape_key_add(name="Smile", from_mix=False)
    smile.value = 0.3
    smile.keyframe_insert("value", frame=3)
    ob.modifiers.new("Subdivision", "SUBSURF")
    for mode in ("COMPACT", "COMPACT", "POINT_CACHE", "COMPACT"):
        assert generate(assets, mode=mode) == {"FINISHED"}, message()
    key = ob.data.shape_keys
    names = [kb.name for kb in key.key_blocks]
    assert names[:2] == ["Basis", "Smile"]
    assert sum(n.startswith("W2S Basis") for n in names) == 16
    assert [m.name for m in ob.modifiers] == ["Subdivision"]  # the cache of the 3rd run is gone
    paths = [fc.data_path for fc in fcurves_of(key, create=False)]
    assert 'key_blocks["Smile"].value' in paths
    assert sum("W2S" in p for p in paths) == 16
    strips = [s.name for s in bpy.context.scene.sequence_editor.strips_all]
    assert strips.count("W2S Head") == 1


def _assert_refused(assets, snapshot, ob, code_words, **kwargs):
    result = generate(assets, **kwargs)
    assert result == {"CANCELLED"}
    text = message()
    for word in code_words:
        assert word in text, text
    assert text.count(".") >= 1 and "\n" not in text
    after = be.scene_snapshot(ob)
    np.testing.assert_array_equal(after.pop("verts"), snapshot.pop("verts"))
    assert after == snapshot


def test_wrong_vertex_count_is_refused(assets):
    ob = be.make_head(n=5000)
    _assert_refused(assets, be.scene_snapshot(ob), ob, ["5000", "5023", "Retarget"])


def test_missing_and_corrupt_audio_are_refused(assets, tmp_path):
    ob = be.make_head()
    snap = be.scene_snapshot(ob)
    _assert_refused(assets, dict(snap), ob, ["does not exist"], audio=str(tmp_path / "gone.wav"))
    bad = tmp_path / "notes.wav"
    bad.write_text("these are my notes, not audio")
    _assert_refused(assets, dict(snap), ob, ["not a readable audio file", "WAV"], audio=str(bad))


def test_dead_server_interpreter_is_reported(assets, tmp_path, monkeypatch):
    ob = be.make_head()
    snap = be.scene_snapshot(ob)
    monkeypatch.setenv("WAV2SEM_SERVER_PYTHON", str(tmp_path / "python-that-is-gone"))
    _assert_refused(assets, snap, ob, ["does not exist", "preferences"])


def test_per_frame_refuses_meshes_with_their_own_keys(assets):
    ob = be.make_head()
    ob.shape_key_add(name="Basis")
    ob.shape_key_add(name="Blink")
    _assert_refused(assets, be.scene_snapshot(ob), ob, ["Blink", "Compact"], mode="PER_FRAME")


def test_linked_object_is_refused(assets, tmp_path):
    ob = be.make_head()
    lib = tmp_path / "lib.blend"
    bpy.data.libraries.write(str(lib), {ob})
    be.reset()
    with bpy.data.libraries.load(str(lib), link=True) as (src, dst):
        dst.objects = ["Head"]
    linked = dst.objects[0]
    bpy.context.scene.collection.objects.link(linked)
    result = generate(assets)
    assert result == {"CANCELLED"} and "linked" in message() and "Make Local" in message()


def test_cancel_mid_run_leaves_the_scene_as_it_was(assets):
    ct = make_tiny_bundle(assets["tmp"] / "ct-cancel", arch="codetalker") \
        if not (assets["tmp"] / "ct-cancel").exists() else assets["tmp"] / "ct-cancel"
    long_audio = assets["tmp"] / "long.wav"
    if not long_audio.exists():
        speech_like(long_audio, 60.0, rate=16000)
    ob = be.make_head()
    snap = be.scene_snapshot(ob)
    seen = []

    def cancel_when_decoding():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if operators.ACTIVE and operators.ACTIVE[0].stage == "decode":
                seen.append(operators.ACTIVE[0].fraction)
                operators.CANCEL.set()
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=cancel_when_decoding)
    watcher.start()
    result = generate(assets, audio=str(long_audio), bundle=str(ct))
    watcher.join()
    assert seen, "the run never reached the decode stage"
    assert result == {"CANCELLED"} and "Cancelled" in message()
    after = be.scene_snapshot(ob)
    np.testing.assert_array_equal(after.pop("verts"), snap.pop("verts"))
    assert after == snap


def test_edit_mode_mesh_keeps_its_edits(assets):
    import bmesh

    ob = be.make_head()
    bpy.ops.object.mode_set(mode="EDIT")
    bm = bmesh.from_edit_mesh(ob.data)
    bm.verts.ensure_lookup_table()
    bm.verts[0].co.x += 0.01
    bmesh.update_edit_mesh(ob.data)
    moved = np.array(bm.verts[0].co)
    assert generate(assets) == {"FINISHED"}, message()
    assert ob.mode == "EDIT"
    bpy.ops.object.mode_set(mode="OBJECT")
    basis = np.empty(be.N_VERTICES * 3, np.float32)
    ob.data.shape_keys.reference_key.data.foreach_get("co", basis)
    np.testing.assert_allclose(basis.reshape(-1, 3)[0], moved, atol=1e-7)
    assert any(kb.name.startswith("W2S Basis") for kb in ob.data.shape_keys.key_blocks)


def test_unsaved_point_cache_goes_to_cache_dir_then_relative_after_save(assets, tmp_path):
    ob = be.make_head()
    assert generate(assets, mode="POINT_CACHE") == {"FINISHED"}, message()
    mod = ob.modifiers["W2S Cache"]
    assert os.path.isabs(mod.filepath) and Path(mod.filepath).is_file()
    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    assert generate(assets, mode="POINT_CACHE") == {"FINISHED"}, message()
    mod = bpy.data.objects["Head"].modifiers["W2S Cache"]
    assert mod.filepath.startswith("//") and (tmp_path / "shot_Head_w2s.pc2").is_file()
