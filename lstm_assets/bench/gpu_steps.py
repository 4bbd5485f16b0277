"""The GPU section's measurements (:class:`GpuSteps`, one method per step) and
:func:`gpu_section`, which runs them in order and keeps going past a failed one. Run by the
``gpu`` section of ``lstm-assets bench`` and by ``python -m lstm_assets.bench.gpu``
(:mod:`lstm_assets.bench.gpu`); on CPU (``--dry-run``) the CUDA-only steps say so and pass."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lstm_assets.bench.config import BenchSize
from lstm_assets.bench.reference import reference_fit
from lstm_assets.bench.yardsticks import DEFAULT_THREADS, lstm_flops_per_sequence, matmul_gflops
from lstm_assets.core import stages
from lstm_assets.core.model import LSTMClassifier
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.settings import Settings
from lstm_assets.core.stacked import StackedLSTMClassifier
from lstm_assets.core.train import fit, fit_many
from lstm_assets.core.trainees import bf16_lstm_ok

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

GpuRow = tuple[str, str, str, bool | None]
"""A table line of the GPU section: figure, measured, target, met."""


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


def _max_rel_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """The largest difference between paired tensors, relative to the largest entry of b's."""
    return max(float((x - y).abs().max() / y.abs().max().clamp_min(1e-12))
               for x, y in zip(a, b, strict=True))


