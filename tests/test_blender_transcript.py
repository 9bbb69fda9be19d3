"""Transcript-assisted mode in Blender: the panel's Transcript reaches the request, the summary says
what was done (or the notice), and batch.py reads a sidecar per audio file. Real bpy, the real server
subprocess with the embedded default, the real VOCA recording."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import bpy  # noqa: I001
import numpy as np
import pytest

from tests import blender_env as be
from tests.helpers import shared_fixture
from wav2sem_blender import operators
from wav2sem_blender.batch import transcript_for

pytest.importorskip("pocketsphinx", reason="transcript mode needs pocketsphinx (a base dependency)")

REPO = Path(__file__).resolve().parents[1]
TEXT = "Severe myopia contributed to Ron's inferiority complex."


@pytest.fixture(scope="module")
def speech():
    return str(shared_fixture("speech", "voca_test_sentence.wav"))


@pytest.fixture(autouse=True)
def clean_scene():
    be.reset()
    yield
    operators.CANCEL.clear()


generate = be.generate_mouth


def mouth_close(ob) -> np.ndarray:
    return np.array([kp.co[1] for kp in be.mouth_close_curve(ob).keyframe_points])


def test_the_panels_transcript_text_block_reaches_the_request_and_the_summary(speech):
    settings = bpy.context.scene.wav2sem
    assert settings.bl_rna.properties["transcript"].type == "STRING"
    assert settings.bl_rna.properties["transcript_text"].fixed_type.identifier == "Text"
    be.make_head()
    bpy.ops.wav2sem.add_rig(object="Head")
    block = bpy.data.texts.new("line 12")
    block.write(TEXT.replace(" inferiority", "\ninferiority"))  # a script spread over lines
    settings.transcript = "this line is not used while a text block is chosen"
    settings.transcript_text = block
    settings.audio = speech
    assert generate() == {"FINISHED"}, bpy.context.window_manager.wav2sem_status.message
    summary = bpy.context.window_manager.wav2sem_status.message
    assert "transcript: 7 words aligned, 5 lip closures, the sentence vector from the text" in summary
    with_text = mouth_close(bpy.data.objects["Head"])
    assert with_text.min() >= 0.0 and with_text.max() <= 1.0 and (with_text > 0.999).sum() >= 5

    # the operator's own text wins over the panel; a wrong one is ignored with the notice, audio only
    assert generate(text="Bob bought a big blue boat for his mother.") == {"FINISHED"}
    summary = bpy.context.window_manager.wav2sem_status.message
    assert "Transcript ignored: it does not match what is said in the audio" in summary
    # an empty text: audio only, nothing said about transcripts
    assert generate(text="") == {"FINISHED"}
    assert "ranscript" not in bpy.context.window_manager.wav2sem_status.message
    assert not np.array_equal(mouth_close(bpy.data.objects["Head"]), with_text)


def test_batch_reads_a_sidecar_transcript_per_audio_file(speech, tmp_path):
    folder = tmp_path / "voice"
    folder.mkdir()
    shutil.copy(speech, folder / "a_line.wav")
    (folder / "a_line.txt").write_text(TEXT + "\n", encoding="utf-8")
    shutil.copy(speech, folder / "b_line.wav")  # no sidecar: audio only
    assert transcript_for(folder / "a_line.wav") == (TEXT + "\n", folder / "a_line.txt")
    assert transcript_for(folder / "a_line.wav", ignore=True) == ("", None)
    assert transcript_for(folder / "b_line.wav") == ("", None)
    blend = tmp_path / "in.blend"
    be.reset()
    be.make_head()
    bpy.context.scene.wav2sem.transcript = "a scene setting batch.py must not apply to every file"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    proc = subprocess.run([sys.executable, str(REPO / "wav2sem_blender" / "batch.py"), "--blend", str(blend),
                           "--object", "Head", "--audio-dir", str(folder), "--out-dir", str(tmp_path / "shots")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    assert "transcript: 7 words aligned, 5 lip closures" in lines[0], lines[0]
    assert "ranscript" not in lines[1], lines[1]
