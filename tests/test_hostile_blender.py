"""Hostile inputs on the Blender side: odd audio paths, a failing batch run, an animator's action.

Real Blender (the ``bpy`` module); batch runs go through a subprocess with a bounded timeout.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import bpy  # noqa: I001
import pytest

from tests import blender_env as be


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
