"""What the training batch costs in memory and buys in speed, for one 20-year demo symbol.

    python scripts/memory_vs_batch.py [--batches 1,4,16,64] [--eval-slices 64,8] [--years 20]

For each batch size (and CPU validation slice, ``trainees.EVAL_SLICE_CPU``): the training stage's
peak RSS growth from the bench's memory probe (a fresh process, same warm-up and accounting as
``lstm-assets bench --sections memory``) as (growth - model/optimizer state) / matrix, the
figure the performance issue asks to keep <= 2x; and the training throughput of one epoch of
``core.train.fit`` at that batch, one thread, in this process, against batch 64 in the same
run (the faster of two rounds run in opposite orders). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,4,16,64")
    ap.add_argument("--eval-slices", default="64,8")
    ap.add_argument("--years", type=int, default=20)
    args = ap.parse_args()
    import torch

    from lstm_assets.bench.demo import demo_layout, make_demo
    from lstm_assets.bench.memory import run_probe
    from lstm_assets.core import stages
    from lstm_assets.core.sequences import SequenceSet
    from lstm_assets.core.settings import Settings
    from lstm_assets.core.train import fit

    torch.set_num_threads(1)
    base = Settings(device="cpu", num_threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        raw = make_demo(Path(tmp), 1, args.years, seed=11, defect_share=0.0)
        layout = demo_layout(raw, Path(tmp) / "wh")
        sym = layout.symbols()[0]
        stages.run_clean(layout, sym, base)
        stages.run_sequences(layout, sym, base)
        clean = layout.warehouse.clean_frame(sym)
        seq = SequenceSet.load(layout.warehouse.sequences(sym))
        batches = [int(b) for b in args.batches.split(",")]
        slices = [int(e) for e in args.eval_slices.split(",")]
        fit(seq, base, max_epochs=1)  # warm-up
        speed = dict.fromkeys(batches, 0.0)
        for order in (batches, batches[::-1]):  # two rounds, opposite orders: the faster counts
            for b in order:
                res = fit(seq, base.replace(batch_size=b), max_epochs=1)
                speed[b] = max(speed[b], res.sequences_per_second)
        ref = speed.get(64) or speed[max(batches)]
        print(f"one {args.years}-year symbol: matrix {seq.X.nbytes / 1e6:.2f} MB, "
              f"{len(seq.end_rows('train'))} train windows\n")
        print("| batch | validation slice | training peak growth | (growth - state) / matrix "
              "| windows/s | x batch 64 |")
        print("|---|---|---|---|---|---|")
        for b in batches:
            for e in slices:
                p = run_probe(clean, base.replace(batch_size=b), 1, "project", eval_slice=e)
                r = (p["train_peak_growth"] - p["model_optimizer_bytes"]) / p["matrix_bytes"]
                print(f"| {b} | {e} | {p['train_peak_growth'] / 1e6:.1f} MB | {r:.1f}x | "
                      f"{speed[b]:,.0f} | {speed[b] / ref:.2f} |", flush=True)


if __name__ == "__main__":
    main()
