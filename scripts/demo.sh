#!/usr/bin/env bash
# The main job: set up, then run the active-vs-passive demo and print where the report is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/alkit demo "$@"
