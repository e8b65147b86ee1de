#!/usr/bin/env bash
# The main job on the embedded default data: simulate -> train -> sample -> evaluate -> report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/calo quickstart --out quickstart "$@"
