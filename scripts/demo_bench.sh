#!/usr/bin/env bash
# The newcomer's first command, timed on a fresh clone: `git clone` into a temp folder, then
#   install  = bash run.sh setup      (.venv with what demo and ui need; pip's cache is used)
#   demo     = bash run.sh demo       (demo data, every asset of every symbol, the leaderboard)
#   dev      = bash run.sh setup dev  (what the tests add: dev tools, scale-out clients)
# and prints the seconds of each, the demo's mean model and oracle accuracy and their gap, the
# machine (CPU model, cores, load average) and the commit. A benchmark, not a test: run it with
# the machine otherwise idle.
#
#   bash scripts/demo_bench.sh [REPO]     REPO: a path or URL to clone (default: this checkout)
# Environment: WORKTREE=1 also carries this checkout's uncommitted changes and untracked files
# into the clone (the commit then reads <sha>+worktree); DEMO_ARGS: arguments for `run.sh demo`
# (e.g. --full); KEEP=1 keeps the temp folder; SKIP_DEV=1 skips the dev install.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
REPO=${1:-$HERE}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/demo-bench.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$TMP"' EXIT
CLONE=$TMP/clone

load0=$(cut -d' ' -f1-3 /proc/loadavg)
git clone -q "$REPO" "$CLONE"
commit=$(git -C "$CLONE" rev-parse --short HEAD)
if [ "${WORKTREE:-0}" = 1 ]; then
  git -C "$HERE" diff HEAD --binary > "$TMP/worktree.patch"
  if [ -s "$TMP/worktree.patch" ]; then git -C "$CLONE" apply "$TMP/worktree.patch"; fi
  (cd "$HERE" && git ls-files --others --exclude-standard -z) \
    | (cd "$HERE" && xargs -0 -r cp --parents -t "$CLONE")
  commit="$commit+worktree"
fi

now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$1" "$2"; }

cd "$CLONE"
t0=$(now)
bash run.sh setup > "$TMP/setup.log" 2>&1 || { tail -20 "$TMP/setup.log"; exit 1; }
t1=$(now)
# shellcheck disable=SC2086  # DEMO_ARGS is a list of arguments
bash run.sh demo ${DEMO_ARGS:-} > "$TMP/demo.log" 2>&1 || { tail -40 "$TMP/demo.log"; exit 1; }
t2=$(now)
dev_s="skipped"; dev_unit=""
if [ "${SKIP_DEV:-0}" != 1 ]; then
  bash run.sh setup dev > "$TMP/dev.log" 2>&1 || { tail -20 "$TMP/dev.log"; exit 1; }
  dev_s=$(secs "$t2" "$(now)"); dev_unit=" s"
fi

.venv/bin/python - "$CLONE/data/warehouse/leaderboard.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
m = s["mean"]
model, oracle = m["model_accuracy"]["mean"], m["oracle_accuracy"]["mean"]
base = max(v["mean"] for k, v in m.items()
           if k.endswith("_accuracy") and k not in ("model_accuracy", "oracle_accuracy")
           and not k.startswith("model_"))
print(f"symbols:             {s['symbols']}")
print(f"mean model accuracy: {100 * model:.1f}%")
print(f"mean oracle accuracy:{100 * oracle:6.1f}%")
print(f"gap:                 {100 * (oracle - model):.1f} points below the oracle (target <= 3)")
print(f"best baseline:       {100 * base:.1f}%")
PY
echo "install (setup):     $(secs "$t0" "$t1") s"
echo "demo wall:           $(secs "$t1" "$t2") s   (bash run.sh demo ${DEMO_ARGS:-})"
echo "dev extras added:    ${dev_s}${dev_unit:-}   (bash run.sh setup dev, after the install)"
echo "machine:             $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, load average $load0 before the install"
echo "commit:              $commit"
grep -E "symbols in [0-9]+s" "$TMP/demo.log" || true
