#!/usr/bin/env bash
# Create .venv with the server's dependencies (--test: the test extras; --demo: Blender as a module).
# The CPU torch pin goes in first so pip never pulls the multi-GB CUDA build here;
# pyproject.toml itself accepts any torch >= 2.2 (users with GPUs install a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
extra=""
[ "${1:-}" = "--test" ] && extra="[test]"
[ "${1:-}" = "--demo" ] && extra="[blender]"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0" || .venv/bin/python -m pip install -q "torch>=2.2"
.venv/bin/python -m pip install -q -e ".${extra}"
