#!/usr/bin/env bash
# Lint and run the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# The HTML report is tested in headless Chromium; install Debian's package where we may.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "note: could not install chromium; the browser test of the report will be skipped"
fi
.venv/bin/ruff check src tests benchmarks
exec .venv/bin/python -m pytest "$@"
