"""The lip-sync report in Blender: after Generate the panel's list holds every /p b m/ with its scene frame,
an entry's button jumps there, and the report survives a save and reload. Real bpy, the real server
subprocess with the embedded default, the sample sentence with its transcript."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import bpy  # noqa: I001
import numpy as np
import pytest

from tests import blender_env as be
from wav2sem_blender import operators
from wav2sem_contract.lipsync import report_path

pytest.importorskip("pocketsphinx", reason="the report needs pocketsphinx (a base dependency)")

REPO = Path(__file__).resolve().parents[1]
SAMPLE = str(REPO / "assets" / "sample_sentence.wav")
TEXT = "The sheep on the ship could not sleep, so Pam made a map."


@pytest.fixture(autouse=True)
def clean_scene():
    be.reset()
    yield
    operators.CANCEL.clear()


def generate(**kwargs) -> set[str]:
    return be.generate_mouth(audio=SAMPLE, **kwargs)


def mouth_close_at(ob, frame: float) -> float:
    return be.mouth_close_curve(ob).evaluate(frame)


def entries(settings) -> list[tuple]:
    return [(e.phone, e.word, round(e.start, 3), e.frame, e.state) for e in settings.lipsync]


class Row:
    """Stands in for a UIList row's layout: records the operator button it gets."""

    def __init__(self, log: list):
        self.log, self.alert = log, False

    def row(self):
        return Row(self.log)

    def operator(self, idname, text="", icon="NONE", emboss=True):
        assert idname == "wav2sem.jump_to_frame"
        record = {"text": text, "icon": icon, "row": self}
        self.log.append(record)
        return type("Op", (), {"__setattr__": lambda op, k, v: record.__setitem__(k, v)})()


def drawn_rows(settings) -> list[dict]:
    log: list[dict] = []
    ui_list = bpy.types.WAV2SEM_UL_lipsync
    # Blender calls draw_item with every parameter of its RNA signature: the method must take them all
    rna = [p.identifier for p in bpy.types.UIList.bl_rna.functions["draw_item"].parameters]
    assert list(inspect.signature(ui_list.draw_item).parameters)[1:] == rna
    for i, item in enumerate(settings.lipsync):
        ui_list.draw_item(None, bpy.context, Row(log), settings, item, 0, settings, "lipsync_index", i, 0)
    return [{**r, "alert": r["row"].alert} for r in log]


def test_generate_lists_the_bilabials_and_a_click_jumps_to_the_frame(tmp_path):
    scene = be.reset(fps=24)  # the result's 30 fps land on 24 fps scene frames
    scene.frame_start = 10
    be.make_head()
    bpy.ops.wav2sem.add_rig(object="Head")
    settings = scene.wav2sem
    settings.transcript = TEXT
    assert generate() == {"FINISHED"}, bpy.context.window_manager.wav2sem_status.message
    listed = entries(settings)
    assert [(p, w) for p, w, *_ in listed] == [("P", "sheep"), ("P", "ship"), ("P", "sleep"), ("P", "pam"),
                                                ("M", "pam"), ("M", "made"), ("M", "map"), ("P", "map")]
    report = json.loads(settings.lipsync_json)
    assert report["source"] == "transcript" and settings.lipsync_object == "Head"
    ob = bpy.data.objects["Head"]
    for entry, item in zip(report["entries"], settings.lipsync, strict=True):
        # the result's frame, placed as the writer keys it: scene frame = start + frame * 24 / 30
        assert item.frame == round(10 + entry["frame"] * 24 / 30)
        # the state agrees with the keyed curve: mouthClose above 0.5 inside the bilabial (scene time)
        inside = np.arange(np.ceil(item.start * 24), np.ceil(item.end * 24)) + 10
        if inside.size == 0:
            inside = np.array([item.frame])
        keyed = max(mouth_close_at(ob, f) for f in inside)
        closed = keyed > 0.5
        if abs(keyed - 0.5) > 0.05:  # the curve between 30 fps keys read at 24 fps frames: far from the line
            assert (item.state == "CLOSED") is closed, (item.word, keyed, item.state)
    assert settings.lipsync_summary.startswith(f"lip sync: {report['closed']} of 8 bilabials closed")
    assert settings.lipsync_summary in bpy.context.window_manager.wav2sem_status.message

    # the panel: the summary row and the list, each row a jump button, only the open ones in red
    seen = []
    bpy.types.WAV2SEM_PT_main.draw(type("P", (), {"layout": be.Recorder(seen)})(), bpy.context)
    assert "use_report" in seen
    settings.lipsync[2].state = "OPEN"
    rows = drawn_rows(settings)
    assert [r["text"] for r in rows][3:5] == [f"p  'pam'  {listed[3][2]:.2f} s  frame {listed[3][3]}",
                                              f"m  'pam'  {listed[4][2]:.2f} s  frame {listed[4][3]}"]
    assert [r["alert"] for r in rows] == [i == 2 for i in range(8)]
    assert [r["frame"] for r in rows] == [e.frame for e in settings.lipsync]
    assert rows[2]["icon"] == "CANCEL" and rows[0]["icon"] == ("CHECKMARK" if listed[0][4] == "CLOSED" else "CANCEL")
    settings.lipsync[2].state = listed[2][4]

    target = settings.lipsync[5].frame
    assert scene.frame_current != target
    assert bpy.ops.wav2sem.jump_to_frame(frame=target) == {"FINISHED"}
    assert scene.frame_current == target

    # saved with the .blend, read back as it was
    path = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert len(bpy.context.scene.wav2sem.lipsync) == 0
    bpy.ops.wm.open_mainfile(filepath=str(path))
    settings = bpy.context.scene.wav2sem
    assert entries(settings) == listed and json.loads(settings.lipsync_json) == report
    assert settings.lipsync_summary.startswith("lip sync: ")


