#!/usr/bin/env bash
# The model comparison's pooled families on a lent GPU box (torch, numpy, pandas, pyarrow,
# scikit-learn; no dagster): 164 demo symbols x 20 years (weak mode), 4 walk-forward folds, each
# pooled family timed alone (target: <= 60 s a family).
#
#   OUT=/some/dir bash scripts/gpu_compare.sh
#   LSTM_BENCH_DRY_RUN=1 OUT=/tmp/g bash scripts/gpu_compare.sh   # 8 x 3 years on CPU: checks it
#
# Writes $OUT/<family>/comparison.{json,md}, its plot and $OUT/gpu_compare.log (the seconds of
# each family and the device).
#
# The comparison's statistics need arch (its bootstraps and SPA test), which a GPU box's own
# image may lack; the networks need no other package. Where arch is missing, the wheels in .whl/
# are installed first (--target, no index), e.g. for a Python 3.12 image, fetched where pip
# reaches PyPI:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl arch==8.0.0
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="${OUT:-$PWD/gpu_compare_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
if ! "$PY" -c "import arch" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/lstm_site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/lstm_site"
fi
SYMBOLS=164 YEARS=20 DEVICE=cuda
if [ "${LSTM_BENCH_DRY_RUN:-0}" = "1" ]; then SYMBOLS=8 YEARS=3 DEVICE=cpu; fi
{
  echo "== $(date -u +%FT%TZ) $(hostname) $SYMBOLS symbols x $YEARS years on $DEVICE"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total \
    --format=csv,noheader || echo "nvidia-smi: not found"
  "$PY" - "$OUT/raw" "$SYMBOLS" "$YEARS" <<'PY'
import sys
from pathlib import Path
from lstm_assets.core.demo import DemoSpec, generate
out = Path(sys.argv[1])
if not out.exists():
    generate(out, DemoSpec(symbols=int(sys.argv[2]), years=int(sys.argv[3]), mode="weak",
                           defect_share=0.0))
assert "dagster" not in sys.modules, "the core imported dagster"
PY
  for fam in lstm gru alstm; do
    t0=$(date +%s.%N)
    "$PY" -m lstm_assets.compare_cli --raw-dir "$OUT/raw" --families "$fam" --folds 4 \
      --resamples 200 --out "$OUT/$fam" --set device="$DEVICE" --set num_threads=0 \
      > "$OUT/$fam.out" 2> "$OUT/$fam.err"
    t1=$(date +%s.%N)
    "$PY" -c "import sys; print(f'{sys.argv[1]}: {float(sys.argv[3]) - float(sys.argv[2]):.1f} s \
(target <= 60 s), with reading and cleaning the files')" "$fam" "$t0" "$t1"
    grep -m1 "Verdict" "$OUT/$fam.out" | cut -c1-300 || true
  done
} 2>&1 | tee "$OUT/gpu_compare.log"
