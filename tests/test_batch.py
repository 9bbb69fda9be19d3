"""The headless entry, run as a subprocess: one file, and a folder with one bad file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.bundles import make_tiny_bundle, speech_like
from tests.helpers import write_head_blend

REPO = Path(__file__).resolve().parents[1]
BATCH = REPO / "wav2sem_blender" / "batch.py"


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batch")
    blend = tmp / "in.blend"
    write_head_blend(blend)
    return {"tmp": tmp, "blend": blend, "bundle": make_tiny_bundle(tmp / "bundle")}


def run_batch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BATCH), *args], capture_output=True, text=True, timeout=600)


def inspect(blend: Path) -> str:
    code = textwrap.dedent(
        f"""
        import bpy
        bpy.ops.wm.open_mainfile(filepath={str(blend)!r})
        ob = bpy.data.objects["Head"]
        keys = [kb.name for kb in ob.data.shape_keys.key_blocks] if ob.data.shape_keys else []
        mods = [m.name for m in ob.modifiers]
        print("KEYS", len(keys), "MODS", ",".join(mods) or "-", "FPS", ob.get("wav2sem_model_fps"))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return next(line for line in out.splitlines() if line.startswith("KEYS"))


def test_one_file_to_a_new_blend(scene):
    audio = speech_like(scene["tmp"] / "line.wav", 1.5)
    out = scene["tmp"] / "out" / "line.blend"
    proc = run_batch("--blend", str(scene["blend"]), "--object", "Head", "--audio", str(audio),
                     "--bundle", str(scene["bundle"]), "--out", str(out), "--start-frame", "10")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[1/1] line.wav: OK" in proc.stdout
    assert inspect(out) == "KEYS 18 MODS - FPS 30.0"
    assert inspect(scene["blend"]) == "KEYS 0 MODS - FPS None"  # the input is untouched


def test_folder_with_a_bad_file_finishes_the_rest_and_fails(scene):
    folder = scene["tmp"] / "voices"
    folder.mkdir()
    speech_like(folder / "a_good.wav", 1.5)
    (folder / "b_bad.wav").write_text("not audio at all")
    out_dir = scene["tmp"] / "shots"
    proc = run_batch("--blend", str(scene["blend"]), "--object", "Head", "--audio-dir", str(folder),
                     "--out-dir", str(out_dir), "--bundle", str(scene["bundle"]), "--mode", "point-cache")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    assert lines[0].startswith("[1/2] a_good.wav: OK") and lines[1].startswith("[2/2] b_bad.wav: FAILED")
    assert "not a readable audio file" in lines[1]
    # the good file's .blend, its point cache and its lip-sync report; nothing for the bad one
    assert sorted(p.name for p in out_dir.iterdir()) == ["a_good.blend", "a_good.lipsync.json", "a_good_Head_w2s.pc2"]
    assert inspect(out_dir / "a_good.blend") == "KEYS 0 MODS W2S Cache FPS 30.0"


def test_bad_arguments_exit_non_zero(scene, tmp_path):
    proc = run_batch("--blend", str(tmp_path / "missing.blend"), "--object", "Head", "--audio", "x.wav")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
