"""``lstm-assets bench``: how fast the pipeline is, measured with the project's own code.

Every section runs the real code path (``core.pipeline`` stages, ``core.train.fit``,
``core.signals``) on synthetic demo data written into a temporary folder, and reports figures
that hold on a shared, noisy machine: ratios measured in one run (the project's loop against a
reference loop, alternating; warm against cold), best-of timings, and the machine's own measured
matmul rate as the yardstick. Sections:

- ``training``: sequences/s of ``fit`` vs the reference loop (``core.bench_reference``) on one
  symbol, same model, data, epochs and seed; final validation losses; achieved GFLOP/s of both
  against the measured fp32 matmul GFLOP/s (FLOPs per sequence counted analytically).
- ``retrain``: after one new day of data, the training time of the warm-started retrain (what
  ``pipeline.run_train`` chooses) vs a cold retrain, their test accuracies, and a third call on
  unchanged inputs, which must not train at all.
- ``data``: raw -> clean -> sequences for N symbols x Y years (``pipeline.run_raw``,
  ``run_clean``, ``run_sequences``, one symbol after the other as a run does): seconds, rows/s.
- ``memory``: peak RSS growth of building one symbol's sequences and training it (in a fresh
  subprocess each), against the bytes of its scaled 2-D matrix.
- ``signals``: seconds to compute next-day signals for every symbol (load each model + window).
- ``scaling``: data stages and one training epoch at several symbol counts and history lengths.
- ``gpu`` (only where CUDA is present): see :mod:`lstm_assets.core.bench_gpu`.

No dagster import anywhere here: the GPU part runs on a box that has only the core's libraries.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lstm_assets.core import pipeline
from lstm_assets.core.bench_reference import reference_fit
from lstm_assets.core.demo import DemoSpec, generate
from lstm_assets.core.model import LoadedModel, LSTMClassifier, n_params, save_model
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.settings import CLASSES, Settings
from lstm_assets.core.splits import Bounds
from lstm_assets.core.train import fit, pick_device

log = logging.getLogger(__name__)

REQUIRED_KEYS: tuple[str, ...] = (
    "train_speedup_vs_reference", "train_val_loss", "reference_val_loss", "train_gflops",
    "machine_matmul_gflops", "warm_vs_cold_train_time_ratio", "warm_minus_cold_test_accuracy",
    "unchanged_symbol_train_seconds", "data_stages_seconds", "data_stages_symbols",
    "data_stages_years", "peak_rss_ratio", "signals_seconds", "gpu_train_all_symbols_seconds",
)
"""Keys the JSON always has (a number, or null where not measured)."""

SECTIONS: tuple[str, ...] = ("training", "retrain", "data", "memory", "signals", "scaling",
                             "gpu")
VAL_LOSS_TOLERANCE = 0.01
"""Validation losses within this (nats) count as equal: seeds move them by about as much."""
DEFAULT_THREADS = torch.get_num_threads()
"""torch's own default thread count in this process (before the bench changes it)."""


@dataclass(frozen=True)
class BenchSize:
    """How big each section runs. ``full()`` is the issue's size; ``quick()`` fits in ~2 min.

    ``settings`` are the project's settings for the CPU sections (device ``cpu``: the GPU
    section sets its own device, so a GPU box reports both)."""

    name: str
    settings: Settings = field(default_factory=Settings)
    train_years: int = 20
    train_epochs: int = 2
    rounds: int = 5
    retrain_symbols: int = 3
    retrain_years: int = 20
    data_symbols: int = 164
    data_years: int = 20
    scale_symbols: tuple[int, ...] = (1, 8, 32, 164)
    scale_years: tuple[int, ...] = (5, 10, 20)
    scale_years_symbols: int = 32
    memory_years: tuple[int, ...] = (20, 80)
    """The first is the reported symbol; a longer one gives the marginal (data-driven) growth."""
    memory_epochs: int = 1
    memory_reference: bool = True
    matmul_n: int = 1024
    matmul_seconds: float = 1.0
    gpu_symbols: int = 164
    gpu_years: int = 20
    gpu_epochs: int = 3
    gpu_large_batch: int = 1024
    gpu_group_size: int = 164

    @classmethod
    def full(cls, settings: Settings | None = None) -> BenchSize:
        return cls("full", settings or Settings(device="cpu"))

    @classmethod
    def quick(cls, settings: Settings | None = None) -> BenchSize:
        return cls("quick", settings or Settings(device="cpu"), train_years=5, train_epochs=1,
                   rounds=3, retrain_symbols=1, retrain_years=5, data_symbols=16, data_years=5,
                   scale_symbols=(1, 4, 16), scale_years=(3, 5), scale_years_symbols=4,
                   memory_years=(5, 20), matmul_n=512, matmul_seconds=0.5, gpu_symbols=16,
                   gpu_years=5, gpu_epochs=2, gpu_large_batch=512, gpu_group_size=16)

    @classmethod
    def tiny(cls) -> BenchSize:
        """For tests: a few seconds of work with a tiny model."""
        s = Settings(lookback=10, hidden_size=8, num_layers=1, max_epochs=3, batch_size=64,
                     bootstrap_samples=50, device="cpu", num_threads=1)
        return cls("tiny", s, train_years=3, train_epochs=1, rounds=1, retrain_symbols=1,
                   retrain_years=3, data_symbols=3, data_years=3, scale_symbols=(1, 3),
                   scale_years=(2, 3), scale_years_symbols=2, memory_years=(3,),
                   memory_reference=False,
                   matmul_n=256, matmul_seconds=0.1, gpu_symbols=3, gpu_years=3, gpu_epochs=1,
                   gpu_large_batch=256, gpu_group_size=3)


# ---------------------------------------------------------------------------------- yardsticks


