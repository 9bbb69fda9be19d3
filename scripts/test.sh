#!/usr/bin/env bash
# The whole test suite on a fresh machine: system packages, .venv with the test extras, pytest.
# system-packages.sh installs Debian packages with apt-get (root, or sudo; it asks only for what is
# missing and skips on other systems); the corpus, alignment and training tests need them.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "setup: checking the system packages (speech engines, word lists; apt-get, needs root or sudo) ..."
./scripts/system-packages.sh
./scripts/setup.sh --test
echo "setup: running the test suite ..."
.venv/bin/python -m pytest "$@"
