"""Pack Audio and the status-bar stage line, in real Blender with the real server subprocess.

A packed sound must survive what breaks a relative path: the .blend moved to another folder and
the recording gone. "Plays from packed data" is checked on Blender's own evaluated sound (the
audaspace sound the sequencer plays), whose samples must equal the recording's.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import bpy  # noqa: I001
import numpy as np
import pytest
import soundfile as sf

from tests import blender_env as be
from tests.bundles import make_tiny_bundle, speech_like
from tests.helpers import REPO
from wav2sem_blender import operators
from wav2sem_blender.compat import all_strips


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pack")
    audio, rate = sf.read(REPO / "assets" / "sample_sentence.wav", dtype="float32")
    voice = tmp / "voice.wav"
    sf.write(voice, audio[: 2 * rate], rate, subtype="PCM_16")
    return {"tmp": tmp, "bundle": make_tiny_bundle(tmp / "ff"), "voice": voice}


@pytest.fixture(autouse=True)
def clean_scene():
    be.reset()
    yield
    operators.CANCEL.clear()


def shot_with_lip_sync(assets, folder: Path, **kwargs) -> tuple[Path, Path]:
    """A saved .blend in ``folder`` with lip sync and its sound strip; the recording lies next to it."""
    folder.mkdir()
    voice = folder / "voice.wav"
    shutil.copy(assets["voice"], voice)
    be.make_head()
    blend = folder / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))  # saved first: the strip's path is then relative
    result = bpy.ops.wav2sem.generate(audio=str(voice), object="Head", bundle=str(assets["bundle"]),
                                      mode="COMPACT", **kwargs)
    assert result == {"FINISHED"}, bpy.context.window_manager.wav2sem_status.message
    bpy.ops.wm.save_mainfile()
    return blend, voice


def move_away(blend: Path, voice: Path, elsewhere: Path) -> Path:
    """The .blend to another folder and the recording deleted, then the moved file opened."""
    elsewhere.mkdir()
    moved = elsewhere / blend.name
    shutil.move(blend, moved)
    voice.unlink()
    bpy.ops.wm.open_mainfile(filepath=str(moved))
    return moved


def played_samples(sound: bpy.types.Sound) -> np.ndarray:
    """What the sequencer plays for ``sound``: the evaluated audaspace sound's samples. (Only for a
    sound that has its data: on a missing file audaspace throws past Python and aborts the process.)"""
    return sound.evaluated_get(bpy.context.evaluated_depsgraph_get()).factory.data()[:, 0]


def sound_strip() -> bpy.types.Strip:
    return next(s for s in all_strips(bpy.context.scene) if s.type == "SOUND")


@pytest.mark.skipif(not bpy.app.build_options.audaspace, reason="this Blender build has no audio")
def test_packed_audio_plays_after_the_blend_moves_and_the_recording_is_gone(assets, tmp_path):
    bpy.context.scene.wav2sem.pack_audio = True  # the panel's checkbox
    blend, voice = shot_with_lip_sync(assets, tmp_path / "a")
    assert "audio packed into the .blend" in bpy.context.window_manager.wav2sem_status.message
    size = voice.stat().st_size
    expected, _ = sf.read(voice, dtype="float32")

    move_away(blend, voice, tmp_path / "b")
    sound = sound_strip().sound
    assert sound.filepath == "//voice.wav"  # the path is still relative, and now leads nowhere
    assert sound.packed_file is not None and sound.packed_file.size == size
    played = played_samples(sound)
    assert len(played) == len(expected)
    assert np.abs(played - expected).max() <= 1.0 / 32767  # 16-bit samples, converted two ways


@pytest.mark.skipif(not bpy.app.build_options.audaspace, reason="this Blender build has no audio")
def test_without_packing_a_moved_blend_loses_its_sound(assets, tmp_path):
    blend, voice = shot_with_lip_sync(assets, tmp_path / "a")  # the default: not packed
    assert "packed" not in bpy.context.window_manager.wav2sem_status.message
    move_away(blend, voice, tmp_path / "b")
    sound = sound_strip().sound
    # the control, what packing is for: no data in the file, and the relative path leads nowhere
    assert sound.packed_file is None
    assert not Path(bpy.path.abspath(sound.filepath)).exists()


def test_status_bar_shows_the_stage_while_generating_and_is_cleared_after(assets):
    assert operators.status_line("encode", 0.4) == "Lip sync: encoding audio 40%"
    assert operators.status_line("decode", 1.2) == "Lip sync: decoding motion 100%"
    be.make_head()
    # long enough that encoding and decoding span many of the operator's 50 ms polls, even on a fast machine
    long_voice = speech_like(assets["tmp"] / "long.wav", 20.0)
    slow_bundle = make_tiny_bundle(assets["tmp"] / "ct", arch="codetalker")
    seen: set[str] = set()
    stop = threading.Event()

    def watch() -> None:  # the operator blocks the main thread headless: look from another one
        while not stop.is_set():
            seen.update(operators.STATUS_BAR[:])
            stop.wait(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = bpy.ops.wav2sem.generate(audio=str(long_voice), object="Head", bundle=str(slow_bundle),
                                          mode="COMPACT")
    finally:
        stop.set()
        watcher.join()
    assert result == {"FINISHED"}
    assert seen and all(line.startswith("Lip sync: ") and line.endswith("%") for line in seen), seen
    assert any("decoding motion" in line or "encoding audio" in line for line in seen), seen
    assert operators.STATUS_BAR == []  # cleared at the end