def lstm_flops_per_sequence(n_features: int, hidden: int, layers: int, lookback: int,
                            n_classes: int = len(CLASSES), train: bool = True) -> float:
    """FLOPs to push one window through the LSTM classifier (x3 with the backward pass).

    Per time step and layer the gates cost ``2 * 4H * (I + H)`` (two matmuls, multiply-add = 2)
    plus the biases and ~10 element-wise ops per hidden unit; the head ``2 * H * C``. The
    backward pass costs about twice the forward (gradients for inputs and for weights).
    """
    per_step = 0.0
    width = n_features
    for _ in range(layers):
        per_step += 2 * 4 * hidden * (width + hidden) + 2 * 4 * hidden + 10 * hidden
        width = hidden
    fwd = lookback * per_step + 2 * hidden * n_classes
    return 3 * fwd if train else fwd


def matmul_gflops(n: int = 1024, repeats: int = 8, device: str = "cpu",
                  dtype: torch.dtype = torch.float32, seconds: float = 0.0) -> float:
    """Rate of an n x n x n matmul (the practical arithmetic limit), in GFLOP/s.

    ``seconds == 0``: the best of ``repeats`` single products (a burst). ``seconds > 0``: the
    mean rate of back-to-back products over at least that long (sustained), which a shared CPU
    sees the way it sees a training epoch, so the two compare fairly.
    """
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(2):
        a @ b
    sync()
    if seconds > 0:
        count, t0 = 0, time.perf_counter()
        while count < 2 or time.perf_counter() - t0 < seconds:
            a @ b
            sync()
            count += 1
        return count * 2 * n**3 / (time.perf_counter() - t0) / 1e9
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on, and how busy the machine was."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "platform": platform.platform(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover - psutil is a dependency
        pass
    return info


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        return None


# -------------------------------------------------------------------------------- demo helpers


def make_demo(root: Path, symbols: int, years: int, seed: int = 7,
              defect_share: float = 0.25) -> Path:
    """Demo raw files under ``root/raw`` (made once; reused when already there)."""
    raw = root / "raw"
    if not (raw.exists() and len(list(raw.iterdir())) >= symbols):
        generate(raw, DemoSpec(symbols=symbols, years=years, seed=seed,
                               defect_share=defect_share))
    return raw


def drop_last_day(src: Path, dst: Path) -> str:
    """Copy a raw CSV without its latest date's rows: the file as it was a day earlier."""
    df = pd.read_csv(src, dtype={"date": str})
    last = max(df["date"].dropna())
    dst.parent.mkdir(parents=True, exist_ok=True)
    df[df["date"] != last].to_csv(dst, index=False)
    return last


def _layout(raw: Path, wh: Path) -> pipeline.Layout:
    return pipeline.Layout.from_dirs(raw, wh)


def run_stages(layout: pipeline.Layout, symbols: Sequence[str],
               settings: Settings) -> list[dict[str, Any]]:
    """raw -> clean -> sequences for each symbol in turn, timing each stage."""
    out = []
    for sym in symbols:
        row: dict[str, Any] = {"symbol": sym, "ok": True}
        try:
            t0 = time.perf_counter()
            raw = pipeline.run_raw(layout, sym)
            t1 = time.perf_counter()
            pipeline.run_clean(layout, sym, settings)
            t2 = time.perf_counter()
            seq = pipeline.run_sequences(layout, sym, settings)
            t3 = time.perf_counter()
            row.update(raw_s=t1 - t0, clean_s=t2 - t1, seq_s=t3 - t2, rows=int(raw["rows"]),
                       matrix_bytes=int(seq.get("matrix_bytes", 0)))
        except Exception as e:  # a bad demo file fails its symbol only (as in the pipeline)
            row.update(ok=False, error=f"{type(e).__name__}: {e}")
        out.append(row)
    return out


def _stage_totals(rows: list[dict[str, Any]]) -> dict[str, float]:
    ok = [r for r in rows if r["ok"]]
    tot = {k: float(sum(r[k] for r in ok)) for k in ("raw_s", "clean_s", "seq_s")}
    tot["seconds"] = sum(tot.values())
    tot["rows"] = float(sum(r["rows"] for r in ok))
    tot["rows_per_second"] = tot["rows"] / tot["seconds"] if tot["seconds"] else float("nan")
    tot["symbols_ok"] = float(len(ok))
    return tot


def _stages_worker(args: tuple[str, str, str, dict[str, Any]]) -> dict[str, Any]:
    raw, wh, sym, sdict = args
    return run_stages(_layout(Path(raw), Path(wh)), [sym], Settings(**sdict))[0]


