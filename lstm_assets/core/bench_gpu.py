"""The GPU part of the benchmark, runnable on a bare GPU box (core libraries only, no dagster).

``python -m lstm_assets.core.bench_gpu --out DIR`` (what ``scripts/gpu_bench.sh`` runs) writes
demo data for N symbols x Y years, runs the data stages over all cores, then measures on the GPU:

- the device's bf16 and fp32 matmul rate (the yardsticks);
- ``core.train.fit`` on one symbol with bf16 autocast, at the default batch and a large batch;
- the reference loop (``core.bench_reference``, DataLoader over copies, ``.item()`` per batch)
  on the same GPU, for the ratio;
- all N symbols trained at once with stacked weights (``core.train_many.fit_many``): the wall
  time to train every symbol with the project's settings (early stopping included), and its
  throughput against the CPU throughput of the project's loop on the same box;
- one symbol trained alone with the same settings, for the quality and the sequential estimate.

``--dry-run`` does all of it tiny, on CPU, so the script can be checked where there is no GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lstm_assets.core import pipeline
from lstm_assets.core.bench import (
    DEFAULT_THREADS,
    BenchSize,
    _clean,
    lstm_flops_per_sequence,
    machine_info,
    make_demo,
    matmul_gflops,
    run_stages_parallel,
)
from lstm_assets.core.bench_reference import reference_fit
from lstm_assets.core.pipeline import Layout
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.train import bf16_lstm_ok, fit
from lstm_assets.core.train_many import fit_many

GPU_KEYS: tuple[str, ...] = (
    "gpu_name", "gpu_matmul_bf16_tflops", "gpu_matmul_fp32_tflops",
    "gpu_fit_sequences_per_second", "gpu_fit_val_loss",
    "gpu_large_batch_sequences_per_second", "gpu_large_batch_val_loss", "gpu_large_batch",
    "gpu_reference_sequences_per_second", "gpu_reference_val_loss", "gpu_speedup_vs_reference",
    "gpu_multi_symbols", "gpu_multi_sequences_per_second", "gpu_train_all_symbols_seconds",
    "gpu_multi_epochs_run_mean", "gpu_multi_best_val_loss_mean",
    "gpu_single_symbol_seconds", "gpu_single_best_val_loss", "gpu_multi_first_best_val_loss",
    "gpu_sequential_all_symbols_estimate_seconds", "gpu_cpu_sequences_per_second",
    "gpu_speedup_vs_cpu_project", "gpu_multi_speedup_vs_reference", "gpu_multi_train_seconds",
    "gpu_pipeline_symbols", "gpu_pipeline_train_seconds", "gpu_pipeline_sequences_per_second",
    "gpu_pipeline_rerun_seconds", "gpu_pipeline_speedup_vs_cpu_project",
)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(device: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall time, the device's queued work included."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def _all_symbols_target(k: int) -> tuple[float, str]:
    """The issue's 5 minutes for 164 symbols, pro rata for ``k``: seconds and its label."""
    target = 300.0 * k / 164
    return target, f"<= {target:.0f}s" + ("" if k == 164 else " (pro rata)")


