#!/usr/bin/env bash
# Create .venv with calosurrogate and what it needs. Installs torch 2.13.0 first, so that a
# machine carrying that CPU build on disk takes it in seconds instead of a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.calosurrogate-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q "torch==2.13.0" || .venv/bin/python -m pip install -q "torch>=2.13"
  .venv/bin/python -m pip install -q -e ".[test]"
  # the geant4 engine's physics list, compiled now against the installed wheel (a few seconds)
  .venv/bin/python -m calosurrogate.simulate.geant4
  touch "$stamp"
fi
