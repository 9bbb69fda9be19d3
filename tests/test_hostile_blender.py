"""Hostile inputs on the Blender side: odd audio paths, a failing batch run, an animator's action.

Real Blender (the ``bpy`` module); batch runs go through a subprocess with a bounded timeout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import bpy  # noqa: I001
import numpy as np
import pytest

from tests import blender_env as be
from tests.bundles import make_tiny_bundle, speech_like
from tests.helpers import write_head_blend
from tests.test_batch import inspect as inspect_blend
from tests.test_batch import run_batch
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
    assert ("; replaced your curves for jawOpen (the originals are kept in the action "
            "'Performance (before lip sync)')") in text, text
    assert ob.data.shape_keys.animation_data.action == action
    assert "Blink" in {fc.data_path.split('"')[1] for fc in action_fcurves(action)}


# -- A. a failed batch run changes nothing on disk --------------------------------------------------


@pytest.fixture(scope="module")
def batch_scene(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile-batch")
    blend = write_head_blend(tmp / "in.blend")
    bad = tmp / "bad.wav"
    bad.write_bytes(np.random.default_rng(1).bytes(4000))  # not audio: the server refuses it
    good = speech_like(tmp / "good.wav", 1.0)
    return {"blend": blend, "bundle": make_tiny_bundle(tmp / "bundle"), "bad": bad, "good": good}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_state(folder: Path) -> dict[str, str]:
    """Every file in ``folder`` (hidden ones too) with its hash: a failed run must leave it exactly so."""
    return {p.name: sha(p) if p.is_file() else "<dir>" for p in sorted(folder.iterdir())}


def batch(scene: dict, audio: Path, *args: str) -> subprocess.CompletedProcess:
    return run_batch("--blend", str(scene["blend"]), "--object", "Head", "--audio", str(audio),
                     "--bundle", str(scene["bundle"]), *args)


def an_old_output(folder: Path, scene: dict) -> Path:
    """A .blend already at the output path (a copy of the input made earlier, plus its own cache)."""
    folder.mkdir()
    out = folder / "shot.blend"
    shutil.copy(scene["blend"], out)
    (folder / "shot_Head_w2s.pc2").write_bytes(b"an older cache that shot.blend uses")
    return out


def test_failed_run_leaves_an_existing_out_byte_identical(batch_scene, tmp_path):
    out = an_old_output(tmp_path / "shots", batch_scene)
    before = folder_state(out.parent)
    proc = batch(batch_scene, batch_scene["bad"], "--out", str(out), "--mode", "point-cache")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[1/1] bad.wav: FAILED" in proc.stdout and "not a readable audio file" in proc.stdout
    assert "Saved" not in proc.stdout + proc.stderr  # no "Info: Saved as" before a failure
    assert folder_state(out.parent) == before  # the old .blend and its cache, byte for byte; nothing added


def test_failed_in_place_run_leaves_the_input_untouched(batch_scene, tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    blend = folder / "scene.blend"
    shutil.copy(batch_scene["blend"], blend)
    before = folder_state(folder)
    proc = batch({**batch_scene, "blend": blend}, batch_scene["bad"], "--mode", "point-cache")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Saved" not in proc.stdout + proc.stderr
    assert folder_state(folder) == before


def test_failure_while_saving_puts_the_old_cache_back(batch_scene, tmp_path):
    """The run succeeds and writes its cache, then the save fails (a folder sits where the .blend1
    backup must go): the old output and the old cache come back byte for byte, no temporary is left."""
    out = an_old_output(tmp_path / "shots", batch_scene)
    (out.parent / "shot.blend1").mkdir()
    before = folder_state(out.parent)
    proc = batch(batch_scene, batch_scene["good"], "--out", str(out), "--mode", "point-cache")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("[1/1]"))
    assert line == (f"[1/1] good.wav: FAILED The result could not be saved as '{out}' (the old file cannot be kept "
                    "as 'shot.blend1': Is a directory). Check the folder.")
    assert folder_state(out.parent) == before


def test_success_replaces_the_output_in_one_step_and_keeps_the_old_as_blend1(batch_scene, tmp_path):
    out = an_old_output(tmp_path / "shots", batch_scene)
    old = sha(out)
    proc = batch(batch_scene, batch_scene["good"], "--out", str(out), "--mode", "point-cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[1/1] good.wav: OK" in proc.stdout and "Saved" not in proc.stdout
    assert sorted(folder_state(out.parent)) == ["shot.blend", "shot.blend1", "shot.lipsync.json", "shot_Head_w2s.pc2"]
    assert sha(out.with_name("shot.blend1")) == old
    assert (out.parent / "shot_Head_w2s.pc2").read_bytes().startswith(b"POINTCACHE2\0")
    assert inspect_blend(out) == "KEYS 0 MODS W2S Cache FPS 30.0"
    # the cache path stored in the output is relative to the output and resolves after reopening
    code = (
        "import bpy\n"
        f"bpy.ops.wm.open_mainfile(filepath={str(out)!r})\n"
        "m = bpy.data.objects['Head'].modifiers['W2S Cache']\n"
        "print('CACHE', m.filepath, bpy.path.abspath(m.filepath))\n"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    line = next(ln for ln in shown.splitlines() if ln.startswith("CACHE"))
    assert line == f"CACHE //shot_Head_w2s.pc2 {out.parent / 'shot_Head_w2s.pc2'}"


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_an_input_that_is_not_a_blend_is_refused_before_any_work(batch_scene, tmp_path):
    fake = tmp_path / "x.blend"
    fake.write_text("just some notes\n")
    out = tmp_path / "out.blend"
    line = one_error_line(batch({**batch_scene, "blend": fake}, batch_scene["good"], "--out", str(out)))
    assert line == f"error: '{fake}' is not a .blend file. Give a file saved by Blender with --blend."
    wav = batch_scene["good"]
    line = one_error_line(batch({**batch_scene, "blend": wav}, batch_scene["good"], "--out", str(out)))
    assert line == f"error: '{wav}' is not a .blend file. Give a file saved by Blender with --blend."
    line = one_error_line(batch({**batch_scene, "blend": tmp_path}, batch_scene["good"], "--out", str(out)))
    assert line == f"error: the input '{tmp_path}' is a folder, not a .blend file. Give a .blend file with --blend."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.blend"]  # nothing made


def test_an_output_that_cannot_be_written_is_refused_before_any_work(batch_scene, tmp_path):
    folder = tmp_path / "shot.blend"
    folder.mkdir()
    line = one_error_line(batch(batch_scene, batch_scene["good"], "--out", str(folder)))
    assert line == f"error: the output '{folder}' is a folder. Give a .blend file path with --out."
    notes = tmp_path / "notes.txt"
    notes.write_text("a file, not a folder")
    line = one_error_line(batch(batch_scene, batch_scene["good"], "--out", str(notes / "shot.blend")))
    assert line == f"error: cannot write '{notes / 'shot.blend'}' because '{notes}' is a file, not a folder. " \
                   "Choose another --out."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "shot.blend"]


def unwritable_folder(tmp_path: Path) -> Path | None:
    """A folder this process cannot create files in: a read-only one made here, or (as root, who may
    write anywhere on a normal disk) /sys; None when there is none."""
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        return locked
    try:
        fd, name = tempfile.mkstemp(dir="/sys")
    except OSError:
        return Path("/sys") if os.path.isdir("/sys") else None
    os.close(fd)
    os.unlink(name)
    return None


def test_a_read_only_output_folder_is_refused_before_any_work(batch_scene, tmp_path):
    locked = unwritable_folder(tmp_path)
    if locked is None:
        pytest.skip("no folder here is read-only for this user")
    try:
        line = one_error_line(batch(batch_scene, batch_scene["good"], "--out", str(locked / "shot.blend")))
    finally:
        if locked.is_relative_to(tmp_path):
            locked.chmod(0o755)
    assert line == (f"error: cannot write to the folder '{locked}' (Permission denied). "
                    "Choose a writable --out location.")
    assert not (locked / "shot.blend").exists()