@dataclass
class GpuSteps:
    """The GPU section's measurements, one method per step; each fills ``figures``,
    ``details`` and ``rows``. ``cpu_sps``: the CPU throughput of the project's loop where the
    CPU sections measured it (else the ``cpu`` step measures it here)."""

    seqs: list[SequenceSet]
    size: BenchSize
    say: Callable[[str], None]
    device: str = "cuda"
    cpu_sps: float | None = None
    layout: stages.Layout | None = None
    figures: dict[str, Any] = field(default_factory=lambda: dict.fromkeys(GPU_KEYS))
    details: dict[str, Any] = field(default_factory=dict)
    rows: list[GpuRow] = field(default_factory=list)

    st: Settings = field(init=False)
    """The size's settings on ``device``."""

    def __post_init__(self) -> None:
        self.st = self.size.settings.replace(device=self.device)

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def one(self) -> SequenceSet:
        return self.seqs[0]

    def out(self) -> dict[str, Any]:
        return {"figures": self.figures, "details": self.details, "rows": self.rows}

    def row(self, figure: str, value: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append((figure, value, target, met))

    def yardsticks(self) -> None:
        f, d = self.figures, self.device
        f["gpu_name"] = torch.cuda.get_device_name(0) if self.on_gpu else f"{d} (dry run)"
        if self.on_gpu:
            self.details["cudnn"] = torch.backends.cudnn.version()
            self.details["bf16_lstm_supported"] = bf16_lstm_ok(torch.device(d))
        n = 8192 if self.on_gpu else self.size.matmul_n
        f["gpu_matmul_bf16_tflops"] = matmul_gflops(n, 10, d, torch.bfloat16) / 1e3
        f["gpu_matmul_fp32_tflops"] = matmul_gflops(n, 10, d, torch.float32) / 1e3
        fmt = ".0f" if self.on_gpu else ".3f"
        self.row("device matmul bf16 / fp32", f"{f['gpu_matmul_bf16_tflops']:{fmt}} / "
                 f"{f['gpu_matmul_fp32_tflops']:{fmt}} TFLOP/s")

    def one_symbol(self) -> None:
        E, f = self.size.gpu_epochs, self.figures
        self.say(f"gpu: fit on one symbol ({len(self.one.end_rows('train'))} windows), "
                 f"{E} epochs")
        fit(self.one, self.st, max_epochs=1)  # warm-up: cuDNN plans, allocator
        res = fit(self.one, self.st, max_epochs=E)
        f["gpu_fit_sequences_per_second"] = res.sequences_per_second
        f["gpu_fit_val_loss"] = res.history[-1]["val_loss"]
        self.details["fit_precision"] = res.precision
        self.row(f"project loop ({res.precision}), batch 64",
                 f"{res.sequences_per_second:,.0f} seq/s, val loss {f['gpu_fit_val_loss']:.4f}")

    def large_batch(self) -> None:
        E, f, one = self.size.gpu_epochs, self.figures, self.one
        lb = self.st.replace(batch_size=self.size.gpu_large_batch)
        fit(one, lb, max_epochs=1)
        res = fit(one, lb, max_epochs=E)
        flops = lstm_flops_per_sequence(one.X.shape[1], lb.hidden_size, lb.num_layers,
                                        one.lookback)
        f["gpu_large_batch"] = self.size.gpu_large_batch
        f["gpu_large_batch_sequences_per_second"] = res.sequences_per_second
        f["gpu_large_batch_val_loss"] = res.history[-1]["val_loss"]
        self.row(f"project loop ({res.precision}), batch {self.size.gpu_large_batch}",
                 f"{res.sequences_per_second:,.0f} seq/s "
                 f"({res.sequences_per_second * flops / 1e12:.2f} TFLOP/s), "
                 f"val loss {f['gpu_large_batch_val_loss']:.4f} after {E} epochs")

    def reference(self) -> None:
        f = self.figures
        self.say("gpu: reference loop")
        ref = reference_fit(self.one, self.st, self.size.gpu_epochs, batch_size=64)
        f["gpu_reference_sequences_per_second"] = (ref.train_sequences * len(ref.epoch_seconds)
                                                   / sum(ref.epoch_seconds))
        f["gpu_reference_val_loss"] = ref.final_val_loss
        self.row("reference loop (DataLoader, .item(), fp32), batch 64",
                 f"{f['gpu_reference_sequences_per_second']:,.0f} seq/s, "
                 f"val loss {f['gpu_reference_val_loss']:.4f}")
        if f["gpu_fit_sequences_per_second"]:
            f["gpu_speedup_vs_reference"] = (f["gpu_fit_sequences_per_second"]
                                             / f["gpu_reference_sequences_per_second"])
            self.row("project / reference (batch 64)", f"{f['gpu_speedup_vs_reference']:.2f}x",
                     ">= 0.95x", f["gpu_speedup_vs_reference"] >= 0.95)

    def all_symbols(self) -> None:
        st, f, details = self.st, self.figures, self.details
        self.say(f"gpu: all {len(self.seqs)} symbols at once (groups of "
                 f"{self.size.gpu_group_size}), up to {st.max_epochs} epochs with early stopping")
        if self.on_gpu:
            torch.cuda.reset_peak_memory_stats()
        many, wall = _timed(self.device, lambda: fit_many(self.seqs, st,
                                                          group_size=self.size.gpu_group_size))
        self._all_symbols_figures(many, wall)
        if self.on_gpu:
            details["multi_peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        details["multi"] = [{"epochs_run": r.epochs_run, "best_epoch": r.best_epoch,
                             "best_val_loss": r.best_val_loss, "stopped_early": r.stopped_early,
                             "features_used": r.features_used} for r in many]
        k = len(many)
        target_s, target = _all_symbols_target(k)
        self.row(f"all {k} symbols x {self.size.gpu_years} y trained at once (stacked, "
                 f"{many[0].precision})",
                 f"{wall:.1f}s, {f['gpu_multi_sequences_per_second']:,.0f} seq/s, "
                 f"{f['gpu_multi_epochs_run_mean']:.1f} epochs/symbol (early stopping; "
                 f"{details['multi_epochs_run_max']} for the group), mean best val loss "
                 f"{f['gpu_multi_best_val_loss_mean']:.4f}", target, wall <= target_s)
        if f["gpu_multi_speedup_vs_reference"]:
            self.row("stacked throughput / reference loop",
                     f"{f['gpu_multi_speedup_vs_reference']:.1f}x")

    def _all_symbols_figures(self, many: list[Any], wall: float) -> None:
        f = self.figures
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
        self.details["multi_epochs_run_max"] = max(r.epochs_run for r in many)
        self.details["multi_features_used_mean"] = float(np.mean([r.features_used
                                                                  for r in many]))

    def _fused_outputs(self, states: list[dict[str, torch.Tensor]], x: torch.Tensor,
                       autocast: bool, fused: bool) -> list[torch.Tensor]:
        """Logits and every parameter's gradient of the stacked model on ``x``."""
        st = self.st
        net = StackedLSTMClassifier(states, st.num_layers, 0.0, fused=fused).to(self.device)
        with torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
            logits = net(x)
        logits.float().square().sum().backward()
        return [logits.float().detach()] + [p.grad for p in net.params.values()]

    def fused_check(self) -> None:
        """The fused LSTM cell (CUDA's kernel) against the unfused arithmetic: the same logits
        and gradients on a small stacked model, fp32 and bf16 autocast."""
        if not self.on_gpu:
            self.row("fused LSTM cell vs unfused", "not checked: CUDA-only kernel")
            return
        st, one = self.st, self.one
        states = []
        for seed in (1, 2, 3):
            torch.manual_seed(seed)
            states.append(LSTMClassifier(one.X.shape[1], st.hidden_size, st.num_layers,
                                         0.0).state_dict())
        x = torch.randn(3, 16, one.lookback, one.X.shape[1], device=self.device)
        diffs: dict[str, float] = {}
        for ac in (False, True):
            unfused = self._fused_outputs(states, x, ac, fused=False)
            fused = self._fused_outputs(states, x, ac, fused=True)
            diffs["bf16" if ac else "fp32"] = _max_rel_diff(fused, unfused)
        self.details["fused_cell_max_rel_diff"] = diffs
        ok = diffs["fp32"] < 1e-4 and diffs["bf16"] < 5e-2
        self.row("fused LSTM cell vs unfused: max relative difference, logits and grads",
                 f"fp32 {diffs['fp32']:.1e}, bf16 {diffs['bf16']:.1e}", "same", ok)
        if not ok:
            raise AssertionError(f"fused cell differs: {diffs}")

    def profile_epoch(self) -> None:
        """One epoch of the stacked trainer, timed, then again under the CUDA profiler: the
        GPU's busy time against the wall time says whether kernel launches (the host) or the
        kernels themselves set the pace."""
        if not self.on_gpu:
            self.row("one stacked epoch: GPU busy / wall", "not measured: no CUDA")
            return
        from torch.profiler import ProfilerActivity, profile

        def run() -> list[Any]:
            return fit_many(self.seqs, self.st, group_size=self.size.gpu_group_size,
                            max_epochs=1)

        _timed(self.device, run)  # warm-up
        _, wall = _timed(self.device, run)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            run()
            _sync(self.device)
        busy_us, kernels, top = _kernel_times(prof)
        self.details["profile_epoch"] = {
            "wall_seconds": wall, "gpu_busy_seconds": busy_us / 1e6, "kernels": kernels,
            "top_kernels": [{"seconds": t / 1e6, "count": n, "name": k} for t, n, k in top[:30]]}
        for t, n, k in top[:15]:
            self.say(f"gpu: profile: {t / 1e6:7.3f}s {n:7d}x {k}")
        self.row("one stacked epoch (setup and validation included): GPU busy / wall",
                 f"{busy_us / 1e6:.2f} s / {wall:.2f} s ({busy_us / 1e6 / wall:.0%}), "
                 f"{kernels:,} kernels")

    def all_symbols_plain(self) -> None:
        """The stacked trainer without compaction and with the unfused cell (for a same-run
        ratio; the other fixes, e.g. the per-step slices by unbind, stay)."""
        self.say(f"gpu: all {len(self.seqs)} symbols at once, without compaction or the fused "
                 "cell")
        many, wall = _timed(self.device, lambda: fit_many(
            self.seqs, self.st, group_size=self.size.gpu_group_size, compact=False,
            fused=False))
        details, default = self.details, self.figures["gpu_multi_train_seconds"]
        details["multi_plain_seconds"] = wall
        details["multi_plain_best_val_loss_mean"] = float(np.mean([r.best_val_loss
                                                                   for r in many]))
        ratio = f"; plain / default: {wall / default:.2f}x the time" if default else ""
        self.row("the same without compaction or the fused cell",
                 f"{wall:.1f}s, mean best val loss "
                 f"{details['multi_plain_best_val_loss_mean']:.4f}{ratio}")

    def single(self) -> None:
        f = self.figures
        self.say("gpu: one symbol alone, same settings")
        res, f["gpu_single_symbol_seconds"] = _timed(self.device, lambda: fit(self.one, self.st))
        f["gpu_single_best_val_loss"] = res.best_val_loss
        f["gpu_sequential_all_symbols_estimate_seconds"] = (f["gpu_single_symbol_seconds"]
                                                            * len(self.seqs))
        self.details["single_epochs_run"] = res.epochs_run
        stacked = (f" (stacked: {f['gpu_multi_first_best_val_loss']:.4f})"
                   if f["gpu_multi_first_best_val_loss"] is not None else "")
        self.row("one symbol alone (fit), same settings",
                 f"{f['gpu_single_symbol_seconds']:.1f}s, {res.epochs_run} epochs "
                 f"(x{len(self.seqs)} = {f['gpu_sequential_all_symbols_estimate_seconds']:.0f}s "
                 f"sequential), best val loss {res.best_val_loss:.4f}{stacked}")

    def _measure_cpu(self) -> float:
        """The project loop on this box's CPU, one epoch at all cores and at one thread; the
        faster of the two."""
        self.say("gpu: the project loop on this box's CPU (all cores, then 1 thread), one epoch")
        cpu_st = self.st.replace(device="cpu")
        all_cores = fit(self.one, cpu_st.replace(num_threads=DEFAULT_THREADS), max_epochs=1)
        one_thread = fit(self.one, cpu_st.replace(num_threads=1), max_epochs=1)
        self.details["cpu_sequences_per_second"] = {
            f"{DEFAULT_THREADS}_threads": all_cores.sequences_per_second,
            "1_thread": one_thread.sequences_per_second}
        return max(all_cores.sequences_per_second, one_thread.sequences_per_second)

    def cpu(self) -> None:
        f = self.figures
        if self.cpu_sps is None:
            self.cpu_sps = self._measure_cpu()
        cpu_sps = self.cpu_sps
        f["gpu_cpu_sequences_per_second"] = cpu_sps
        if f["gpu_multi_sequences_per_second"]:
            f["gpu_speedup_vs_cpu_project"] = f["gpu_multi_sequences_per_second"] / cpu_sps
            self.row("stacked throughput / CPU project loop",
                     f"{f['gpu_speedup_vs_cpu_project']:.1f}x (CPU {cpu_sps:,.0f} seq/s)",
                     ">= 20x", f["gpu_speedup_vs_cpu_project"] >= 20)

    def product_path(self) -> None:
        """The model step's own path: ``stages.run_train_many`` plans, trains, scores and
        saves every symbol's model; then again on unchanged inputs (nothing to train)."""
        layout = self.layout
        assert layout is not None
        symbols = [s for s in layout.symbols() if layout.warehouse.sequences(s).exists()]
        pst = self.st.replace(stack_symbols=0)  # the default: together on a GPU, sized by memory
        self.say(f"gpu: the model step's path (stages.run_train_many) on {len(symbols)} symbols")
        metas, wall = _timed(self.device, lambda: stages.run_train_many(layout, symbols, pst))
        again, rerun = _timed(self.device, lambda: stages.run_train_many(layout, symbols, pst))
        ok = [m for m in metas.values() if isinstance(m, dict)]
        bad = {k: repr(v) for k, v in metas.items() if isinstance(v, Exception)}
        self._product_figures(ok, bad, again, wall, rerun)
        pipe = self.details["pipeline"]
        target_s, target = _all_symbols_target(len(symbols))
        self.row(f"model step's path: {len(ok)} of {len(symbols)} symbols planned, trained "
                 "together, scored and saved (stages.run_train_many)",
                 f"{wall:.1f}s, {self.figures['gpu_pipeline_sequences_per_second']:,.0f} seq/s, "
                 f"groups of {pipe['trained_together']}, mean test accuracy "
                 f"{pipe['test_accuracy_mean'] or float('nan'):.3f}"
                 + (f"; {len(bad)} failed" if bad else ""), target,
                 wall <= target_s and not bad)
        self.row("the same, run again (inputs unchanged)",
                 f"{rerun:.1f}s: {', '.join(pipe['rerun_inits'])}")

    def _product_figures(self, ok: list[dict[str, Any]], bad: dict[str, str],
                         again: dict[str, Any], wall: float, rerun: float) -> None:
        f = self.figures
        seen = sum(m["train_sequences"] * m["epochs_run"] for m in ok)
        f["gpu_pipeline_symbols"] = len(ok)
        f["gpu_pipeline_train_seconds"] = f["gpu_train_all_symbols_seconds"] = wall
        f["gpu_pipeline_sequences_per_second"] = seen / wall
        f["gpu_pipeline_rerun_seconds"] = rerun
        self.details["pipeline"] = {
            "errors": bad, "inits": sorted({m["init"] for m in ok}),
            "trained_together": sorted({m["trained_together"] for m in ok}),
            "rerun_inits": sorted({m["init"] for m in again.values() if isinstance(m, dict)}),
            "epochs_run_mean": float(np.mean([m["epochs_run"] for m in ok])) if ok else None,
            "test_accuracy_mean": float(np.mean([m["new_test_accuracy"] for m in ok]))
            if ok else None}

    def cpu_ratio_pipeline(self) -> None:
        f = self.figures
        if f["gpu_pipeline_sequences_per_second"] and f["gpu_cpu_sequences_per_second"]:
            r = f["gpu_pipeline_sequences_per_second"] / f["gpu_cpu_sequences_per_second"]
            f["gpu_pipeline_speedup_vs_cpu_project"] = r
            self.row("model step's path / CPU project loop", f"{r:.1f}x", ">= 20x", r >= 20)

    def steps(self, plain: bool) -> list[tuple[str, Callable[[], None]]]:
        """The steps in the order they run, by name (``--skip`` takes these names)."""
        steps: list[tuple[str, Callable[[], None]]] = [
            ("yardsticks", self.yardsticks), ("fused cell", self.fused_check),
            ("one symbol", self.one_symbol), ("large batch", self.large_batch),
            ("reference loop", self.reference), ("all symbols at once", self.all_symbols),
            ("one symbol alone", self.single)]
        if self.layout is not None:
            steps.append(("model step's path", self.product_path))
        steps += [("CPU project loop", self.cpu), ("pipeline / CPU", self.cpu_ratio_pipeline),
                  ("epoch profile", self.profile_epoch)]
        if plain:
            steps.append(("all symbols plain", self.all_symbols_plain))
        return steps


