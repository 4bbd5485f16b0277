"""Time the data stages of two source trees on the same raw files, alternating, for a ratio.

    git worktree add /tmp/before <commit>
    python scripts/ab_data_stages.py /tmp/before . RAW_DIR [--rounds 4]

Each run is a fresh process that imports ``lstm_assets`` from its tree and calls that tree's
``bench.data_stages.time_data_stages`` (raw -> clean -> sequences per symbol, as a range run
does) into a fresh warehouse; in a tree without the ``lstm_assets.bench`` package, the same
function of its ``core.bench`` module (``run_stages``). The two trees alternate and swap order
each round, so both see about the same load; the paired per-round ratios are the figure to
quote on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import lstm_assets
assert lstm_assets.__file__.startswith(sys.argv[1]), lstm_assets.__file__
from lstm_assets.core.settings import Settings
try:
    from lstm_assets.bench.data_stages import stage_totals, time_data_stages
    from lstm_assets.bench.demo import demo_layout
except ModuleNotFoundError as e:  # a tree whose benchmark is the module core.bench
    if e.name != "lstm_assets.bench":
        raise
    from lstm_assets.core import bench
    demo_layout, time_data_stages = bench._layout, bench.run_stages
    stage_totals = bench._stage_totals
layout = demo_layout(Path(sys.argv[2]), Path(sys.argv[3]))
rows = time_data_stages(layout, layout.symbols(), Settings(device="cpu", num_threads=1))
tot = stage_totals(rows)
tot["failed"] = [r["symbol"] for r in rows if not r["ok"]]
print("RESULT " + json.dumps(tot))
"""


def run(tree: Path, raw: Path, wh: Path) -> dict:
    shutil.rmtree(wh, ignore_errors=True)
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(raw), str(wh)],
                         capture_output=True, text=True, cwd=tree, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"{tree}: run failed\n{out.stderr[-3000:]}")
    return json.loads(lines[0][7:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("raw", type=Path)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    trees = {"before": a.before.resolve(), "after": a.after.resolve()}
    work = Path(tempfile.mkdtemp(prefix="ab_stages_"))
    results: list[dict] = []
    try:
        for r in range(a.rounds):
            order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
            row = {"round": r, "load_start": os.getloadavg()[0]}
            for name in order:
                row[name] = run(trees[name], a.raw.resolve(), work / name)
                t = row[name]
                print(f"round {r} {name}: {t['seconds']:.1f}s (raw {t['raw_s']:.1f}, clean "
                      f"{t['clean_s']:.1f}, sequences {t['seq_s']:.1f}), "
                      f"{t['rows_per_second']:,.0f} rows/s, failed {t['failed']}", flush=True)
            row["ratio"] = row["before"]["seconds"] / row["after"]["seconds"]
            row["load_end"] = os.getloadavg()[0]
            results.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = [r["ratio"] for r in results]
    print(f"before / after: median {statistics.median(ratios):.2f}x "
          f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
