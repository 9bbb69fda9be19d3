#!/usr/bin/env bash
# The whole test suite on a fresh machine: set up (with test extras), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
.venv/bin/python -m pytest "$@"