def _kernel_times(prof: Any) -> tuple[float, int, list[tuple[float, int, str]]]:
    """From a CUDA profile: the GPU's busy microseconds, the kernel count, and (time, count,
    name) per kernel, longest first."""
    busy_us, kernels, top = 0.0, 0, []
    for ev in prof.key_averages():
        t = getattr(ev, "self_device_time_total", None)
        t = getattr(ev, "self_cuda_time_total", 0.0) if t is None else t
        if t > 0:
            busy_us += t
            kernels += ev.count
            top.append((t, ev.count, ev.key[:120]))
    top.sort(reverse=True)
    return busy_us, kernels, top


def _run_step(steps: GpuSteps, name: str, fn: Callable[[], None],
              save: Callable[[dict[str, Any]], None] | None) -> None:
    """Run one measurement; a failure is recorded (``details["errors"]``, a row) and the next
    step still runs. ``save`` after every step: a run cut off by a time limit still leaves what
    it measured."""
    t0 = time.perf_counter()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - one failed measurement must not lose the rest
        msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        steps.say(f"gpu: step '{name}' failed: {msg}")
        steps.details.setdefault("errors", {})[name] = msg
        steps.row(name, f"failed: {msg}", "", False)
    steps.details.setdefault("step_seconds", {})[name] = round(time.perf_counter() - t0, 2)
    if save is not None:
        save(steps.out())


