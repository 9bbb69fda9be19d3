"""Rough edges a new user meets first: help texts, packaging metadata, the demo's Blender calls,
the extension's manifest (issue 11, item 6), and scripts/setup.sh's failures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings

import pytest
import tomllib

from tests.helpers import REPO


def help_text(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", *args, "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split())  # argparse wraps lines: compare words


@pytest.mark.parametrize("module", ["server", "training"])
def test_top_level_description_is_plain_text(module):
    text = help_text(module)
    assert "``" not in text
    assert text.split("options:")[0].count("Wav2Sem Lip Sync") == 1


def test_infer_help_says_what_the_default_model_writes():
    text = help_text("server", "infer")
    assert "control weights (T, K)" in text and "vertex offsets (T, V, 3)" in text
    assert "auto picks a CUDA GPU when PyTorch sees one, else the CPU (default: auto)" in text
    assert "(default: 600.0)" in text


@pytest.mark.parametrize("command,expected", [
    (("server", "benchmark"), ["audio lengths to time, in seconds, comma-separated (default: 5,20,60)",
                               "host models to time, comma-separated (default: faceformer,codetalker)"]),
    (("training", "train-default"), ["(stage 1) (default: 40)", "with and without Wav2Sem) (default: 40)",
                                     "voices such as flite:slt"]),
    (("server", "serve"), ["(default: 1048576)"]),
])
def test_options_explain_themselves_and_name_their_defaults(command, expected):
    text = help_text(*command)
    for phrase in expected:
        assert phrase in text, phrase
    assert "(default: None)" not in text and "(default: False)" not in text


def test_package_metadata_has_an_spdx_licence_and_builds_without_warnings(tmp_path):
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "GPL-3.0-or-later"
    # what pip's build step runs, with the installed setuptools, warnings shown
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))")
    proc = subprocess.run([sys.executable, "-W", "always", "-c", code, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Deprecat" not in proc.stderr and "license" not in proc.stderr.lower(), proc.stderr
    metadata = (tmp_path / proc.stdout.split()[-1] / "METADATA").read_text()
    assert "License-Expression: GPL-3.0-or-later" in metadata


def test_manifest_does_not_send_users_to_the_papers_code():
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    assert "wslh852" not in manifest.get("website", "")
    assert "README.md" in (REPO / "blender_manifest.toml").read_text()  # where the comment points instead


def test_demo_scene_uses_no_call_deprecated_for_blender_6(tmp_path):
    import bpy

    from wav2sem_blender.demo import build_scene
    from wav2sem_blender.demo_head import CHARACTERS

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_scene("a")
    assert not [w for w in caught if "removed in Blender" in str(w.message)], [str(w.message) for w in caught]
    # the look reaches the renderer: the skin colour on the material's shader, the background on the world's
    skin = bpy.data.materials["Skin"].node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value
    assert tuple(skin) == pytest.approx((*CHARACTERS["a"].skin, 1.0))
    world = bpy.context.scene.world.node_tree.nodes["Background"].inputs["Color"].default_value
    assert tuple(round(c, 3) for c in world) == (0.09, 0.1, 0.12, 1.0)



# A stand-in for .venv/bin/python: reports the Python version it is told and fails every pip
# install, as with no package index in reach; it has no pip of its own; it logs its calls.
FAKE_PYTHON = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls.log"
case "$*" in
  *version_info*) echo "$FAKE_VERSION" ;;
  *"pip --version"*) exit 1 ;;  # a .venv without pip (the repair test)
  *"pip install"*) echo "ERROR: Could not find a version that satisfies the requirement (no index reached)" >&2; exit 1 ;;
esac
"""


def run_setup(tmp_path, version: str, *args: str) -> tuple[subprocess.CompletedProcess, str]:
    """scripts/setup.sh in a copy of the layout it needs (never the checkout's own .venv)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    proc = subprocess.run(["bash", str(tmp_path / "scripts" / "setup.sh"), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60, env={**os.environ, "FAKE_VERSION": version})
    log = python.parent / "calls.log"
    return proc, log.read_text() if log.exists() else ""


def test_setup_says_which_step_failed_and_what_to_do(tmp_path):
    proc, calls = run_setup(tmp_path, "3.11", "--test")
    assert proc.returncode != 0
    assert "no index reached" in proc.stderr  # pip's own reason stays visible
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("setup: error: upgrading pip and setuptools failed"), proc.stderr
    assert "package index" in last and "./scripts/setup.sh --test again" in last, last
    assert "setuptools>=77" in calls  # a new 3.11 venv's setuptools 65.5 cannot build the contract wheel


def test_setup_for_blender_refuses_a_python_other_than_3_11_before_installing(tmp_path):
    proc, calls = run_setup(tmp_path, "3.12", "--demo")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert "needs Python 3.11, and .venv has Python 3.12" in proc.stderr
    assert "PYTHON=python3.11 ./scripts/setup.sh --demo" in proc.stderr
    assert "pip" not in calls


def test_setup_repairs_a_venv_whose_creation_was_interrupted(tmp_path):
    # an interrupted `python -m venv` leaves .venv/bin/python without pip; every later run failed
    proc, calls = run_setup(tmp_path, "3.11", "--test")
    lines = calls.splitlines()
    assert "-m pip --version" in lines[1] and "-m ensurepip --upgrade" in lines[2], calls
    assert "setup: restoring pip in .venv" in proc.stdout
