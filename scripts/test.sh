#!/usr/bin/env bash
# The test suite: set up (including Chromium for the browser tests), then run every test,
# the slow real-data ones included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-browser
exec .venv/bin/python -m pytest "$@"
