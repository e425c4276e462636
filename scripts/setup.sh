#!/usr/bin/env bash
# Idempotent set-up: a .venv in the repository with langadapt and its test/optional extras.
# Installs the CPU build torch==2.13.0 first where it is available, so the package's torch
# range never pulls a multi-GB CUDA build on a CPU-only machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! python -c "import torch" 2>/dev/null; then
  pip install -q torch==2.13.0 2>/dev/null || echo "setup: torch==2.13.0 not available here; pip will choose a torch build" >&2
fi
pip install -q -e ".[dev,fasttext,eval,parity,word2vec,transtok,scale]" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import langadapt, torch; print(f'setup: langadapt {langadapt.__version__}, torch {torch.__version__}')"
