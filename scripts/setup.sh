#!/usr/bin/env bash
# Create .venv with the server's dependencies (--test: the test extras; --demo: Blender as a module).
# The CPU torch pin goes in first so pip never pulls the multi-GB CUDA build here;
# pyproject.toml itself accepts any torch >= 2.2 (users with GPUs install a CUDA build).
# A line before each step says what is being installed (the whole set-up takes minutes);
# on a terminal pip shows its own download progress, in a log it stays quiet.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
extra=""
what="the server's packages (transformers, soundfile, soxr, safetensors)"
[ "$mode" = "--test" ] && extra="[test]" && what="the server's packages, the test tools and Blender as a module (bpy, ~400 MB)"
[ "$mode" = "--demo" ] && extra="[blender]" && what="the server's packages and Blender as a module (bpy, ~400 MB) with Pillow (the GIF preview)"
quiet="-q"
[ -t 1 ] && quiet=""

step=""
say() { step="$*"; echo "setup: $*"; }
fail() { echo "setup: error: $*" >&2; exit 1; }
# pip's own message says what went wrong; this line says which step it was and what to do next.
trap 'echo "setup: error: ${step% ...} failed (see the message above). Check that the package index can be reached, then run ./scripts/setup.sh $mode again: it keeps .venv and what is already installed." >&2' ERR

if [ ! -x .venv/bin/python ]; then
  command -v "$PY" >/dev/null 2>&1 ||
    fail "no Python found (neither ${PYTHON:-python3.11} nor python3). Install Python 3.11, or name it: PYTHON=/path/to/python3.11 ./scripts/setup.sh $mode"
  say "creating .venv with $("$PY" --version 2>&1) ..."
  "$PY" -m venv .venv
fi
if [ -n "$extra" ]; then
  # bpy 5.0.1 exists for Python 3.11 only; pip would skip it without a word (an environment marker)
  version=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ "$version" = "3.11" ] ||
    fail "Blender as a module (bpy 5.0.1, for $mode) needs Python 3.11, and .venv has Python $version. Install Python 3.11, remove .venv and run PYTHON=python3.11 ./scripts/setup.sh $mode"
fi
# A .venv whose creation was interrupted (Ctrl-C, a full disk) has a python but no pip: put pip back
# instead of failing on every later run.
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  say "restoring pip in .venv (its creation was interrupted) ..."
  .venv/bin/python -m ensurepip --upgrade
fi
# setuptools too: a new 3.11 venv has 65.5, which cannot build a wheel without build isolation
# (scripts/build_extension.py builds the contract wheel that way) nor read pyproject's SPDX licence.
say "upgrading pip and setuptools ..."
.venv/bin/python -m pip install $quiet --upgrade pip "setuptools>=77"
say "installing torch 2.13.0 (CPU build) ..."
.venv/bin/python -m pip install $quiet "torch==2.13.0" || .venv/bin/python -m pip install $quiet "torch>=2.2"
say "installing $what ..."
.venv/bin/python -m pip install $quiet -e ".${extra}"
say "done: .venv is ready"
