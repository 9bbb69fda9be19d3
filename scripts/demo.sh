#!/usr/bin/env bash
# The main job on a fresh machine: set up (server + Blender as a module), then build the demo
# scene with the embedded default model: out/demo/demo.blend, the still strip out/demo/preview.png
# and the animated preview out/demo/preview.mp4 (with the sentence's sound) and preview.gif.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --demo
.venv/bin/python wav2sem_blender/demo.py --out out/demo "$@"
