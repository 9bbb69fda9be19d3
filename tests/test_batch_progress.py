"""``batch.py`` over a folder as a user runs it: one warm server for every file, a progress bar on
a terminal (none in a log), and ``--pack-audio`` (issue 11, items 2, 5 and 6)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import soundfile as sf

from tests.bundles import make_tiny_bundle
from tests.helpers import REPO, write_head_blend
from tests.processes import servers_below
from tests.terminal import run_on_terminal

BATCH = REPO / "wav2sem_blender" / "batch.py"


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    """A .blend with a 5023-vertex head, a tiny vertex model and a folder of three 2 s speech clips."""
    tmp = tmp_path_factory.mktemp("batch-progress")
    blend = tmp / "shot.blend"
    write_head_blend(blend)
    audio, rate = sf.read(REPO / "assets" / "sample_sentence.wav", dtype="float32")
    voice = tmp / "voice"
    voice.mkdir()
    for i, start in enumerate((0.0, 1.0, 2.0)):
        sf.write(voice / f"line{i + 1}.wav", audio[int(start * rate) : int((start + 2.0) * rate)], rate)
    return {"tmp": tmp, "blend": blend, "voice": voice, "bundle": make_tiny_bundle(tmp / "ff")}


def batch_args(shot, out_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(BATCH), "--blend", str(shot["blend"]), "--object", "Head", "--audio-dir",
            str(shot["voice"]), "--out-dir", str(out_dir), "--bundle", str(shot["bundle"]), "--mode", "compact",
            *extra]


def packed_sounds(blend: Path) -> list[tuple[str, int]]:
    """(file path, packed bytes) of every sound in ``blend``, read in a fresh Blender."""
    code = textwrap.dedent(
        f"""
        import bpy
        bpy.ops.wm.open_mainfile(filepath={str(blend)!r})
        for s in bpy.data.sounds:
            print("SOUND", s.filepath, s.packed_file.size if s.packed_file else 0)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return [(line.split()[1], int(line.split()[2])) for line in out.splitlines() if line.startswith("SOUND")]


def test_a_folder_runs_on_one_warm_server_with_a_bar_on_the_terminal(shot):
    out_dir = shot["tmp"] / "shots"
    servers: set[int] = set()
    run = run_on_terminal(batch_args(shot, out_dir, "--pack-audio"), REPO, timeout=600,
                          watch=lambda pid: servers.update(servers_below(pid)))
    assert run.returncode == 0, run.stdout[-2000:] + run.screen[-2000:]
    lines = [line for line in run.stdout.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in lines] == ["[1/3] line1.wav", "[2/3] line2.wav", "[3/3] line3.wav"]
    assert all(": OK " in line and "audio packed into the .blend" in line for line in lines), lines
    # one server for the whole folder: open_mainfile between files does not stop it
    assert len(servers) == 1, servers
    frames = run.screen.split("\r")
    assert any(f.startswith("0/3 files |") and "line1.wav: Lip sync: " in f for f in frames), run.screen[-1500:]
    assert any(f.startswith("3/3 files |\u2588") for f in frames), run.screen[-800:]
    for i in (1, 2, 3):
        [(path, size)] = packed_sounds(out_dir / f"line{i}.blend")
        assert path.endswith(f"line{i}.wav") and size == (shot["voice"] / f"line{i}.wav").stat().st_size


def test_no_bar_when_stderr_is_not_a_terminal(shot):
    proc = subprocess.run(batch_args(shot, shot["tmp"] / "logged"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "files |" not in proc.stderr
    assert sum(line.startswith("[") for line in proc.stdout.splitlines()) == 3
    assert packed_sounds(shot["tmp"] / "logged" / "line1.blend")[0][1] == 0  # packing only when asked
