#!/usr/bin/env bash
# The GPU part of `lstm-assets bench`, for a lent GPU box that has torch, numpy, pandas,
# pyarrow, scikit-learn (and the core's other libraries) but no dagster and no network.
#
#   OUT=/some/dir bash scripts/gpu_bench.sh            # 164 symbols x 20 years (a few minutes)
#   OUT=/some/dir bash scripts/gpu_bench.sh --quick    # 16 symbols x 5 years
#   LSTM_BENCH_DRY_RUN=1 OUT=/tmp/g bash scripts/gpu_bench.sh   # tiny, on CPU: checks the script
#
# Writes $OUT/gpu_bench.md (the table), $OUT/gpu_bench.json (every figure) and
# $OUT/gpu_bench.log. Extra arguments go to `python -m lstm_assets.bench.gpu`
# (--symbols N, --years Y, --group-size G, --workers W, --skip "step,step", --plain).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="${OUT:-$PWD/gpu_bench_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
args=(--out "$OUT")
if [ "${LSTM_BENCH_DRY_RUN:-0}" = "1" ]; then args+=(--dry-run); fi

{
  echo "== $(date -u +%FT%TZ) $(hostname)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader || echo "nvidia-smi: not found"
  # the core must import without dagster: fail loudly if anything on this path pulls it in
  "$PY" - <<'PY'
import sys
import torch, numpy, pandas, sklearn, pyarrow  # noqa: F401  (what the core needs)
import lstm_assets.bench.gpu  # noqa: F401
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda",
      torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
assert "dagster" not in sys.modules, "dagster was imported on the GPU bench path"
PY
} 2>&1 | tee "$OUT/gpu_bench.log"

"$PY" -m lstm_assets.bench.gpu "${args[@]}" "$@" 2>&1 | tee -a "$OUT/gpu_bench.log"
exit "${PIPESTATUS[0]}"
