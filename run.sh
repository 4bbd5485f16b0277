#!/usr/bin/env bash
# One entry point for set-up and use; see README.md.
#   bash run.sh demo   set up .venv, then run the whole chain on demo data (quick demo: ~3 min
#                      on 2 cores; bash run.sh demo --full: the full-size demo)
#   bash run.sh test   set up .venv (with dev tools and the scale-out clients), then run the tests
#   bash run.sh ui     set up .venv, then start the Dagster UI on http://127.0.0.1:3000
#   bash run.sh setup  set up .venv for demo and ui only (bash run.sh setup dev: for test too)
# Environment: LSTM_TORCH (default torch==2.13.0) picks the torch build; PYTHON the interpreter.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv

# setup EXTRAS: "" (demo, ui: the project's own dependencies) or "[dev]" (the tests: dev tools
# plus the scale-out clients: Postgres, Celery, Kubernetes, S3). pip runs when pyproject.toml,
# the torch build or the extras changed since the last install (a stamp in .venv), or always
# with FORCE=1.
setup() {
  local extras=$1
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
  local want have
  want="$(cat pyproject.toml "$VENV/torch-pin.txt" | cksum)"
  have="$(cat "$VENV/installed${extras}.txt" 2>/dev/null || true)"
  # an install with [dev] holds everything the plain one needs
  [ -n "$extras" ] || [ -n "$have" ] || have="$(cat "$VENV/installed[dev].txt" 2>/dev/null || true)"
  if [ "${FORCE:-0}" = 1 ] || [ "$have" != "$want" ]; then
    "$VENV/bin/pip" install -q -c "$VENV/torch-pin.txt" -e ".${extras}"
    echo "$want" > "$VENV/installed${extras}.txt"
  fi
}

export DAGSTER_HOME=${DAGSTER_HOME:-$PWD/.dagster_home}
cmd=${1:-demo}
shift || true
case "$cmd" in
  demo)  setup ""; exec "$VENV/bin/lstm-assets" run "$@" ;;
  test)  setup "[dev]"; exec "$VENV/bin/python" -m pytest "$@" ;;
  ui)    setup ""; exec "$VENV/bin/lstm-assets" ui "$@" ;;
  setup) if [ "${1:-}" = dev ]; then FORCE=1 setup "[dev]"; else FORCE=1 setup ""; fi ;;
  *) echo "usage: bash run.sh demo|test|ui|setup [args]" >&2; exit 2 ;;
esac