def test_generate_without_the_report_clears_the_list():
    be.make_head()
    bpy.ops.wav2sem.add_rig(object="Head")
    settings = bpy.context.scene.wav2sem
    assert generate(text=TEXT) == {"FINISHED"}
    assert len(settings.lipsync) == 8
    settings.use_report = False
    assert generate(text=TEXT) == {"FINISHED"}
    assert len(settings.lipsync) == 0 and settings.lipsync_summary == "" and settings.lipsync_json == ""
    assert "lip sync" not in bpy.context.window_manager.wav2sem_status.message


def test_batch_prints_the_line_and_writes_the_report_next_to_each_output(tmp_path):
    folder = tmp_path / "voice"
    folder.mkdir()
    (folder / "line.wav").write_bytes(Path(SAMPLE).read_bytes())
    (folder / "line.txt").write_text(TEXT, encoding="utf-8")
    blend = tmp_path / "in.blend"
    be.make_head()
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    proc = subprocess.run([sys.executable, str(REPO / "wav2sem_blender" / "batch.py"), "--blend", str(blend),
                           "--object", "Head", "--audio-dir", str(folder), "--out-dir", str(tmp_path / "shots")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(report_path(tmp_path / "shots" / "line.blend").read_text(encoding="utf-8"))
    assert report["source"] == "transcript" and len(report["entries"]) == 8
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("[1/1]"))
    assert f"lip sync: {report['closed']} of 8 bilabials closed" in line, line


def test_close_heard_from_the_panel_closes_every_bilabial_recognition_finds():
    # a real recording (the synthetic sample's voice is not made out by the recogniser) and no transcript
    clip = REPO / "assets" / "real_speech" / "librispeech_1995-1837-0001.flac"
    be.make_head()
    bpy.ops.wav2sem.add_rig(object="Head")
    settings = bpy.context.scene.wav2sem
    seen = []
    bpy.types.WAV2SEM_PT_main.draw(type("P", (), {"layout": be.Recorder(seen)})(), bpy.context)
    assert "use_close_recognised" in seen and settings.use_close_recognised is False
    settings.use_close_recognised = True
    assert be.generate_mouth(audio=str(clip)) == {"FINISHED"}
    report = json.loads(settings.lipsync_json)
    assert report["source"] == "recognised" and report["bilabials"] >= 5
    assert [e.state for e in settings.lipsync] == ["CLOSED"] * report["bilabials"], entries(settings)
    assert f"recognised words: {report['bilabials']} lip closures enforced" in \
        bpy.context.window_manager.wav2sem_status.message


def test_batch_close_recognised_closes_what_it_hears(tmp_path):
    clip = REPO / "assets" / "real_speech" / "librispeech_1995-1837-0001.flac"
    blend = tmp_path / "in.blend"
    be.make_head()
    bpy.ops.wav2sem.add_rig(object="Head")
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    out = tmp_path / "shot.blend"
    proc = subprocess.run([sys.executable, str(REPO / "wav2sem_blender" / "batch.py"), "--blend", str(blend),
                           "--object", "Head", "--audio", str(clip), "--out", str(out), "--close-recognised"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(report_path(out).read_text(encoding="utf-8"))
    assert report["source"] == "recognised" and report["bilabials"] >= 5
    assert report["closed"] == report["bilabials"], report["entries"]