def gpu_section(seqs: list[SequenceSet], size: BenchSize, say: Callable[[str], None],
                cpu_sps: float | None = None, device: str = "cuda",
                save: Callable[[dict[str, Any]], None] | None = None,
                layout: Layout | None = None, skip: frozenset[str] = frozenset(),
                plain: bool = False) -> dict[str, Any]:
    """Measure the GPU figures on ``seqs`` (all symbols); returns figures, details, table rows.

    ``save(partial)`` (optional) gets the figures so far after every step. With ``layout`` (the
    warehouse ``seqs`` came from) the product's own path is measured too: the model step's
    ``pipeline.run_train_many``, which plans, trains, scores and saves every symbol's model.
    Steps named in ``skip`` are left out. ``plain``: also train all symbols without compaction
    and with the unfused cell, for a same-run ratio of what those two save.
    """
    st = size.settings.replace(device=device)
    f: dict[str, Any] = dict.fromkeys(GPU_KEYS)
    rows: list[tuple[str, str, str, bool | None]] = []
    details: dict[str, Any] = {}
    out = {"figures": f, "details": details, "rows": rows}
    on_gpu = device.startswith("cuda")
    one, E = seqs[0], size.gpu_epochs
    flops = lstm_flops_per_sequence(one.X.shape[1], st.hidden_size, st.num_layers, one.lookback)

    def step(name: str, fn: Callable[[], None]) -> None:
        """Run one measurement; a failure is recorded (``details["errors"]``, a row) and the
        next step still runs. ``save`` after every step: a run cut off by a time limit still
        leaves what it measured."""
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - one failed measurement must not lose the rest
            msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            say(f"gpu: step '{name}' failed: {msg}")
            details.setdefault("errors", {})[name] = msg
            rows.append((name, f"failed: {msg}", "", False))
        details.setdefault("step_seconds", {})[name] = round(time.perf_counter() - t0, 2)
        if save is not None:
            save(out)

    def yardsticks() -> None:
        f["gpu_name"] = torch.cuda.get_device_name(0) if on_gpu else f"{device} (dry run)"
        if on_gpu:
            details["cudnn"] = torch.backends.cudnn.version()
            details["bf16_lstm_supported"] = bf16_lstm_ok(torch.device(device))
        n = 8192 if on_gpu else size.matmul_n
        f["gpu_matmul_bf16_tflops"] = matmul_gflops(n, 10, device, torch.bfloat16) / 1e3
        f["gpu_matmul_fp32_tflops"] = matmul_gflops(n, 10, device, torch.float32) / 1e3
        rows.append(("device matmul bf16 / fp32",
                     f"{f['gpu_matmul_bf16_tflops']:.0f} / {f['gpu_matmul_fp32_tflops']:.0f} "
                     "TFLOP/s" if on_gpu else f"{f['gpu_matmul_bf16_tflops']:.3f} / "
                     f"{f['gpu_matmul_fp32_tflops']:.3f} TFLOP/s", "", None))

    def one_symbol() -> None:
        say(f"gpu: fit on one symbol ({len(one.end_rows('train'))} windows), {E} epochs")
        fit(one, st, max_epochs=1)  # warm-up: cuDNN plans, allocator
        res = fit(one, st, max_epochs=E)
        f["gpu_fit_sequences_per_second"] = res.sequences_per_second
        f["gpu_fit_val_loss"] = res.history[-1]["val_loss"]
        details["fit_precision"] = res.precision
        rows.append((f"project loop ({res.precision}), batch 64",
                     f"{res.sequences_per_second:,.0f} seq/s, val loss "
                     f"{f['gpu_fit_val_loss']:.4f}", "", None))

    def large_batch() -> None:
        lb = st.replace(batch_size=size.gpu_large_batch)
        fit(one, lb, max_epochs=1)
        res_lb = fit(one, lb, max_epochs=E)
        f["gpu_large_batch"] = size.gpu_large_batch
        f["gpu_large_batch_sequences_per_second"] = res_lb.sequences_per_second
        f["gpu_large_batch_val_loss"] = res_lb.history[-1]["val_loss"]
        rows.append((f"project loop ({res_lb.precision}), batch {size.gpu_large_batch}",
                     f"{res_lb.sequences_per_second:,.0f} seq/s "
                     f"({res_lb.sequences_per_second * flops / 1e12:.2f} TFLOP/s), "
                     f"val loss {f['gpu_large_batch_val_loss']:.4f} after {E} epochs", "", None))

    def reference() -> None:
        say("gpu: reference loop")
        ref = reference_fit(one, st, E, batch_size=64)
        f["gpu_reference_sequences_per_second"] = (ref.train_sequences * len(ref.epoch_seconds)
                                                   / sum(ref.epoch_seconds))
        f["gpu_reference_val_loss"] = ref.final_val_loss
        rows.append(("reference loop (DataLoader, .item(), fp32), batch 64",
                     f"{f['gpu_reference_sequences_per_second']:,.0f} seq/s, "
                     f"val loss {f['gpu_reference_val_loss']:.4f}", "", None))
        if f["gpu_fit_sequences_per_second"]:
            f["gpu_speedup_vs_reference"] = (f["gpu_fit_sequences_per_second"]
                                             / f["gpu_reference_sequences_per_second"])
            rows.append(("project / reference (batch 64)", f"{f['gpu_speedup_vs_reference']:.2f}x",
                         ">= 0.95x", f["gpu_speedup_vs_reference"] >= 0.95))

    def all_symbols() -> None:
        say(f"gpu: all {len(seqs)} symbols at once (groups of {size.gpu_group_size}), "
            f"up to {st.max_epochs} epochs with early stopping")
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        many, wall = _timed(device, lambda: fit_many(seqs, st, group_size=size.gpu_group_size))
        seen = sum(r.train_sequences * r.epochs_run for r in many)
        f["gpu_multi_symbols"] = len(many)
        f["gpu_multi_train_seconds"] = wall
        f["gpu_train_all_symbols_seconds"] = f["gpu_train_all_symbols_seconds"] or wall
        f["gpu_multi_sequences_per_second"] = seen / wall
        f["gpu_multi_epochs_run_mean"] = float(np.mean([r.epochs_run for r in many]))
        f["gpu_multi_best_val_loss_mean"] = float(np.mean([r.best_val_loss for r in many]))
        f["gpu_multi_first_best_val_loss"] = many[0].best_val_loss
        if f["gpu_reference_sequences_per_second"]:
            f["gpu_multi_speedup_vs_reference"] = (f["gpu_multi_sequences_per_second"]
                                                   / f["gpu_reference_sequences_per_second"])
        details["multi_epochs_run_max"] = max(r.epochs_run for r in many)
        details["multi_features_used_mean"] = float(np.mean([r.features_used for r in many]))
        if on_gpu:
            details["multi_peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        details["multi"] = [{"epochs_run": r.epochs_run, "best_epoch": r.best_epoch,
                             "best_val_loss": r.best_val_loss, "stopped_early": r.stopped_early,
                             "features_used": r.features_used} for r in many]
        k = len(many)
        target_s, target = _all_symbols_target(k)
        rows.append((f"all {k} symbols x {size.gpu_years} y trained at once (stacked, "
                     f"{many[0].precision})",
                     f"{wall:.1f}s, {f['gpu_multi_sequences_per_second']:,.0f} seq/s, "
                     f"{f['gpu_multi_epochs_run_mean']:.1f} epochs/symbol (early stopping; "
                     f"{details['multi_epochs_run_max']} for the group), mean best val loss "
                     f"{f['gpu_multi_best_val_loss_mean']:.4f}", target, wall <= target_s))
        if f["gpu_multi_speedup_vs_reference"]:
            rows.append(("stacked throughput / reference loop",
                         f"{f['gpu_multi_speedup_vs_reference']:.1f}x", "", None))

    def fused_check() -> None:
        """The fused LSTM cell (CUDA's kernel) against the unfused arithmetic: the same logits
        and gradients on a small stacked model, fp32 and bf16 autocast."""
        from lstm_assets.core.model import LSTMClassifier
        from lstm_assets.core.train_many import StackedLSTMClassifier

        if not on_gpu:
            rows.append(("fused LSTM cell vs unfused", "not checked: CUDA-only kernel", "",
                         None))
            return
        states = []
        for seed in (1, 2, 3):
            torch.manual_seed(seed)
            states.append(LSTMClassifier(one.X.shape[1], st.hidden_size, st.num_layers,
                                         0.0).state_dict())
        x = torch.randn(3, 16, one.lookback, one.X.shape[1], device=device)
        diffs: dict[str, float] = {}
        for ac in (False, True):
            out = {}
            for fused in (False, True):
                net = StackedLSTMClassifier(states, st.num_layers, 0.0, fused=fused).to(device)
                with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=ac):
                    logits = net(x)
                logits.float().square().sum().backward()
                out[fused] = [logits.float().detach()] + [p.grad for p in net.params.values()]
            diffs["bf16" if ac else "fp32"] = max(
                float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
                for a, b in zip(out[True], out[False], strict=True))
        details["fused_cell_max_rel_diff"] = diffs
        ok = diffs["fp32"] < 1e-4 and diffs["bf16"] < 5e-2
        rows.append(("fused LSTM cell vs unfused: max relative difference, logits and grads",
                     f"fp32 {diffs['fp32']:.1e}, bf16 {diffs['bf16']:.1e}", "same", ok))
        if not ok:
            raise AssertionError(f"fused cell differs: {diffs}")

    def profile_epoch() -> None:
        """One epoch of the stacked trainer, timed, then again under the CUDA profiler: the
        GPU's busy time against the wall time says whether kernel launches (the host) or the
        kernels themselves set the pace."""
        if not on_gpu:
            rows.append(("one stacked epoch: GPU busy / wall", "not measured: no CUDA", "", None))
            return
        from torch.profiler import ProfilerActivity, profile

        def run() -> list[Any]:
            return fit_many(seqs, st, group_size=size.gpu_group_size, max_epochs=1)

        _timed(device, run)  # warm-up
        _, wall = _timed(device, run)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            run()
            _sync(device)
        busy_us, kernels, top = 0.0, 0, []
        for ev in prof.key_averages():
            t = getattr(ev, "self_device_time_total", None)
            t = getattr(ev, "self_cuda_time_total", 0.0) if t is None else t
            if t > 0:
                busy_us += t
                kernels += ev.count
                top.append((t, ev.count, ev.key[:120]))
        top.sort(reverse=True)
        details["profile_epoch"] = {
            "wall_seconds": wall, "gpu_busy_seconds": busy_us / 1e6, "kernels": kernels,
            "top_kernels": [{"seconds": t / 1e6, "count": n, "name": k} for t, n, k in top[:30]]}
        for t, n, k in top[:15]:
            say(f"gpu: profile: {t / 1e6:7.3f}s {n:7d}x {k}")
        rows.append(("one stacked epoch (setup and validation included): GPU busy / wall",
                     f"{busy_us / 1e6:.2f} s / {wall:.2f} s ({busy_us / 1e6 / wall:.0%}), "
                     f"{kernels:,} kernels", "", None))

    def all_symbols_plain() -> None:
        """The stacked trainer without compaction and with the unfused cell (for a same-run
        ratio; the other fixes, e.g. the per-step slices by unbind, stay)."""
        say(f"gpu: all {len(seqs)} symbols at once, without compaction or the fused cell")
        many, wall = _timed(device, lambda: fit_many(seqs, st, group_size=size.gpu_group_size,
                                                     compact=False, fused=False))
        details["multi_plain_seconds"] = wall
        details["multi_plain_best_val_loss_mean"] = float(np.mean([r.best_val_loss
                                                                   for r in many]))
        ratio = (f"; plain / default: {wall / f['gpu_multi_train_seconds']:.2f}x the time"
                 if f["gpu_multi_train_seconds"] else "")
        rows.append(("the same without compaction or the fused cell",
                     f"{wall:.1f}s, mean best val loss "
                     f"{details['multi_plain_best_val_loss_mean']:.4f}{ratio}", "", None))

    def single() -> None:
        say("gpu: one symbol alone, same settings")
        res, f["gpu_single_symbol_seconds"] = _timed(device, lambda: fit(one, st))
        f["gpu_single_best_val_loss"] = res.best_val_loss
        f["gpu_sequential_all_symbols_estimate_seconds"] = (f["gpu_single_symbol_seconds"]
                                                            * len(seqs))
        details["single_epochs_run"] = res.epochs_run
        stacked = (f" (stacked: {f['gpu_multi_first_best_val_loss']:.4f})"
                   if f["gpu_multi_first_best_val_loss"] is not None else "")
        rows.append(("one symbol alone (fit), same settings",
                     f"{f['gpu_single_symbol_seconds']:.1f}s, {res.epochs_run} epochs "
                     f"(x{len(seqs)} = {f['gpu_sequential_all_symbols_estimate_seconds']:.0f}s "
                     f"sequential), best val loss {res.best_val_loss:.4f}{stacked}", "", None))

    def cpu() -> None:
        nonlocal cpu_sps
        if cpu_sps is None:
            say("gpu: the project loop on this box's CPU (all cores, then 1 thread), one epoch")
            all_cores = fit(one, st.replace(device="cpu", num_threads=DEFAULT_THREADS),
                            max_epochs=1)
            one_thread = fit(one, st.replace(device="cpu", num_threads=1), max_epochs=1)
            details["cpu_sequences_per_second"] = {
                f"{DEFAULT_THREADS}_threads": all_cores.sequences_per_second,
                "1_thread": one_thread.sequences_per_second}
            cpu_sps = max(all_cores.sequences_per_second, one_thread.sequences_per_second)
        f["gpu_cpu_sequences_per_second"] = cpu_sps
        if f["gpu_multi_sequences_per_second"]:
            f["gpu_speedup_vs_cpu_project"] = f["gpu_multi_sequences_per_second"] / cpu_sps
            rows.append(("stacked throughput / CPU project loop",
                         f"{f['gpu_speedup_vs_cpu_project']:.1f}x (CPU {cpu_sps:,.0f} seq/s)",
                         ">= 20x", f["gpu_speedup_vs_cpu_project"] >= 20))

    def product_path() -> None:
        assert layout is not None
        symbols = [s for s in layout.symbols() if layout.warehouse.sequences(s).exists()]
        pst = st.replace(stack_symbols=0)  # the default: together on a GPU, sized by memory
        say(f"gpu: the model step's path (pipeline.run_train_many) on {len(symbols)} symbols")
        metas, wall = _timed(device, lambda: pipeline.run_train_many(layout, symbols, pst))
        bad = {k: repr(v) for k, v in metas.items() if isinstance(v, Exception)}
        ok = [m for m in metas.values() if isinstance(m, dict)]
        seen = sum(m["train_sequences"] * m["epochs_run"] for m in ok)
        again, rerun = _timed(device, lambda: pipeline.run_train_many(layout, symbols, pst))
        f["gpu_pipeline_symbols"] = len(ok)
        f["gpu_pipeline_train_seconds"] = f["gpu_train_all_symbols_seconds"] = wall
        f["gpu_pipeline_sequences_per_second"] = seen / wall
        f["gpu_pipeline_rerun_seconds"] = rerun
        details["pipeline"] = {
            "errors": bad, "inits": sorted({m["init"] for m in ok}),
            "trained_together": sorted({m["trained_together"] for m in ok}),
            "rerun_inits": sorted({m["init"] for m in again.values() if isinstance(m, dict)}),
            "epochs_run_mean": float(np.mean([m["epochs_run"] for m in ok])) if ok else None,
            "test_accuracy_mean": float(np.mean([m["new_test_accuracy"] for m in ok]))
            if ok else None}
        k = len(symbols)
        target_s, target = _all_symbols_target(k)
        rows.append((f"model step's path: {len(ok)} of {k} symbols planned, trained together, "
                     "scored and saved (pipeline.run_train_many)",
                     f"{wall:.1f}s, {f['gpu_pipeline_sequences_per_second']:,.0f} seq/s, groups "
                     f"of {details['pipeline']['trained_together']}, mean test accuracy "
                     f"{details['pipeline']['test_accuracy_mean'] or float('nan'):.3f}"
                     + (f"; {len(bad)} failed" if bad else ""), target,
                     wall <= target_s and not bad))
        rows.append(("the same, run again (inputs unchanged)",
                     f"{rerun:.1f}s: {', '.join(details['pipeline']['rerun_inits'])}", "", None))

    def cpu_ratio_pipeline() -> None:
        if f["gpu_pipeline_sequences_per_second"] and f["gpu_cpu_sequences_per_second"]:
            r = f["gpu_pipeline_sequences_per_second"] / f["gpu_cpu_sequences_per_second"]
            f["gpu_pipeline_speedup_vs_cpu_project"] = r
            rows.append(("model step's path / CPU project loop", f"{r:.1f}x", ">= 20x", r >= 20))

    steps: list[tuple[str, Callable[[], None]]] = [
        ("yardsticks", yardsticks), ("fused cell", fused_check), ("one symbol", one_symbol),
        ("large batch", large_batch), ("reference loop", reference),
        ("all symbols at once", all_symbols), ("one symbol alone", single)]
    if layout is not None:
        steps.append(("model step's path", product_path))
    steps += [("CPU project loop", cpu), ("pipeline / CPU", cpu_ratio_pipeline),
              ("epoch profile", profile_epoch)]
    if plain:
        steps.append(("all symbols plain", all_symbols_plain))
    unknown = skip - {name for name, _ in steps}
    if unknown:
        say(f"gpu: --skip names no step: {sorted(unknown)} (steps: {[n for n, _ in steps]})")
    for name, fn in steps:
        if name in skip:
            say(f"gpu: skipping '{name}'")
            continue
        step(name, fn)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/gpu_bench.sh``: data, GPU section, JSON + Markdown in ``--out``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT", "gpu_bench_out"))
    p.add_argument("--quick", action="store_true", help="16 symbols x 5 years")
    p.add_argument("--dry-run", action="store_true", help="tiny, on CPU (checks the script)")
    p.add_argument("--symbols", type=int, default=None)
    p.add_argument("--years", type=int, default=None)
    p.add_argument("--group-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--workdir", default=None)
    p.add_argument("--skip", default="", help="comma-separated step names to leave out, e.g. "
                   "'all symbols at once'")
    p.add_argument("--plain", action="store_true", help="also train all symbols without "
                   "compaction and with the unfused cell, for a same-run ratio")
    args = p.parse_args(argv)

    def say(msg: str) -> None:
        print(f"[gpu-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    # the stacked trainer logs each epoch (time, symbols still training) at INFO
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("lstm_assets.core.train_many").setLevel(logging.INFO)

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        say("no CUDA device: nothing to measure (use --dry-run to check the script on CPU)")
        return 2
    size = (BenchSize.tiny() if args.dry_run else
            BenchSize.quick() if args.quick else BenchSize.full())
    changes = {k: v for k, v in (("gpu_symbols", args.symbols), ("gpu_years", args.years),
                                 ("gpu_group_size", args.group_size)) if v}
    size = dataclasses.replace(size, **changes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lstm_gpu_bench_"))
    try:
        return _run(args, size, device, out, work, say)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, size: BenchSize, device: str, out: Path, work: Path,
         say: Callable[[str], None]) -> int:
    t0 = time.perf_counter()
    say(f"demo data: {size.gpu_symbols} symbols x {size.gpu_years} years in {work}")
    raw = make_demo(work / "main", size.gpu_symbols, size.gpu_years)
    t_gen = time.perf_counter() - t0
    layout = Layout.from_dirs(raw, work / "main" / "wh")
    symbols = layout.symbols()
    say(f"data stages over {args.workers} processes")
    t_data = run_stages_parallel(layout, symbols, size.settings, max(1, args.workers))
    seqs = [SequenceSet.load(layout.warehouse.sequences(s)) for s in symbols
            if layout.warehouse.sequences(s).exists()]
    meta = machine_info()
    meta.update(size=size.name, generate_seconds=t_gen, data_stages_parallel_seconds=t_data,
                data_stages_workers=args.workers, device=device)

    def write(res: dict[str, Any], final: bool = False) -> str:
        meta.update(seconds=time.perf_counter() - t0, complete=final,
                    dagster_imported="dagster" in sys.modules)
        result = {**res["figures"], "meta": meta, "details": res["details"],
                  "table": [dict(zip(("figure", "value", "target", "met"), r, strict=True))
                            for r in res["rows"]]}
        (out / "gpu_bench.json").write_text(json.dumps(_clean(result), indent=2) + "\n")
        lines = [f"GPU bench ({size.name}, {device}{'' if final else ', INCOMPLETE'}): "
                 f"{meta['cuda'] or meta['cpu']}; torch {meta['torch']}; {meta['date']}; "
                 f"{len(seqs)} symbols x {size.gpu_years} y; {meta['seconds']:.0f}s in all "
                 f"(data stages {t_data:.1f}s on {args.workers} processes); dagster imported: "
                 f"{meta['dagster_imported']}", "",
                 "| figure | measured | target | met |", "|---|---|---|---|"]
        for fig, val, tgt, met in res["rows"]:
            lines.append(f"| {fig} | {val} | {tgt} | "
                         f"{'' if met is None else ('yes' if met else '**no**')} |")
        table = "\n".join(lines) + "\n"
        (out / "gpu_bench.md").write_text(table)
        return table

    skip = frozenset(x.strip() for x in args.skip.split(",") if x.strip())
    res = gpu_section(seqs, size, say, device=device, save=write, layout=layout, skip=skip,
                      plain=args.plain)
    print(write(res, final=True))
    if "dagster" in sys.modules:
        say("dagster was imported on the GPU path: that is a bug")
        return 1
    return 1 if res["details"].get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
