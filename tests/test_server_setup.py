"""The server environment set-up (the Set Up button's script) and the interpreter check."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

from wav2sem_blender.preferences import check_interpreter

REPO = Path(__file__).resolve().parents[1]


def test_check_accepts_this_interpreter_and_names_whats_missing(tmp_path):
    ok, message = check_interpreter(sys.executable)
    assert ok and message.startswith("Ready: torch") and "device cpu" in message
    venv.EnvBuilder(with_pip=False).create(tmp_path / "bare")
    ok, message = check_interpreter(str(tmp_path / "bare" / "bin" / "python"))
    assert not ok and "lacks the package 'torch'" in message and "Set Up" in message
    ok, message = check_interpreter(str(tmp_path / "nothing"))
    assert not ok and "not a Python interpreter" in message


def test_setup_creates_a_working_server_environment(tmp_path):
    # The pinned CPU wheel keeps this to the package registries (no multi-GB CUDA download).
    target = tmp_path / "env"
    proc = subprocess.run(
        [sys.executable, str(REPO / "server" / "setup_env.py"), "--target", str(target),
         "--torch", "cpu", "--torch-spec", "torch==2.13.0", "--torch-index", ""],
        capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    fractions = [float(ln.split()[1]) for ln in lines if ln.startswith("PROGRESS ")]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    python = lines[-1].removeprefix("PYTHON ")
    ok, message = check_interpreter(python)
    assert ok, message