def gpu_section(seqs: list[SequenceSet], size: BenchSize, say: Callable[[str], None],
                cpu_sps: float | None = None, device: str = "cuda",
                save: Callable[[dict[str, Any]], None] | None = None,
                layout: stages.Layout | None = None, skip: frozenset[str] = frozenset(),
                plain: bool = False) -> dict[str, Any]:
    """Measure the GPU figures on ``seqs`` (all symbols); returns figures, details, table rows.

    ``save(partial)`` (optional) gets the figures so far after every step. With ``layout`` (the
    warehouse ``seqs`` came from) the product's own path is measured too: the model step's
    ``stages.run_train_many``, which plans, trains, scores and saves every symbol's model.
    Steps named in ``skip`` are left out. ``plain``: also train all symbols without compaction
    and with the unfused cell, for a same-run ratio of what those two save.
    """
    steps = GpuSteps(seqs, size, say, device=device, cpu_sps=cpu_sps, layout=layout)
    todo = steps.steps(plain)
    unknown = skip - {name for name, _ in todo}
    if unknown:
        say(f"gpu: --skip names no step: {sorted(unknown)} (steps: {[n for n, _ in todo]})")
    for name, fn in todo:
        if name in skip:
            say(f"gpu: skipping '{name}'")
            continue
        _run_step(steps, name, fn, save)
    return steps.out()
