#!/usr/bin/env bash
# The main job on a fresh machine: set up, then animate the sample sentence.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/python -m server demo --out out/demo "$@"
