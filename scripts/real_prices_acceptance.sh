#!/usr/bin/env bash
# Real-data acceptance: run the whole chain (`lstm-assets run`) on a handful of real daily OHLCV
# files and check that every usable symbol gets a model and a report, that the unusable ones
# (AMT: header only; BHF: ~20 rows) fail alone with a clear message, and that the leaderboard
# lists exactly the good ones, that each model is kept as a version with a threshold chosen on
# validation, and that the signals and their scorecard cover the good ones. Then it runs scripts/count_unexplained_jumps.py on the whole folder:
# no one-day |log return| > 0.3 may reach training unexplained (splits are back-adjusted, other
# jumps excluded). Exit status 0 only when all of that holds.
#
#   bash scripts/real_prices_acceptance.sh ../shared/real_prices
#
# The files are copied into a temporary raw folder; the warehouse and DAGSTER_HOME are
# temporary too (set KEEP_WORK=1 to keep them). Settings are small so it takes a few minutes on
# 2 CPU cores: override with e.g. ACCEPTANCE_SET="--set max_epochs=10".
# GOOD / BAD pick other symbols (file stems in FOLDER, e.g. GOOD="AAPL NYSE:LMT").
set -euo pipefail

SRC=${1:?usage: bash scripts/real_prices_acceptance.sh FOLDER}
[ -d "$SRC" ] || { echo "acceptance: $SRC is not a folder" >&2; exit 2; }
SRC=$(cd "$SRC" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
GOOD=${GOOD:-"AAPL MSFT TDG NYSE:LMT"}
BAD=${BAD:-"AMT BHF"}
read -r -a SETTINGS <<< "${ACCEPTANCE_SET:---set max_epochs=3 --set hidden_size=16 --set bootstrap_samples=200 --set device=cpu}"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/real_prices_acceptance.XXXXXX")
if [ "${KEEP_WORK:-0}" = 1 ]; then
  echo "acceptance: work folder $WORK (kept)"
else
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/raw"
for stem in $GOOD $BAD; do
  [ -f "$SRC/$stem.csv" ] || { echo "acceptance: $SRC/$stem.csv is missing" >&2; exit 2; }
  cp "$SRC/$stem.csv" "$WORK/raw/$stem.csv"  # a copy: links to outside the raw folder are refused
done
export DAGSTER_HOME="$WORK/dagster_home"

echo "acceptance: lstm-assets run on $(ls "$WORK/raw" | tr '\n' ' ')"
cd "$ROOT"
set +e
"$PY" -m lstm_assets.cli run --raw-dir "$WORK/raw" --warehouse-dir "$WORK/wh" --symbols all \
  "${SETTINGS[@]}" 2>&1 | tee "$WORK/run.log"
rc=${PIPESTATUS[0]}
set -e

set +e
GOOD="$GOOD" BAD="$BAD" RC="$rc" "$PY" - "$WORK" <<'EOF'
"""Check the run's output, warehouse and leaderboard; print every problem, exit 1 on any."""
import json
import os
import re
import sys
from pathlib import Path

work = Path(sys.argv[1])
wh, log = work / "wh", (work / "run.log").read_text()
sym = lambda stem: stem.split(":")[-1].upper()  # NYSE:LMT.csv is symbol LMT
good = [sym(s) for s in os.environ["GOOD"].split()]
bad = [sym(s) for s in os.environ["BAD"].split()]
expected = {"AMT": "header but no data rows", "BHF": "history too short"}
problems = []
want_rc = "1" if bad else "0"  # 1: some symbols failed (the bad ones), the others done
if os.environ["RC"] != want_rc:
    problems.append(f"lstm-assets run exited {os.environ['RC']}, expected {want_rc}")
for s in good:
    if not re.search(rf"\] {re.escape(s)}: ok", log):
        problems.append(f"{s}: no 'ok' line in the run output")
    for f in (f"lstm_model/{s}.safetensors", f"evaluation_report/{s}.json",
              f"evaluation_report/{s}.md"):
        if not (wh / f).is_file():
            problems.append(f"{s}: {f} is missing")
for s in bad:
    m = re.search(rf"\] {re.escape(s)}: FAILED \([^)]*\): (.*)", log)
    if not m:
        problems.append(f"{s}: no 'FAILED' line in the run output")
        continue
    msg = m.group(1)
    want = [f"{s}.csv", "Fix: ", expected.get(s, "")]
    if not all(w in msg for w in want):
        problems.append(f"{s}: unclear failure message {msg!r} (wanted {want})")
    if (wh / f"lstm_model/{s}.safetensors").exists():
        problems.append(f"{s}: has a model although it failed")
# the lifecycle: each good model kept as a version, its report with the chosen threshold, a
# signal per good symbol (in the history too) and a scorecard of them
for s in good:
    rep_path = wh / f"evaluation_report/{s}.json"
    if rep_path.is_file():
        rep = json.loads(rep_path.read_text())
        version = rep.get("model_version")
        if not version or not (wh / f"model_versions/{s}/{version}.safetensors").is_file():
            problems.append(f"{s}: serving model version {version} not kept in model_versions/")
        if not (rep.get("threshold") or {}).get("curve"):
            problems.append(f"{s}: report has no ABSTAIN threshold chosen on validation")
try:
    import pandas as pd
    signals = pd.read_parquet(wh / "latest_signals.parquet")
    history = pd.read_parquet(wh / "signal_history.parquet")
    if sorted(signals["symbol"]) != sorted(good) or sorted(set(history["symbol"])) != sorted(good):
        problems.append(f"signals for {sorted(signals['symbol'])}, expected {sorted(good)}")
    card = json.loads((wh / "signal_outcomes.json").read_text())
    if card["overall"]["signals"] != len(good):
        problems.append(f"scorecard counts {card['overall']['signals']} signals, expected "
                        f"{len(good)}")
except (OSError, KeyError, ValueError) as e:
    problems.append(f"signals / scorecard unreadable: {type(e).__name__}: {e}")
board_path = wh / "leaderboard.json"
if board_path.is_file():
    rows = sorted(r["symbol"] for r in json.loads(board_path.read_text())["rows"])
    if rows != sorted(good):
        problems.append(f"leaderboard lists {rows}, expected {sorted(good)}")
else:
    problems.append("leaderboard.json is missing")
if problems:
    print("real-data acceptance FAILED:\n  " + "\n  ".join(problems))
    sys.exit(1)
print(f"real-data acceptance passed: models + reports for {', '.join(good)}; "
      f"{', '.join(bad)} failed alone with clear messages; leaderboard lists {len(good)} symbols; "
      "model versions kept, thresholds chosen on validation, signals scored in the scorecard")
EOF
checked=$?

echo "acceptance: splits and price jumps in every file of $SRC"
"$PY" scripts/count_unexplained_jumps.py "$SRC"
jumps=$?
set -e
[ "$checked" = 0 ] && [ "$jumps" = 0 ]