def run_stages_parallel(layout: pipeline.Layout, symbols: Sequence[str], settings: Settings,
                        workers: int) -> float:
    """Wall seconds of the same stages over ``workers`` processes (one symbol per task)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    args = [(str(layout.raw_dir), str(layout.warehouse.base), s, settings.as_dict())
            for s in symbols]
    t0 = time.perf_counter()
    # spawn, not fork: safe after CUDA was touched in the parent
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        list(ex.map(_stages_worker, args, chunksize=max(1, len(args) // (4 * workers))))
    return time.perf_counter() - t0


def model_test_accuracy(model_path: Path, seq: SequenceSet) -> float:
    """Accuracy of a saved model on the test windows of ``seq``."""
    m = LoadedModel.load(model_path)
    rows = seq.end_rows("test")
    proba = m.predict_proba(seq.X, rows)
    return float((proba.argmax(1) == seq.y[rows]).mean())


def untrained_model(path: Path, seq: SequenceSet, settings: Settings) -> None:
    """A model file with the real config layout and initial (untrained) weights.

    Inference costs the same whatever the weights are, so the signals benchmark does not need
    164 trained models.
    """
    torch.manual_seed(settings.seed)
    net = LSTMClassifier(seq.X.shape[1], settings.hidden_size, settings.num_layers,
                         settings.dropout)
    cfg = {
        "format": "lstm_assets.model/1", "classes": list(CLASSES), "features": seq.features,
        "scaler": {"mean": seq.mean.tolist(), "scale": seq.scale.tolist(), "clip": 10.0},
        "label_rule": {"flat_rule": settings.flat_rule}, "lookback": seq.lookback,
        "horizon": settings.horizon,
        "architecture": {"type": "lstm", "hidden_size": settings.hidden_size,
                         "num_layers": settings.num_layers, "dropout": settings.dropout},
        "settings": settings.as_dict(), "training": {"init": "untrained (benchmark)"},
        "fingerprint": "benchmark", "bounds": seq.bounds.as_dict(),
    }
    save_model(path, net.state_dict(), cfg)


# ------------------------------------------------------------------------------ memory probe


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmHWM``, ``RssFile``...) in bytes; None where
    there is no such file or field."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _peak() -> int:
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    import resource

    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def _rss_file() -> int:
    """File-backed resident bytes of this process (mostly shared libraries' code pages); 0
    where ``/proc`` has no ``RssFile``."""
    return _status_bytes("RssFile") or 0


def _warm_up_loop(settings: Settings, loop: str) -> None:
    """Train ``loop`` for one epoch on a toy set (5 features, 8 hidden units, 4 steps, batch 4).

    The first call of each kernel faults its code pages in from torch's shared libraries:
    file-backed, shared by every process, the same for every symbol (5.5 MB for ``fit`` after
    the earlier toy forward/backward, measured 2026-11-27). Running the probed loop itself
    touches the same code; other shapes than the probed model's, so no memory sized for the
    real model (oneDNN primitives, scratchpads) is set up before the baseline.
    """
    rows, width, lookback = 80, 5, 4
    rng = np.random.default_rng(0)
    toy = SequenceSet(X=rng.standard_normal((rows, width), dtype=np.float32),
                      y=rng.integers(0, len(CLASSES), rows).astype(np.int8),
                      dates=np.arange(rows).astype("datetime64[D]"),
                      bounds=Bounds(lookback - 1, 50, 50, 65, 65, rows),
                      features=[f"f{i}" for i in range(width)],
                      mean=np.zeros(width, np.float32), scale=np.ones(width, np.float32),
                      lookback=lookback)
    small = settings.replace(hidden_size=8, lookback=lookback, batch_size=4)
    with torch.random.fork_rng(devices=[]):
        if loop == "reference":
            reference_fit(toy, small, 1, batch_size=4)
        else:
            fit(toy, small, max_epochs=1)


def memory_probe(clean_path: str, settings_json: str, epochs: int, loop: str,
                 eval_slice: int = 0) -> dict[str, Any]:
    """Run in a fresh process: the two stages of one symbol, as the pipeline runs them.

    1. sequences: ``pipeline.run_sequences`` on the clean frame's parquet file (read, build the
       scaled matrix, save the ``.npz`` atomically), the stage exactly as a run does it;
    2. training: load the ``.npz`` (``SequenceSet.load``) and train ``epochs`` epochs with
       ``loop`` (``core.train.fit``, or the reference loop).

    The baseline is taken after the libraries are imported and warmed up: one epoch of the same
    loop on a toy set (``_warm_up_loop``) and a 3-row parquet round trip (the interpreter, torch
    and the code pages of the kernels a stage calls are not data). Before each stage the
    kernel's peak-RSS counter (``VmHWM``) is reset; a stage's growth = its peak - the RSS just
    before it, so it counts every byte the stage touched, whoever allocated it (numpy, pyarrow's
    own allocator, torch, oneDNN). The file-backed part of that growth (code pages a stage
    faulted in all the same) is returned too, as ``*_file_growth``. ``eval_slice`` > 0 sets this
    process's CPU validation slice (``train.EVAL_SLICE_CPU``), for ``scripts/memory_vs_batch.py``.
    """
    import gc

    from lstm_assets.core.storage import Warehouse

    settings = Settings(**json.loads(settings_json))
    if settings.num_threads > 0:
        torch.set_num_threads(settings.num_threads)
    if eval_slice > 0:
        from lstm_assets.core import train

        train.EVAL_SLICE_CPU = eval_slice
    _warm_up_loop(settings, loop)
    from lstm_assets.core.sequences import read_pool
    from lstm_assets.core.storage import parquet_reader, write_parquet

    # a 3-row frame of the clean frame's column types, written and read as the stage does: a
    # process's first read of a dictionary-encoded int8 column sets up ~2-4 MB inside pyarrow,
    # once (a one-cell float64 round trip, the warm-up until 2026-11-27, left that in the stage)
    with tempfile.TemporaryDirectory() as tmp:
        toy_path = Path(tmp) / "toy.parquet"
        write_parquet(toy_path, pd.DataFrame({"date": pd.date_range("2020-01-01", periods=3),
                                              "x": np.ones(3, np.float32),
                                              "label": np.arange(3, dtype=np.int8)}))
        pd.read_parquet(toy_path)
        with parquet_reader(toy_path, memory_pool=read_pool()) as reader:
            for i in range(reader.metadata.num_columns):
                reader.read_column(i).to_numpy()
    clean = Path(clean_path)  # <warehouse>/clean_frames/<SYMBOL>.parquet
    layout = pipeline.Layout(clean.parents[1], Warehouse(clean.parents[1]))
    symbol = clean.stem
    gc.collect()
    base, file0 = _rss(), _rss_file()
    resettable = _reset_peak()
    meta = pipeline.run_sequences(layout, symbol, settings)
    seq_peak = _peak() - base
    seq_file = _rss_file() - file0
    matrix, rows, width = int(meta["matrix_bytes"]), int(meta["rows"]), int(meta["features"])
    del meta
    gc.collect()
    base2, file0 = _rss(), _rss_file()
    _reset_peak()
    seq = SequenceSet.load(layout.warehouse.sequences(symbol))
    if loop == "reference":
        res = reference_fit(seq, settings, epochs)
        extra = {"window_bytes": res.window_bytes}
    else:
        fit(seq, settings, max_epochs=epochs)
        extra = {}
    train_peak = _peak() - base2
    train_file = _rss_file() - file0
    net = LSTMClassifier(width, settings.hidden_size, settings.num_layers, settings.dropout)
    # weights + grads + Adam's two moments + the best-weights copy
    state = 5 * 4 * n_params(net)
    return {"loop": loop, "rows": rows, "matrix_bytes": matrix, "model_optimizer_bytes": state,
            "baseline_rss": base, "sequences_peak_growth": int(seq_peak),
            "sequences_file_growth": int(seq_file),
            "train_baseline_rss": base2, "train_peak_growth": int(train_peak),
            "train_file_growth": int(train_file),
            "peak_resettable": resettable, **extra}


def _run_probe(clean_path: Path, settings: Settings, epochs: int, loop: str,
               eval_slice: int = 0) -> dict[str, Any]:
    """:func:`memory_probe` in a fresh Python process."""
    code = ("import json, sys; from lstm_assets.core.bench import memory_probe; "
            "print('PROBE ' + json.dumps(memory_probe(*sys.argv[1:3], int(sys.argv[3]), "
            "sys.argv[4], int(sys.argv[5]))))")
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])]))
    # glibc: a fixed mmap threshold returns big freed blocks to the OS at once, so RSS follows
    # live memory; with the default dynamic threshold the same run wanders by +-20 MB
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(64 * 1024))
    out = subprocess.run([sys.executable, "-c", code, str(clean_path),
                          json.dumps(settings.as_dict()), str(epochs), loop, str(eval_slice)],
                         capture_output=True, text=True, env=env, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("PROBE "):
            return json.loads(line[6:])
    raise RuntimeError(f"memory probe failed ({out.returncode}): {out.stderr[-2000:]}")


# ------------------------------------------------------------------------------------ the bench


@dataclass
class Row:
    section: str
    figure: str
    value: str
    target: str = ""
    met: bool | None = None


@dataclass
class Bench:
    """One benchmark run: ``run()`` fills ``figures`` (flat, JSON) and ``rows`` (the table)."""

    size: BenchSize
    work: Path
    say: Callable[[str], None] = print
    workers: int = 1
    figures: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.size.settings

    def add(self, section: str, figure: str, value: str, target: str = "",
            met: bool | None = None) -> None:
        self.rows.append(Row(section, figure, value, target, met))

    # ---- data sets -------------------------------------------------------------------------

    def main_data(self) -> tuple[pipeline.Layout, list[str]]:
        """The data-stage set (N symbols x Y years, with defects) and its warehouse."""
        root = self.work / f"main_{self.size.data_symbols}x{self.size.data_years}"
        if "main" not in self.details:
            t0 = time.perf_counter()
            make_demo(root, self.size.data_symbols, self.size.data_years)
            self.details["main"] = {"generate_seconds": time.perf_counter() - t0}
        layout = _layout(root / "raw", root / "wh")
        return layout, layout.symbols()

    # ---- sections --------------------------------------------------------------------------

    def training(self) -> None:
        sz, st = self.size, self.settings
        root = self.work / "train"
        raw = make_demo(root, 1, sz.train_years, seed=11, defect_share=0.0)
        layout = _layout(raw, root / "wh")
        sym = layout.symbols()[0]
        pipeline.run_clean(layout, sym, st)
        pipeline.run_sequences(layout, sym, st)
        seq = SequenceSet.load(layout.warehouse.sequences(sym))
        self.details["train_clean_path"] = str(layout.warehouse.clean_frame(sym))
        self.say(f"training: {len(seq.end_rows('train'))} train windows, "
                 f"{sz.rounds} x {sz.train_epochs} epochs per loop")
        device = str(pick_device(st.device))
        burst = matmul_gflops(sz.matmul_n, device=device)
        mm: list[float] = []
        # warm-up of both loops: one-time library initialisation, allocator growth
        fit(seq, st, max_epochs=1)
        reference_fit(seq, st, 1, batch_size=st.batch_size)
        proj, ref, per_round, vals_p, vals_r, best_vp, best_vr = [], [], [], [], [], [], []
        cpu_p: list[float] = []
        cpu_r: list[float] = []
        for r in range(sz.rounds):
            # the machine's rate right before, under the same load; a new seed each round
            mm.append(matmul_gflops(sz.matmul_n, device=device, seconds=sz.matmul_seconds))
            st_r = st.replace(seed=st.seed + r)
            # alternate which loop goes first (drift in load cancels out); also count the
            # CPU seconds each whole run used (setup + training + validation), which time
            # spent waiting for a shared CPU does not inflate
            for first in ((0, 1) if r % 2 == 0 else (1, 0)):
                c0 = time.process_time()
                if first == 0:
                    res = fit(seq, st_r, max_epochs=sz.train_epochs)
                    cpu_p.append(time.process_time() - c0)
                else:
                    rr = reference_fit(seq, st_r, sz.train_epochs, batch_size=st.batch_size)
                    cpu_r.append(time.process_time() - c0)
            sps_r = rr.train_sequences * len(rr.epoch_seconds) / sum(rr.epoch_seconds)
            proj.append(res.sequences_per_second)
            ref.append(sps_r)
            per_round.append(res.sequences_per_second / sps_r)
            vals_p.append(res.history[-1]["val_loss"])
            vals_r.append(rr.final_val_loss)
            best_vp.append(min(h["val_loss"] for h in res.history))
            best_vr.append(min(rr.val_losses))
            self.say(f"  round {r + 1} (seed {st_r.seed}): project "
                     f"{res.sequences_per_second:,.0f} seq/s (val {vals_p[-1]:.4f}), reference "
                     f"{sps_r:,.0f} seq/s (val {vals_r[-1]:.4f})")
        mm.append(matmul_gflops(sz.matmul_n, device=device, seconds=sz.matmul_seconds))
        flops = lstm_flops_per_sequence(seq.X.shape[1], st.hidden_size, st.num_layers,
                                        seq.lookback)
        best_p, best_r, machine = max(proj), max(ref), max(mm)
        val_p, val_r = float(np.mean(vals_p)), float(np.mean(vals_r))
        f = self.figures
        f["train_sequences_per_second"] = best_p
        f["reference_sequences_per_second"] = best_r
        # paired: each round's two runs saw about the same load; the median round is robust
        f["train_speedup_vs_reference"] = float(np.median(per_round))
        f["train_speedup_best_vs_best"] = best_p / best_r
        f["train_speedup_cpu_time"] = float(np.median(np.array(cpu_r) / np.array(cpu_p)))
        f["train_speedup_per_round"] = per_round
        f["train_val_loss"] = val_p
        f["reference_val_loss"] = val_r
        f["train_val_loss_per_round"] = vals_p
        f["reference_val_loss_per_round"] = vals_r
        f["train_best_val_loss"] = float(np.mean(best_vp))
        f["reference_best_val_loss"] = float(np.mean(best_vr))
        f["train_mflop_per_sequence"] = flops / 1e6
        f["train_gflops"] = best_p * flops / 1e9
        f["reference_gflops"] = best_r * flops / 1e9
        f["machine_matmul_gflops"] = machine
        f["machine_matmul_burst_gflops"] = burst
        f["train_fraction_of_matmul"] = f["train_gflops"] / machine
        f["train_threads"] = torch.get_num_threads()
        f["train_sequences"] = int(len(seq.end_rows("train")))
        f["cpu_bf16_sequences_per_second"] = f["cpu_bf16_val_loss"] = None
        if device == "cpu" and _cpu_bf16_supported():
            res = fit(seq, st, max_epochs=sz.train_epochs, autocast=True)
            f["cpu_bf16_sequences_per_second"] = res.sequences_per_second
            f["cpu_bf16_val_loss"] = res.history[-1]["val_loss"]
        f["default_threads"] = DEFAULT_THREADS
        f["default_threads_sequences_per_second"] = None
        if device == "cpu" and torch.get_num_threads() != DEFAULT_THREADS:
            res = fit(seq, st.replace(num_threads=DEFAULT_THREADS), max_epochs=1)
            f["default_threads_sequences_per_second"] = res.sequences_per_second
            torch.set_num_threads(f["train_threads"])
        ratio = f["train_speedup_vs_reference"]
        self.add("training", "project loop (core.train.fit)",
                 f"{best_p:,.0f} seq/s, {f['train_gflops']:.0f} GFLOP/s, val loss {val_p:.4f}")
        self.add("training", "reference loop (DataLoader, .item() per batch)",
                 f"{best_r:,.0f} seq/s, {f['reference_gflops']:.0f} GFLOP/s, "
                 f"val loss {val_r:.4f}")
        self.add("training", f"project / reference throughput (median of {sz.rounds} paired "
                 "rounds)", f"{ratio:.2f}x (rounds: "
                 + ", ".join(f"{x:.2f}" for x in per_round) + ")", ">= 0.95x", ratio >= 0.95)
        self.add("training", "the same in CPU seconds of whole runs (reference / project)",
                 f"{f['train_speedup_cpu_time']:.2f}x")
        self.add("training", f"val loss after {sz.train_epochs} epochs, project - reference "
                 f"(mean of {sz.rounds} seeds)", f"{val_p - val_r:+.4f}",
                 f"<= +{VAL_LOSS_TOLERANCE}", val_p <= val_r + VAL_LOSS_TOLERANCE)
        self.add("training", f"machine fp32 matmul ({device}, {f['train_threads']} threads)",
                 f"{machine:,.0f} GFLOP/s sustained ({burst:,.0f} best burst)")
        frac = f["train_fraction_of_matmul"]
        self.add("training", "project GFLOP/s / matmul GFLOP/s", f"{frac:.0%}", ">= 50%",
                 frac >= 0.5)
        if f["default_threads_sequences_per_second"]:
            d = f["default_threads_sequences_per_second"]
            self.add("training", f"project loop at torch's default {DEFAULT_THREADS} threads",
                     f"{d:,.0f} seq/s ({d / best_p:.2f}x the {f['train_threads']}-thread figure)")
        if f["cpu_bf16_sequences_per_second"]:
            self.add("training", "project loop, CPU bf16 autocast (opt-in)",
                     f"{f['cpu_bf16_sequences_per_second']:,.0f} seq/s "
                     f"({f['cpu_bf16_sequences_per_second'] / best_p:.2f}x fp32), "
                     f"val loss {f['cpu_bf16_val_loss']:.4f}")

    def retrain(self) -> None:
        sz, st = self.size, self.settings
        root = self.work / "retrain"
        today = make_demo(root / "today", sz.retrain_symbols, sz.retrain_years, seed=23,
                          defect_share=0.0)
        yesterday = root / "yesterday" / "raw"
        symbols = _layout(today, root / "tmp").symbols()
        for sym in symbols:
            drop_last_day(today / f"{sym}.csv", yesterday / f"{sym}.csv")
        wh_a, wh_b = root / "wh_warm", root / "wh_cold"
        prev = _layout(yesterday, wh_a)
        self.say(f"retrain: {len(symbols)} symbol(s) x {sz.retrain_years} years; "
                 "yesterday's models first (cold)")
        for sym in symbols:
            pipeline.run_clean(prev, sym, st)
            pipeline.run_sequences(prev, sym, st)
            pipeline.run_train(prev, sym, st)
        shutil.copytree(wh_a, wh_b)
        la, lb = _layout(today, wh_a), _layout(today, wh_b)
        per: list[dict[str, Any]] = []
        for sym in symbols:
            for lay in (la, lb):
                pipeline.run_clean(lay, sym, st)
                pipeline.run_sequences(lay, sym, st)
            # cold: no previous model in this warehouse
            lb.warehouse.model(sym).unlink()
            lb.warehouse.model(sym).with_suffix(".json").unlink(missing_ok=True)
            cold = pipeline.run_train(lb, sym, st)
            # warm: what the pipeline chooses after one new day (previous model, few epochs)
            prev_state = LoadedModel.load(la.warehouse.model(sym)).net.state_dict()
            warm = pipeline.run_train(la, sym, st)
            how = "pipeline"
            if warm.get("init") != "warm":  # the pipeline has no warm-start path yet
                warm = pipeline.run_train(la, sym, st, init_state=prev_state,
                                          max_epochs=int(getattr(st, "warm_epochs", 5)))
                how = "init_state"
            t0 = time.perf_counter()
            again = pipeline.run_train(la, sym, st)
            wall = time.perf_counter() - t0
            skipped = bool(again.get("skipped")) or again.get("init") == "skipped"
            seq = SequenceSet.load(la.warehouse.sequences(sym))
            per.append({
                "symbol": sym, "warm_seconds": float(warm["seconds"]),
                "cold_seconds": float(cold["seconds"]), "warm_epochs": warm["epochs_run"],
                "cold_epochs": cold["epochs_run"], "warm_how": how,
                "warm_test_accuracy": model_test_accuracy(la.warehouse.model(sym), seq),
                "cold_test_accuracy": model_test_accuracy(lb.warehouse.model(sym), seq),
                "warm_val_loss": warm.get("best_val_loss"),
                "cold_val_loss": cold.get("best_val_loss"),
                "unchanged_skipped": skipped, "unchanged_wall_seconds": wall,
                "unchanged_train_seconds": 0.0 if skipped else float(again.get("seconds", 0)),
            })
            p = per[-1]
            self.say(f"  {sym}: cold {p['cold_seconds']:.1f}s ({p['cold_epochs']} ep, acc "
                     f"{p['cold_test_accuracy']:.3f}), warm {p['warm_seconds']:.1f}s "
                     f"({p['warm_epochs']} ep, acc {p['warm_test_accuracy']:.3f}), unchanged: "
                     f"{'skipped' if skipped else 'RETRAINED'} ({wall:.2f}s)")
        f = self.figures
        warm_s = sum(p["warm_seconds"] for p in per)
        cold_s = sum(p["cold_seconds"] for p in per)
        f["warm_train_seconds"], f["cold_train_seconds"] = warm_s, cold_s
        f["warm_vs_cold_train_time_ratio"] = warm_s / cold_s
        f["warm_minus_cold_test_accuracy"] = float(np.mean(
            [p["warm_test_accuracy"] - p["cold_test_accuracy"] for p in per]))
        f["unchanged_symbol_train_seconds"] = max(p["unchanged_train_seconds"] for p in per)
        f["unchanged_symbol_wall_seconds"] = max(p["unchanged_wall_seconds"] for p in per)
        f["retrain_symbols"] = len(per)
        self.details["retrain"] = per
        r, d = f["warm_vs_cold_train_time_ratio"], f["warm_minus_cold_test_accuracy"]
        self.add("retrain", f"warm / cold training time ({len(per)} symbols, +1 day)",
                 f"{r:.2f} ({warm_s:.1f}s / {cold_s:.1f}s)", "<= 0.33", r <= 1 / 3)
        self.add("retrain", "test accuracy, warm - cold", f"{100 * d:+.2f} points",
                 ">= -1 point", d >= -0.01)
        u = f["unchanged_symbol_train_seconds"]
        self.add("retrain", "unchanged symbol: training seconds",
                 f"{u:.2f}s (call took {f['unchanged_symbol_wall_seconds']:.2f}s)", "0",
                 u == 0)

    def data(self) -> None:
        sz, st = self.size, self.settings
        layout, symbols = self.main_data()
        self.say(f"data stages: {len(symbols)} symbols x {sz.data_years} years "
                 f"(demo data made in {self.details['main']['generate_seconds']:.1f}s)")
        rows = run_stages(layout, symbols, st)
        tot = _stage_totals(rows)
        self.details["data_rows"] = rows
        f = self.figures
        f["data_stages_seconds"] = tot["seconds"]
        f["data_stages_symbols"] = len(symbols)
        f["data_stages_years"] = sz.data_years
        f["data_stages_rows_per_second"] = tot["rows_per_second"]
        f["data_stages_failed_symbols"] = len(symbols) - int(tot["symbols_ok"])
        f["data_stage_seconds"] = {"raw": tot["raw_s"], "clean": tot["clean_s"],
                                   "sequences": tot["seq_s"]}
        f["data_stages_parallel_seconds"] = None
        if self.workers > 1:
            wh2 = self.work / "main_parallel_wh"
            f["data_stages_parallel_seconds"] = run_stages_parallel(
                _layout(layout.raw_dir, wh2), symbols, st, self.workers)
            f["data_stages_parallel_workers"] = self.workers
        s = tot["seconds"]
        target = 20.0 * len(symbols) * sz.data_years / (164 * 20)
        self.add("data", f"raw -> clean -> sequences, {len(symbols)} symbols x "
                 f"{sz.data_years} y (serial)",
                 f"{s:.1f}s, {tot['rows_per_second']:,.0f} rows/s (raw {tot['raw_s']:.1f}s, "
                 f"clean {tot['clean_s']:.1f}s, sequences {tot['seq_s']:.1f}s)",
                 f"<= {target:.1f}s" + ("" if sz.data_symbols == 164 else " (pro rata)"),
                 s <= target)
        if f["data_stages_parallel_seconds"]:
            self.add("data", f"the same over {self.workers} processes",
                     f"{f['data_stages_parallel_seconds']:.1f}s")

    def memory(self) -> None:
        sz, st = self.size, self.settings
        probes, cleans = [], []
        for years in sz.memory_years:
            root = self.work / f"memory_{years}y"
            raw = make_demo(root, 1, years, seed=11, defect_share=0.0)
            lay = _layout(raw, root / "wh")
            sym = lay.symbols()[0]
            pipeline.run_clean(lay, sym, st)
            cleans.append(lay.warehouse.clean_frame(sym))
            probes.append(_run_probe(cleans[-1], st, sz.memory_epochs, "project"))
            self.say(f"memory: {years} y: matrix {probes[-1]['matrix_bytes'] / 1e6:.1f} MB, "
                     f"peak growth {probes[-1]['sequences_peak_growth'] / 1e6:.1f} MB "
                     f"(sequences) / {probes[-1]['train_peak_growth'] / 1e6:.1f} MB (training)")
        one = probes[0]
        ref = (_run_probe(cleans[0], st, sz.memory_epochs, "reference")
               if sz.memory_reference else {"train_peak_growth": None})
        self.details["memory"] = {"project": probes, "reference": ref}
        m, state = one["matrix_bytes"], one["model_optimizer_bytes"]
        peak = max(one["sequences_peak_growth"], one["train_peak_growth"])
        f = self.figures
        f["memory_years"] = sz.memory_years[0]
        f["matrix_bytes"] = m
        f["model_optimizer_bytes"] = state
        f["sequences_peak_rss_growth_bytes"] = one["sequences_peak_growth"]
        f["train_peak_rss_growth_bytes"] = one["train_peak_growth"]
        f["sequences_file_rss_growth_bytes"] = one["sequences_file_growth"]
        f["train_file_rss_growth_bytes"] = one["train_file_growth"]
        f["reference_train_peak_rss_growth_bytes"] = ref["train_peak_growth"]
        f["peak_rss_ratio"] = (peak - state) / m
        f["peak_rss_marginal_ratio"] = None
        mb = 1e6
        self.add("memory", f"one symbol, {sz.memory_years[0]} y: scaled 2-D matrix",
                 f"{m / mb:.2f} MB; model + optimizer state {state / mb:.1f} MB")
        ref_txt = ("" if ref["train_peak_growth"] is None else
                   f"; reference loop training: {ref['train_peak_growth'] / mb:.1f} MB "
                   f"(its windows alone: {ref['window_bytes'] / mb:.1f} MB)")
        self.add("memory", "peak RSS growth: sequences / training",
                 f"{one['sequences_peak_growth'] / mb:.1f} / {one['train_peak_growth'] / mb:.1f}"
                 f" MB (of which library code pages: {one['sequences_file_growth'] / mb:.1f} / "
                 f"{one['train_file_growth'] / mb:.1f} MB){ref_txt}")
        r = f["peak_rss_ratio"]
        self.add("memory", "(peak growth - model/optimizer) / matrix", f"{r:.1f}x", "<= 2x",
                 r <= 2)
        f["sequences_peak_rss_ratio"] = one["sequences_peak_growth"] / m
        self.add("memory", "sequences stage alone: peak growth / matrix",
                 f"{f['sequences_peak_rss_ratio']:.2f}x", "<= 2x",
                 f["sequences_peak_rss_ratio"] <= 2)
        if len(probes) > 1:
            # growth = fixed + per_byte x matrix, from the shortest and the longest history:
            # per_byte is what the data costs; fixed does not grow with it (for training: one
            # batch's LSTM activations, gradients and oneDNN workspace, ~30 MB at 64 x 30 x 2
            # layers, whatever the history; the reference loop pays it too)
            big = probes[-1]
            dm = big["matrix_bytes"] - m
            d_seq = (big["sequences_peak_growth"] - one["sequences_peak_growth"]) / dm
            d_train = (big["train_peak_growth"] - one["train_peak_growth"]) / dm
            fixed_seq = one["sequences_peak_growth"] - d_seq * m
            fixed_train = one["train_peak_growth"] - d_train * m
            f["peak_rss_marginal_ratio"] = max(d_seq, d_train)
            f["sequences_peak_rss_marginal_ratio"] = d_seq
            f["train_peak_rss_marginal_ratio"] = d_train
            f["sequences_peak_rss_fixed_bytes"] = fixed_seq
            f["train_peak_rss_fixed_bytes"] = fixed_train
            self.add("memory", f"growth per extra matrix byte ({sz.memory_years[0]} -> "
                     f"{sz.memory_years[-1]} y): sequences / training",
                     f"{d_seq:.2f}x / {d_train:.2f}x", "<= 2x",
                     f["peak_rss_marginal_ratio"] <= 2)
            def mb1(x: float) -> str:  # an extrapolated 0 can come out a hair below it
                return f"{round(x / mb, 1) + 0.0:.1f}"  # -0.0 + 0.0 prints as 0.0

            self.add("memory", "growth = fixed + per byte x matrix: sequences / training",
                     f"{mb1(fixed_seq)} MB + {d_seq:.2f}x / {mb1(fixed_train)} MB + "
                     f"{d_train:.2f}x (training's fixed part minus model/optimizer state: "
                     f"{(fixed_train - state) / mb:.1f} MB)")

    def signals(self) -> None:
        st = self.settings
        layout, symbols = self.main_data()
        wh = layout.warehouse
        have = [s for s in symbols if wh.sequences(s).exists()]
        if not have:  # data section not run: build what signals need
            run_stages(layout, symbols, st)
            have = [s for s in symbols if wh.sequences(s).exists()]
        for sym in have:
            untrained_model(wh.model(sym), SequenceSet.load(wh.sequences(sym)), st)
        t0 = time.perf_counter()
        try:
            from lstm_assets.core.signals import latest_signals
        except ImportError:  # older tree: the equivalent loop over the same model API
            latest_signals = None
        if latest_signals is not None:
            table = latest_signals(wh, st, have)
            n_ok, how = len(table.frame), "core.signals.latest_signals"
        else:
            n_ok, how = 0, "LoadedModel + clean frame"
            for sym in have:
                m = LoadedModel.load(wh.model(sym))
                frame = pd.read_parquet(wh.clean_frame(sym))
                X = m.scale(frame.iloc[-m.lookback:])
                m.predict_proba(X, np.array([len(X) - 1]))
                n_ok += 1
        sec = time.perf_counter() - t0
        f = self.figures
        f["signals_seconds"] = sec
        f["signals_symbols"] = n_ok
        target = 10.0 * len(have) / 164
        self.add("signals", f"next-day signals, {n_ok} symbols ({how})",
                 f"{sec:.2f}s ({1000 * sec / max(n_ok, 1):.0f} ms/symbol)",
                 f"<= {target:.1f}s" + ("" if len(have) == 164 else " (pro rata)"),
                 sec <= target)

    def scaling(self) -> None:
        sz, st = self.size, self.settings
        layout, symbols = self.main_data()
        stage_rows = self.details.get("data_rows")
        if stage_rows is None:
            stage_rows = run_stages(layout, symbols, st)
            self.details["data_rows"] = stage_rows
        n_train = min(max(sz.scale_symbols), len(symbols))
        self.say(f"scaling: one epoch for each of {n_train} symbols; years "
                 f"{', '.join(map(str, sz.scale_years))} at {sz.scale_years_symbols} symbols")
        epoch = self._epochs(layout, symbols[:n_train])
        table = []
        for n in sz.scale_symbols:
            if n > len(symbols):
                continue
            table.append(self._scale_row("symbols", n, sz.data_years, stage_rows[:n],
                                         epoch[:n]))
        for years in sz.scale_years:
            k = sz.scale_years_symbols
            if years == sz.data_years and k <= len(symbols):
                st_rows, ep = stage_rows[:k], (epoch[:k] if k <= n_train else
                                               self._epochs(layout, symbols[:k]))
            else:
                root = self.work / f"years_{k}x{years}"
                raw = make_demo(root, k, years)
                lay = _layout(raw, root / "wh")
                syms = lay.symbols()
                st_rows = run_stages(lay, syms, st)
                ep = self._epochs(lay, syms)
            table.append(self._scale_row("years", k, years, st_rows, ep))
        self.details["scaling"] = table
        self.figures["scaling"] = table
        for r in table:
            self.add("scaling", f"{r['symbols']:>3} symbols x {r['years']:>2} y",
                     f"data {r['data_seconds']:.2f}s ({1000 * r['data_ms_per_symbol_year']:.1f} "
                     f"ms/symbol-year), epoch {r['epoch_seconds']:.2f}s "
                     f"({1000 * r['epoch_ms_per_symbol_year']:.1f} ms/symbol-year)")
        self.figures["scaling_linear"] = _linearity(table)

    def _epochs(self, layout: pipeline.Layout, symbols: Sequence[str]) -> list[float]:
        out = []
        for sym in symbols:
            p = layout.warehouse.sequences(sym)
            if not p.exists():
                out.append(float("nan"))
                continue
            res = fit(SequenceSet.load(p), self.settings, max_epochs=1)
            out.append(res.seconds)
        return out

    @staticmethod
    def _scale_row(kind: str, n: int, years: int, stage_rows: list[dict[str, Any]],
                   epochs: list[float]) -> dict[str, Any]:
        tot = _stage_totals(stage_rows)
        ep = float(np.nansum(epochs))
        sy = max(n * years, 1)
        return {"sweep": kind, "symbols": n, "years": years, "rows": tot["rows"],
                "data_seconds": tot["seconds"], "data_rows_per_second": tot["rows_per_second"],
                "data_ms_per_symbol_year": tot["seconds"] / sy, "epoch_seconds": ep,
                "epoch_ms_per_symbol_year": ep / sy}

    def gpu(self) -> None:
        from lstm_assets.core import bench_gpu

        f = self.figures
        for k in bench_gpu.GPU_KEYS:
            f.setdefault(k, None)
        if not torch.cuda.is_available():
            self.add("gpu", "GPU section", "skipped: no CUDA device")
            return
        layout, symbols = self.main_data()
        wh = layout.warehouse
        if not all(wh.sequences(s).exists() for s in symbols):
            run_stages(layout, symbols, self.settings)
        seqs = [SequenceSet.load(wh.sequences(s)) for s in symbols if wh.sequences(s).exists()]
        for s in symbols:  # the signals section's untrained stand-ins: the GPU fits start cold
            wh.model(s).unlink(missing_ok=True)
        out = bench_gpu.gpu_section(seqs, self.size, self.say,
                                    cpu_sps=f.get("train_sequences_per_second"), layout=layout)
        f.update(out["figures"])
        self.details["gpu"] = out["details"]
        for r in out["rows"]:
            self.add("gpu", *r)

    # ---- driver ----------------------------------------------------------------------------

    def run(self, sections: Sequence[str] = SECTIONS) -> dict[str, Any]:
        t0 = time.perf_counter()
        meta = machine_info()
        meta["load_average_start"] = load_average()
        meta["size"] = self.size.name
        self.figures.update({k: None for k in REQUIRED_KEYS})
        for name in SECTIONS:
            if name not in sections:
                continue
            ts = time.perf_counter()
            self.say(f"== {name}")
            getattr(self, name)()
            self.details.setdefault("section_seconds", {})[name] = time.perf_counter() - ts
        meta["load_average_end"] = load_average()
        meta["seconds"] = time.perf_counter() - t0
        meta["dagster_imported"] = "dagster" in sys.modules
        return {**{k: _clean(v) for k, v in self.figures.items()}, "meta": meta,
                "settings": self.settings.as_dict(), "size": dataclasses.asdict(self.size),
                "details": _clean(self.details),
                "table": [dataclasses.asdict(r) for r in self.rows]}


def _cpu_bf16_supported() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _linearity(table: list[dict[str, Any]]) -> dict[str, float | None]:
    """Cost per symbol-year at the largest size over the smallest, per sweep (1.0 = linear)."""
    out: dict[str, float | None] = {}
    for sweep in ("symbols", "years"):
        rows = [r for r in table if r["sweep"] == sweep]
        for key in ("data", "epoch"):
            k = f"{key}_ms_per_symbol_year"
            ok = rows and rows[0][k] > 0
            out[f"{sweep}_{key}"] = rows[-1][k] / rows[0][k] if ok else None
    return out


def _clean(o: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, Path):
        return str(o)
    return o


def format_table(result: dict[str, Any]) -> str:
    """The Markdown table ``bench`` prints (and BENCHMARKS.md quotes)."""
    meta = result["meta"]
    lines = [f"lstm-assets bench ({meta['size']}): {meta['cpu']}, {meta['cores']} cores, "
             f"torch {meta['torch']} ({meta['torch_threads']} threads)"
             + (f", GPU {meta['cuda']}" if meta.get("cuda") else "")
             + f"; {meta['date']}; load average {meta['load_average_start']} -> "
             f"{meta['load_average_end']}; {meta['seconds']:.0f}s", "",
             "| section | figure | measured | target | met |", "|---|---|---|---|---|"]
    for r in result["table"]:
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['section']} | {r['figure']} | {r['value']} | {r['target']} | {met} |")
    return "\n".join(lines) + "\n"


def run_bench(size: BenchSize, *, json_path: Path | None = None, workdir: Path | None = None,
              keep: bool = False, sections: Sequence[str] = SECTIONS, workers: int = 1,
              say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark, print nothing itself; returns the result (and writes ``json_path``)."""
    say = say or (lambda msg: print(f"[bench {time.strftime('%H:%M:%S')}] {msg}",
                                    file=sys.stderr, flush=True))
    if size.settings.num_threads > 0:
        torch.set_num_threads(size.settings.num_threads)
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="lstm_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = Bench(size, work, say, workers).run(sections)
    finally:
        if not keep and workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result
