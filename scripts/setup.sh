#!/usr/bin/env bash
# Create .venv with the server's dependencies (--test: the test extras; --demo: Blender as a module).
# The CPU torch pin goes in first so pip never pulls the multi-GB CUDA build here;
# pyproject.toml itself accepts any torch >= 2.2 (users with GPUs install a CUDA build).
# A line before each step says what is being installed (the whole set-up takes minutes);
# on a terminal pip shows its own download progress, in a log it stays quiet.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
extra=""
what="the server's packages (transformers, soundfile, soxr, safetensors)"
[ "${1:-}" = "--test" ] && extra="[test]" && what="the server's packages, the test tools and Blender as a module (bpy, ~400 MB)"
[ "${1:-}" = "--demo" ] && extra="[blender]" && what="the server's packages and Blender as a module (bpy, ~400 MB)"
quiet="-q"
[ -t 1 ] && quiet=""

say() { echo "setup: $*"; }

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $("$PY" --version 2>&1) ..."
  "$PY" -m venv .venv
fi
say "upgrading pip ..."
.venv/bin/python -m pip install $quiet --upgrade pip
say "installing torch 2.13.0 (CPU build) ..."
.venv/bin/python -m pip install $quiet "torch==2.13.0" || .venv/bin/python -m pip install $quiet "torch>=2.2"
say "installing $what ..."
.venv/bin/python -m pip install $quiet -e ".${extra}"
say "done: .venv is ready"
