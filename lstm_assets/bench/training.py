"""The ``training`` section: sequences/s of ``core.train.fit`` against the reference loop
(:mod:`lstm_assets.bench.reference`) on one symbol, same model, data, epochs and seed, in
paired rounds; the final validation losses; the achieved GFLOP/s of both against the measured
fp32 matmul GFLOP/s (FLOPs per sequence counted analytically)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lstm_assets.bench.config import VAL_LOSS_TOLERANCE
from lstm_assets.bench.context import Bench
from lstm_assets.bench.demo import demo_layout, make_demo
from lstm_assets.bench.reference import reference_fit
from lstm_assets.bench.yardsticks import (
    DEFAULT_THREADS,
    cpu_bf16_supported,
    lstm_flops_per_sequence,
    matmul_gflops,
)
from lstm_assets.core import stages
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.train import fit, pick_device


@dataclass
class _Rounds:
    """What the paired rounds measured, one entry per round (``matmul``: one more, after)."""

    project_sps: list[float] = field(default_factory=list)
    reference_sps: list[float] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)
    project_val: list[float] = field(default_factory=list)
    reference_val: list[float] = field(default_factory=list)
    project_best_val: list[float] = field(default_factory=list)
    reference_best_val: list[float] = field(default_factory=list)
    project_cpu: list[float] = field(default_factory=list)
    reference_cpu: list[float] = field(default_factory=list)
    matmul: list[float] = field(default_factory=list)


def _one_symbol(bench: Bench) -> SequenceSet:
    """One 'train_years' symbol without defects, through clean and sequences."""
    root = bench.work / "train"
    raw = make_demo(root, 1, bench.size.train_years, seed=11, defect_share=0.0)
    layout = demo_layout(raw, root / "wh")
    sym = layout.symbols()[0]
    stages.run_clean(layout, sym, bench.settings)
    stages.run_sequences(layout, sym, bench.settings)
    bench.details["train_clean_path"] = str(layout.warehouse.clean_frame(sym))
    return SequenceSet.load(layout.warehouse.sequences(sym))


def _one_round(bench: Bench, seq: SequenceSet, r: int, out: _Rounds) -> None:
    """Round ``r``: both loops with seed ``seed + r``, the first of the two alternating with the
    round (drift in load cancels out); the CPU seconds each whole run used (setup + training +
    validation) are counted too, which time spent waiting for a shared CPU does not inflate."""
    sz, st = bench.size, bench.settings.replace(seed=bench.settings.seed + r)
    for first in ((0, 1) if r % 2 == 0 else (1, 0)):
        c0 = time.process_time()
        if first == 0:
            res = fit(seq, st, max_epochs=sz.train_epochs)
            out.project_cpu.append(time.process_time() - c0)
        else:
            rr = reference_fit(seq, st, sz.train_epochs, batch_size=st.batch_size)
            out.reference_cpu.append(time.process_time() - c0)
    sps_r = rr.train_sequences * len(rr.epoch_seconds) / sum(rr.epoch_seconds)
    out.project_sps.append(res.sequences_per_second)
    out.reference_sps.append(sps_r)
    out.ratio.append(res.sequences_per_second / sps_r)
    out.project_val.append(res.history[-1]["val_loss"])
    out.reference_val.append(rr.final_val_loss)
    out.project_best_val.append(min(h["val_loss"] for h in res.history))
    out.reference_best_val.append(min(rr.val_losses))
    bench.say(f"  round {r + 1} (seed {st.seed}): project "
              f"{res.sequences_per_second:,.0f} seq/s (val {out.project_val[-1]:.4f}), "
              f"reference {sps_r:,.0f} seq/s (val {out.reference_val[-1]:.4f})")


def _paired_rounds(bench: Bench, seq: SequenceSet, device: str) -> _Rounds:
    """Warm both loops up, then ``rounds`` paired rounds, each right after a sustained matmul
    measurement under the same load (and one more after the last round)."""
    sz, st = bench.size, bench.settings
    out = _Rounds()
    # warm-up of both loops: one-time library initialisation, allocator growth
    fit(seq, st, max_epochs=1)
    reference_fit(seq, st, 1, batch_size=st.batch_size)
    for r in range(sz.rounds):
        out.matmul.append(matmul_gflops(sz.matmul_n, device=device, seconds=sz.matmul_seconds))
        _one_round(bench, seq, r, out)
    out.matmul.append(matmul_gflops(sz.matmul_n, device=device, seconds=sz.matmul_seconds))
    return out


def _round_figures(f: dict[str, Any], rounds: _Rounds, flops: float, burst: float) -> None:
    best_p, best_r = max(rounds.project_sps), max(rounds.reference_sps)
    machine = max(rounds.matmul)
    f["train_sequences_per_second"] = best_p
    f["reference_sequences_per_second"] = best_r
    # paired: each round's two runs saw about the same load; the median round is robust
    f["train_speedup_vs_reference"] = float(np.median(rounds.ratio))
    f["train_speedup_best_vs_best"] = best_p / best_r
    f["train_speedup_cpu_time"] = float(np.median(np.array(rounds.reference_cpu)
                                                  / np.array(rounds.project_cpu)))
    f["train_speedup_per_round"] = rounds.ratio
    f["train_val_loss"] = float(np.mean(rounds.project_val))
    f["reference_val_loss"] = float(np.mean(rounds.reference_val))
    f["train_val_loss_per_round"] = rounds.project_val
    f["reference_val_loss_per_round"] = rounds.reference_val
    f["train_best_val_loss"] = float(np.mean(rounds.project_best_val))
    f["reference_best_val_loss"] = float(np.mean(rounds.reference_best_val))
    f["train_mflop_per_sequence"] = flops / 1e6
    f["train_gflops"] = best_p * flops / 1e9
    f["reference_gflops"] = best_r * flops / 1e9
    f["machine_matmul_gflops"] = machine
    f["machine_matmul_burst_gflops"] = burst
    f["train_fraction_of_matmul"] = f["train_gflops"] / machine
    f["train_threads"] = torch.get_num_threads()


def _cpu_variants(bench: Bench, seq: SequenceSet, device: str) -> None:
    """The project loop with CPU bf16 autocast (where oneDNN has bf16) and at torch's default
    thread count (where the bench runs at another), for comparison."""
    sz, st, f = bench.size, bench.settings, bench.figures
    f["cpu_bf16_sequences_per_second"] = f["cpu_bf16_val_loss"] = None
    if device == "cpu" and cpu_bf16_supported():
        res = fit(seq, st, max_epochs=sz.train_epochs, autocast=True)
        f["cpu_bf16_sequences_per_second"] = res.sequences_per_second
        f["cpu_bf16_val_loss"] = res.history[-1]["val_loss"]
    f["default_threads"] = DEFAULT_THREADS
    f["default_threads_sequences_per_second"] = None
    if device == "cpu" and torch.get_num_threads() != DEFAULT_THREADS:
        res = fit(seq, st.replace(num_threads=DEFAULT_THREADS), max_epochs=1)
        f["default_threads_sequences_per_second"] = res.sequences_per_second
        torch.set_num_threads(f["train_threads"])


def _table_rows(bench: Bench, device: str) -> None:
    sz, f = bench.size, bench.figures
    best_p, val_p, val_r = (f["train_sequences_per_second"], f["train_val_loss"],
                            f["reference_val_loss"])
    ratio = f["train_speedup_vs_reference"]
    bench.add("training", "project loop (core.train.fit)",
              f"{best_p:,.0f} seq/s, {f['train_gflops']:.0f} GFLOP/s, val loss {val_p:.4f}")
    bench.add("training", "reference loop (DataLoader, .item() per batch)",
              f"{f['reference_sequences_per_second']:,.0f} seq/s, "
              f"{f['reference_gflops']:.0f} GFLOP/s, val loss {val_r:.4f}")
    bench.add("training", f"project / reference throughput (median of {sz.rounds} paired "
              "rounds)", f"{ratio:.2f}x (rounds: "
              + ", ".join(f"{x:.2f}" for x in f["train_speedup_per_round"]) + ")", ">= 0.95x",
              ratio >= 0.95)
    bench.add("training", "the same in CPU seconds of whole runs (reference / project)",
              f"{f['train_speedup_cpu_time']:.2f}x")
    bench.add("training", f"val loss after {sz.train_epochs} epochs, project - reference "
              f"(mean of {sz.rounds} seeds)", f"{val_p - val_r:+.4f}",
              f"<= +{VAL_LOSS_TOLERANCE}", val_p <= val_r + VAL_LOSS_TOLERANCE)
    bench.add("training", f"machine fp32 matmul ({device}, {f['train_threads']} threads)",
              f"{f['machine_matmul_gflops']:,.0f} GFLOP/s sustained "
              f"({f['machine_matmul_burst_gflops']:,.0f} best burst)")
    frac = f["train_fraction_of_matmul"]
    bench.add("training", "project GFLOP/s / matmul GFLOP/s", f"{frac:.0%}", ">= 50%",
              frac >= 0.5)
    _variant_rows(bench, best_p)


def _variant_rows(bench: Bench, best_p: float) -> None:
    f = bench.figures
    if f["default_threads_sequences_per_second"]:
        d = f["default_threads_sequences_per_second"]
        bench.add("training", f"project loop at torch's default {DEFAULT_THREADS} threads",
                  f"{d:,.0f} seq/s ({d / best_p:.2f}x the {f['train_threads']}-thread figure)")
    if f["cpu_bf16_sequences_per_second"]:
        bench.add("training", "project loop, CPU bf16 autocast (opt-in)",
                  f"{f['cpu_bf16_sequences_per_second']:,.0f} seq/s "
                  f"({f['cpu_bf16_sequences_per_second'] / best_p:.2f}x fp32), "
                  f"val loss {f['cpu_bf16_val_loss']:.4f}")


def training(bench: Bench) -> None:
    """The ``training`` section (see the module's docstring)."""
    sz, st = bench.size, bench.settings
    seq = _one_symbol(bench)
    bench.say(f"training: {len(seq.end_rows('train'))} train windows, "
              f"{sz.rounds} x {sz.train_epochs} epochs per loop")
    device = str(pick_device(st.device))
    burst = matmul_gflops(sz.matmul_n, device=device)
    rounds = _paired_rounds(bench, seq, device)
    flops = lstm_flops_per_sequence(seq.X.shape[1], st.hidden_size, st.num_layers,
                                    seq.lookback)
    f = bench.figures
    _round_figures(f, rounds, flops, burst)
    f["train_sequences"] = int(len(seq.end_rows("train")))
    _cpu_variants(bench, seq, device)
    _table_rows(bench, device)
