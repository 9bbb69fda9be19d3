#!/usr/bin/env bash
# The whole test suite on a fresh machine: system packages, .venv with the test extras, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/system-packages.sh
./scripts/setup.sh --test
.venv/bin/python -m pytest "$@"
