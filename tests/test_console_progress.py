"""Progress a user can see: a bar on a terminal, nothing but the final line in a log or pipe.

The commands run as a user runs them (subprocesses; the embedded default model), with stderr on
a real pseudo-terminal, and again with stderr on a pipe.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import soundfile as sf

from tests.helpers import REPO, shared_fixture
from tests.terminal import run_on_terminal

SAMPLE = REPO / "assets" / "sample_sentence.wav"
BAR = "\u2588"  # a full block: tqdm's bar


def visible_lines(screen: str) -> list[str]:
    """The non-empty lines a terminal shows at the end (what a carriage return drew over is gone)."""
    lines = screen.replace("\r\n", "\n").split("\n")
    return [line.rsplit("\r", 1)[-1].strip() for line in lines if line.rsplit("\r", 1)[-1].strip()]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """3 s of the sample sentence (real speech)."""
    audio, rate = sf.read(SAMPLE, dtype="float32")
    path = tmp_path_factory.mktemp("progress") / "clip.wav"
    sf.write(path, audio[: 3 * rate], rate)
    return path


def test_infer_draws_a_bar_with_its_stages_on_a_terminal(clip, tmp_path):
    out = tmp_path / "clip.npz"
    run = run_on_terminal([sys.executable, "-m", "server", "infer", "--audio", str(clip), "--out", str(out)],
                          REPO, timeout=300)
    assert run.returncode == 0, run.screen[-2000:]
    frames = run.screen.split("\r")
    # the bar is drawn from before the heavy imports (the first stage) to the end
    for stage in ("loading", "encode", "decode", "saving"):
        assert any(f.startswith(stage) for f in frames), stage
    assert any(f.startswith("saving") and "100%" in f and BAR in f for f in frames), run.screen[-600:]
    # the summary line, then the lip-sync report's line (the report is on by default)
    last = run.screen.rstrip().replace("\r\n", "\n").split("\n")[-2:]
    assert last[0].rstrip().endswith(f"frames at 30 fps written to {out}") and last[1].startswith("lip sync: "), last
    assert out.is_file()


def test_infer_prints_only_the_final_line_when_stderr_is_not_a_terminal(clip, tmp_path):
    out = tmp_path / "clip.npz"
    proc = subprocess.run([sys.executable, "-m", "server", "infer", "--audio", str(clip), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == f"90 frames at 30 fps written to {out}" and len(lines) == 2 and lines[1].startswith("lip sync: ")
    assert proc.stdout == ""


def test_an_error_on_a_terminal_is_one_line_without_a_bar_left_above_it(clip, tmp_path):
    # --out is a folder: found inside the bar (after torch is imported), so the bar must be wiped
    run = run_on_terminal([sys.executable, "-m", "server", "infer", "--audio", str(clip), "--out", str(tmp_path)],
                          REPO, timeout=300)
    assert run.returncode != 0
    assert "loading" in run.screen  # the bar was there
    visible = visible_lines(run.screen)
    assert len(visible) == 1 and visible[0].startswith("error: ") and "is a folder" in visible[0], run.screen


def test_an_error_inside_a_training_stage_is_one_line_without_a_bar_left_above_it():
    # no training clips: the semantic stage fails inside its epoch bar (ZeroDivisionError), and the
    # training commands' run_command prints the one error line
    code = ("import sys; from server.cli import run_command; from server.models.wav2sem import SemanticHeadSpec; "
            "from training.semantic import train_semantic; "
            "sys.exit(run_command(lambda a: train_semantic([], {}, SemanticHeadSpec(in_width=8), epochs=3), None))")
    # (-W ignore: with no batches the scheduler steps before the optimiser, and torch warns)
    run = run_on_terminal([sys.executable, "-W", "ignore", "-c", code], REPO, timeout=120)
    assert run.returncode == 1
    assert "semantic stage" in run.screen  # the bar was there
    visible = visible_lines(run.screen)
    assert len(visible) == 1 and visible[0].startswith("error: unexpected ZeroDivisionError"), run.screen


def test_convert_draws_its_stages_on_a_terminal(tmp_path):
    folder = shared_fixture("parity", "faceformer_vocaset")
    out = tmp_path / "bundle"
    run = run_on_terminal([sys.executable, "-m", "server", "convert", "--arch", "faceformer", "--checkpoint",
                           str(folder / "faceformer_vocaset.pth"), "--encoder", str(folder / "wav2vec2"),
                           "--dataset", "vocaset", "--out", str(out)], REPO, timeout=300)
    assert run.returncode == 0, run.screen[-2000:]
    frames = run.screen.split("\r")
    for stage in ("loading", "reading", "mapping", "saving"):
        assert any(f.startswith(stage) for f in frames), stage
    assert run.screen.rstrip().endswith(f"bundle written to {out}")


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (scripts/system-packages.sh)")
def test_make_corpus_draws_a_bar_on_a_terminal_and_none_in_a_pipe(tmp_path):
    args = [sys.executable, "-m", "training", "make-corpus", "--sentences", "2", "--pairs", "1",
            "--voices", "flite:slt,flite:awb", "--holdout-voices", "flite:awb", "--no-augment"]
    run = run_on_terminal([*args, "--out", str(tmp_path / "a")], REPO, timeout=300)
    assert run.returncode == 0, run.screen[-2000:]
    assert any(f.startswith("corpus:") and "clip" in f and BAR in f for f in run.screen.split("\r")), run.screen
    proc = subprocess.run([*args, "--out", str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "clips" in proc.stderr, proc.stderr
