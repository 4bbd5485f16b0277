#!/usr/bin/env bash
# One entry point for set-up and use; see README.md.
#   bash run.sh demo   set up .venv, then run the whole chain on demo data (~10 min on 2 cores)
#   bash run.sh test   set up .venv (with dev tools), then run the test suite
#   bash run.sh ui     set up .venv, then start the Dagster UI on http://127.0.0.1:3000
# Environment: LSTM_TORCH (default torch==2.13.0) picks the torch build; PYTHON the interpreter.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  # torch first, pinned: an open range would pull a multi-GB CUDA build onto a CPU machine.
  # A GPU user sets LSTM_TORCH to the CUDA build they want (or installs it into .venv first).
  if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "$VENV/bin/pip" install -q "${LSTM_TORCH:-torch==2.13.0}"
  fi
  # keep that torch: without a pin pip may "upgrade" it to another (CUDA) build while resolving
  "$VENV/bin/python" -c "import torch; print('torch==' + torch.__version__)" \
    > "$VENV/torch-pin.txt" 2>/dev/null
  "$VENV/bin/pip" install -q -c "$VENV/torch-pin.txt" -e ".[dev]"
}

export DAGSTER_HOME=${DAGSTER_HOME:-$PWD/.dagster_home}
cmd=${1:-demo}
shift || true
case "$cmd" in
  demo) setup; exec "$VENV/bin/lstm-assets" run "$@" ;;
  test) setup; exec "$VENV/bin/python" -m pytest "$@" ;;
  ui)   setup; exec "$VENV/bin/lstm-assets" ui "$@" ;;
  *) echo "usage: bash run.sh demo|test|ui [args]" >&2; exit 2 ;;
esac
