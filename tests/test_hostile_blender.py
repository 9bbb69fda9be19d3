"""Hostile inputs on the Blender side: odd audio paths, a failing batch run, an animator's action.

Real Blender (the ``bpy`` module); batch runs go through a subprocess with a bounded timeout.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import bpy  # noqa: I001
import numpy as np
import pytest

from tests import blender_env as be
from tests.bundles import speech_like
from wav2sem_blender import runtime
from wav2sem_blender.compat import action_fcurves
from wav2sem_blender.writers.controls import write_controls


@pytest.fixture(autouse=True)
def clean_scene():
    be.reset()
    yield


def generate_message(audio: str) -> tuple[set[str], str]:
    """Run the operator on ``audio`` (it is refused before any server starts); (result, message)."""
    try:
        result = bpy.ops.wav2sem.generate(audio=audio, object="Head")
    except RuntimeError:  # bpy.ops raises on an ERROR report; the message is in the status
        result = {"CANCELLED"}
    return result, bpy.context.window_manager.wav2sem_status.message


class Unblocker:
    """If anything opens the FIFO to read it, it would block forever; after ``seconds`` this opens
    the write end and closes it, so the reader sees end-of-file and the test fails instead of hanging."""

    def __init__(self, fifo: Path, seconds: float = 20.0) -> None:
        self.fifo, self.done = fifo, threading.Event()
        self.thread = threading.Thread(target=self._run, args=(seconds,), daemon=True)
        self.thread.start()

    def _run(self, seconds: float) -> None:
        if not self.done.wait(seconds):
            os.close(os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK))  # O_RDWR on a FIFO never blocks (Linux)

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX-only")
def test_named_pipe_as_audio_is_named_and_never_opened(tmp_path):
    ob = be.make_head()
    snap = be.scene_snapshot(ob)
    fifo = tmp_path / "voice.wav"
    os.mkfifo(fifo)
    guard = Unblocker(fifo)
    try:
        result, text = generate_message(str(fifo))
    finally:
        guard.stop()
    assert result == {"CANCELLED"}
    assert text == f"The audio path '{fifo}' is a named pipe (FIFO), not an audio file. Pick a regular audio file."
    after = be.scene_snapshot(ob)
    assert (after.pop("verts") == snap.pop("verts")).all() and after == snap


def test_folder_device_and_socket_as_audio_say_what_they_are(tmp_path):
    be.make_head()
    folder = tmp_path / "voice.wav"
    folder.mkdir()
    _, text = generate_message(str(folder))
    assert text == f"The audio path '{folder}' is a folder, not an audio file. Pick a regular audio file."
    if os.path.exists("/dev/null"):
        _, text = generate_message("/dev/null")
        assert text == "The audio path '/dev/null' is a device, not an audio file. Pick a regular audio file."
    if hasattr(socket, "AF_UNIX"):
        path = tmp_path / "s.wav"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))
            _, text = generate_message(str(path))
        assert text == f"The audio path '{path}' is a socket, not an audio file. Pick a regular audio file."


def test_only_an_absent_audio_path_does_not_exist(tmp_path):
    be.make_head()
    gone = tmp_path / "gone.wav"
    _, text = generate_message(str(gone))
    assert text == f"The audio file '{gone}' does not exist. Check the path."
    link = tmp_path / "link.wav"
    link.symlink_to(gone)
    _, text = generate_message(str(link))
    assert text == f"The audio path '{link}' is a link to a file that does not exist. Check the link."


# -- B. the controls writer keeps the animator's action playing ------------------------------------


def animated_rig() -> tuple[bpy.types.Object, bpy.types.Action]:
    """A small mesh with shape keys jawOpen and Blink, both keyed by the animator."""
    me = bpy.data.meshes.new("Head")
    me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    ob = bpy.data.objects.new("Head", me)
    bpy.context.scene.collection.objects.link(ob)
    ob.shape_key_add(name="Basis")
    for name in ("jawOpen", "Blink"):
        ob.shape_key_add(name=name, from_mix=False)
    blocks = ob.data.shape_keys.key_blocks
    for frame, jaw, blink in ((1, 0.7, 0.0), (10, 0.2, 1.0), (20, 0.7, 0.0)):
        blocks["jawOpen"].value, blocks["Blink"].value = jaw, blink
        blocks["jawOpen"].keyframe_insert("value", frame=frame)
        blocks["Blink"].keyframe_insert("value", frame=frame)
    action = ob.data.shape_keys.animation_data.action
    action.name = "Performance"
    return ob, action


def keyed(fc) -> list[tuple[float, float]]:
    return [(round(p.co[0], 4), round(p.co[1], 4)) for p in fc.keyframe_points]


def curve(action: bpy.types.Action, name: str):
    return next(fc for fc in action_fcurves(action) if fc.data_path == f'key_blocks["{name}"].value')


def value_at(ob: bpy.types.Object, name: str, frame: int) -> float:
    bpy.context.scene.frame_set(frame)
    return ob.data.shape_keys.key_blocks[name].value


def test_controls_go_into_the_animators_action_and_blink_keeps_playing():
    ob, action = animated_rig()
    key = ob.data.shape_keys
    blink_before = [value_at(ob, "Blink", f) for f in (1, 5, 10, 15)]
    weights = np.linspace(0.0, 1.0, 30, dtype=np.float32)[:, None]  # model fps = scene fps: frame f = row f-1
    info = write_controls(ob, weights, ["jawOpen"], 30.0, 1, 30.0)

    assert key.animation_data.action == action  # still the animator's action, not a new one
    assert info["replaced"] == ["jawOpen"] and info["backup"] == "Performance (before lip sync)"
    assert keyed(curve(action, "Blink")) == [(1, 0), (10, 1), (20, 0)]
    assert [value_at(ob, "Blink", f) for f in (1, 5, 10, 15)] == pytest.approx(blink_before)
    assert 0.1 < blink_before[1] < 0.9 and blink_before[2] == pytest.approx(1.0)  # a real blink, mid-curve too
    assert value_at(ob, "jawOpen", 10) == pytest.approx(weights[9, 0], abs=1e-6)
    assert value_at(ob, "jawOpen", 25) == pytest.approx(weights[24, 0], abs=1e-6)

    backup = bpy.data.actions[info["backup"]]  # the replaced curve survives, untouched
    assert backup.use_fake_user
    assert keyed(curve(backup, "jawOpen")) == [(1, 0.7), (10, 0.2), (20, 0.7)]
    assert keyed(curve(backup, "Blink")) == [(1, 0), (10, 1), (20, 0)]


def test_rerun_replaces_its_own_curves_without_piling_up_backups():
    ob, action = animated_rig()
    first = np.linspace(0.0, 1.0, 30, dtype=np.float32)[:, None]
    write_controls(ob, first, ["jawOpen"], 30.0, 1, 30.0)
    actions = sorted(a.name for a in bpy.data.actions)
    info = write_controls(ob, 1.0 - first, ["jawOpen"], 30.0, 1, 30.0)
    assert info["replaced"] == [] and info["backup"] is None
    assert sorted(a.name for a in bpy.data.actions) == actions
    assert value_at(ob, "jawOpen", 1) == pytest.approx(1.0) and value_at(ob, "Blink", 10) == pytest.approx(1.0)

    # the animator then edits our curve by hand: that edit is theirs, so it is kept before replacing
    key = ob.data.shape_keys
    key.key_blocks["jawOpen"].value = 0.5
    key.key_blocks["jawOpen"].keyframe_insert("value", frame=40)
    info = write_controls(ob, first, ["jawOpen"], 30.0, 1, 30.0)
    assert info["replaced"] == ["jawOpen"] and info["backup"] not in actions
    assert (40.0, 0.5) in keyed(curve(bpy.data.actions[info["backup"]], "jawOpen"))
    assert key.animation_data.action == action


def test_generate_reports_the_replaced_curves_and_the_backup(tmp_path):
    ob, action = animated_rig()
    audio = speech_like(tmp_path / "line.wav", 1.0)
    try:
        result = bpy.ops.wav2sem.generate(audio=str(audio), object="Head")  # the embedded default model
    except RuntimeError:
        result = {"CANCELLED"}
    finally:
        runtime.shutdown()
    text = bpy.context.window_manager.wav2sem_status.message
    assert result == {"FINISHED"}, text
    assert text.endswith("; replaced your curves for jawOpen (the originals are kept in the action "
                         "'Performance (before lip sync)')"), text
    assert ob.data.shape_keys.animation_data.action == action
    assert "Blink" in {fc.data_path.split('"')[1] for fc in action_fcurves(action)}
