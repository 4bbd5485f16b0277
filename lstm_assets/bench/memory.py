"""The ``memory`` section and its probe: the peak RSS growth of building one symbol's
sequences and of training it, each measured in a fresh subprocess, against the bytes of the
symbol's scaled 2-D matrix."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lstm_assets.bench.context import Bench
from lstm_assets.bench.demo import demo_layout, make_demo
from lstm_assets.bench.reference import reference_fit
from lstm_assets.core import stages
from lstm_assets.core.model import LSTMClassifier, n_params
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.settings import CLASSES, Settings
from lstm_assets.core.splits import Bounds
from lstm_assets.core.train import fit

MB = 1e6

# ------------------------------------------------------------------------ process counters


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


# ------------------------------------------------------------------------------- the probe


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


def _warm_up_parquet() -> None:
    """A 3-row frame of the clean frame's column types, written and read as the stage does: a
    process's first read of a dictionary-encoded int8 column sets up ~2-4 MB inside pyarrow,
    once (a one-cell float64 round trip leaves that in the stage)."""
    from lstm_assets.core.sequences import read_pool
    from lstm_assets.core.storage import parquet_reader, write_parquet

    with tempfile.TemporaryDirectory() as tmp:
        toy_path = Path(tmp) / "toy.parquet"
        write_parquet(toy_path, pd.DataFrame({"date": pd.date_range("2020-01-01", periods=3),
                                              "x": np.ones(3, np.float32),
                                              "label": np.arange(3, dtype=np.int8)}))
        pd.read_parquet(toy_path)
        with parquet_reader(toy_path, memory_pool=read_pool()) as reader:
            for i in range(reader.metadata.num_columns):
                reader.read_column(i).to_numpy()


def _probe_sequences(layout: stages.Layout, symbol: str,
                     settings: Settings) -> dict[str, Any]:
    """The sequences stage from a fresh peak: its peak growth and its file-backed growth."""
    gc.collect()
    base, file0 = _rss(), _rss_file()
    resettable = _reset_peak()
    meta = stages.run_sequences(layout, symbol, settings)
    out = {"baseline_rss": base, "sequences_peak_growth": int(_peak() - base),
           "sequences_file_growth": int(_rss_file() - file0), "peak_resettable": resettable,
           "matrix_bytes": int(meta["matrix_bytes"]), "rows": int(meta["rows"]),
           "features": int(meta["features"])}
    del meta
    return out


def _probe_training(layout: stages.Layout, symbol: str, settings: Settings, epochs: int,
                    loop: str) -> dict[str, Any]:
    """Loading the ``.npz`` and training ``epochs`` epochs with ``loop`` from a fresh peak."""
    gc.collect()
    base, file0 = _rss(), _rss_file()
    _reset_peak()
    seq = SequenceSet.load(layout.warehouse.sequences(symbol))
    extra: dict[str, Any] = {}
    if loop == "reference":
        extra["window_bytes"] = reference_fit(seq, settings, epochs).window_bytes
    else:
        fit(seq, settings, max_epochs=epochs)
    return {"train_baseline_rss": base, "train_peak_growth": int(_peak() - base),
            "train_file_growth": int(_rss_file() - file0), **extra}


def memory_probe(clean_path: str, settings_json: str, epochs: int, loop: str,
                 eval_slice: int = 0) -> dict[str, Any]:
    """Run in a fresh process: the two stages of one symbol, as the pipeline runs them.

    1. sequences: ``stages.run_sequences`` on the clean frame's parquet file (read, build the
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
    process's CPU validation slice (``trainees.EVAL_SLICE_CPU``), for
    ``scripts/memory_vs_batch.py``.
    """
    from lstm_assets.core.storage import Warehouse

    settings = Settings(**json.loads(settings_json))
    if settings.num_threads > 0:
        torch.set_num_threads(settings.num_threads)
    if eval_slice > 0:
        from lstm_assets.core import trainees

        trainees.EVAL_SLICE_CPU = eval_slice
    _warm_up_loop(settings, loop)
    _warm_up_parquet()
    clean = Path(clean_path)  # <warehouse>/clean_frames/<SYMBOL>.parquet
    layout = stages.Layout(clean.parents[1], Warehouse(clean.parents[1]))
    seq = _probe_sequences(layout, clean.stem, settings)
    trained = _probe_training(layout, clean.stem, settings, epochs, loop)
    net = LSTMClassifier(seq.pop("features"), settings.hidden_size, settings.num_layers,
                         settings.dropout)
    # weights + grads + Adam's two moments + the best-weights copy
    state = 5 * 4 * n_params(net)
    return {"loop": loop, "rows": seq.pop("rows"), "matrix_bytes": seq.pop("matrix_bytes"),
            "model_optimizer_bytes": state, **seq, **trained}


def run_probe(clean_path: Path, settings: Settings, epochs: int, loop: str,
              eval_slice: int = 0) -> dict[str, Any]:
    """:func:`memory_probe` in a fresh Python process."""
    code = ("import json, sys; from lstm_assets.bench.memory import memory_probe; "
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


# ----------------------------------------------------------------------------- the section


def _probe_each_history(bench: Bench) -> tuple[list[dict[str, Any]], list[Path]]:
    """The project loop's probe on one defect-free symbol per history length in
    ``memory_years``; the probes and the clean frames they read."""
    sz, st = bench.size, bench.settings
    probes, cleans = [], []
    for years in sz.memory_years:
        root = bench.work / f"memory_{years}y"
        raw = make_demo(root, 1, years, seed=11, defect_share=0.0)
        lay = demo_layout(raw, root / "wh")
        sym = lay.symbols()[0]
        stages.run_clean(lay, sym, st)
        cleans.append(lay.warehouse.clean_frame(sym))
        probes.append(run_probe(cleans[-1], st, sz.memory_epochs, "project"))
        p = probes[-1]
        bench.say(f"memory: {years} y: matrix {p['matrix_bytes'] / MB:.1f} MB, "
                  f"peak growth {p['sequences_peak_growth'] / MB:.1f} MB "
                  f"(sequences) / {p['train_peak_growth'] / MB:.1f} MB (training)")
    return probes, cleans


def _one_symbol_figures(bench: Bench, one: dict[str, Any], ref: dict[str, Any]) -> None:
    f = bench.figures
    m, state = one["matrix_bytes"], one["model_optimizer_bytes"]
    peak = max(one["sequences_peak_growth"], one["train_peak_growth"])
    f["memory_years"] = bench.size.memory_years[0]
    f["matrix_bytes"] = m
    f["model_optimizer_bytes"] = state
    f["sequences_peak_rss_growth_bytes"] = one["sequences_peak_growth"]
    f["train_peak_rss_growth_bytes"] = one["train_peak_growth"]
    f["sequences_file_rss_growth_bytes"] = one["sequences_file_growth"]
    f["train_file_rss_growth_bytes"] = one["train_file_growth"]
    f["reference_train_peak_rss_growth_bytes"] = ref["train_peak_growth"]
    f["peak_rss_ratio"] = (peak - state) / m
    f["peak_rss_marginal_ratio"] = None


def _one_symbol_rows(bench: Bench, one: dict[str, Any], ref: dict[str, Any]) -> None:
    f = bench.figures
    m, state = one["matrix_bytes"], one["model_optimizer_bytes"]
    bench.add("memory", f"one symbol, {bench.size.memory_years[0]} y: scaled 2-D matrix",
              f"{m / MB:.2f} MB; model + optimizer state {state / MB:.1f} MB")
    ref_txt = ("" if ref["train_peak_growth"] is None else
               f"; reference loop training: {ref['train_peak_growth'] / MB:.1f} MB "
               f"(its windows alone: {ref['window_bytes'] / MB:.1f} MB)")
    bench.add("memory", "peak RSS growth: sequences / training",
              f"{one['sequences_peak_growth'] / MB:.1f} / {one['train_peak_growth'] / MB:.1f}"
              f" MB (of which library code pages: {one['sequences_file_growth'] / MB:.1f} / "
              f"{one['train_file_growth'] / MB:.1f} MB){ref_txt}")
    r = f["peak_rss_ratio"]
    bench.add("memory", "(peak growth - model/optimizer) / matrix", f"{r:.1f}x", "<= 2x",
              r <= 2)
    f["sequences_peak_rss_ratio"] = one["sequences_peak_growth"] / m
    bench.add("memory", "sequences stage alone: peak growth / matrix",
              f"{f['sequences_peak_rss_ratio']:.2f}x", "<= 2x",
              f["sequences_peak_rss_ratio"] <= 2)


def _mb1(x: float) -> str:
    """Megabytes to one decimal; an extrapolated 0 can come out a hair below it, and
    -0.0 + 0.0 prints as 0.0."""
    return f"{round(x / MB, 1) + 0.0:.1f}"


def _marginal(bench: Bench, one: dict[str, Any], big: dict[str, Any]) -> None:
    """growth = fixed + per_byte x matrix, from the shortest and the longest history: per_byte
    is what the data costs; fixed does not grow with it (for training: one batch's LSTM
    activations, gradients and oneDNN workspace, ~30 MB at 64 x 30 x 2 layers, whatever the
    history; the reference loop pays it too)."""
    sz, f = bench.size, bench.figures
    m, state = one["matrix_bytes"], one["model_optimizer_bytes"]
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
    bench.add("memory", f"growth per extra matrix byte ({sz.memory_years[0]} -> "
              f"{sz.memory_years[-1]} y): sequences / training",
              f"{d_seq:.2f}x / {d_train:.2f}x", "<= 2x", f["peak_rss_marginal_ratio"] <= 2)
    bench.add("memory", "growth = fixed + per byte x matrix: sequences / training",
              f"{_mb1(fixed_seq)} MB + {d_seq:.2f}x / {_mb1(fixed_train)} MB + "
              f"{d_train:.2f}x (training's fixed part minus model/optimizer state: "
              f"{(fixed_train - state) / MB:.1f} MB)")


def memory(bench: Bench) -> None:
    """The ``memory`` section (see the module's docstring); the reference loop's training
    growth beside it where ``memory_reference``."""
    sz = bench.size
    probes, cleans = _probe_each_history(bench)
    one = probes[0]
    ref = (run_probe(cleans[0], bench.settings, sz.memory_epochs, "reference")
           if sz.memory_reference else {"train_peak_growth": None})
    bench.details["memory"] = {"project": probes, "reference": ref}
    _one_symbol_figures(bench, one, ref)
    _one_symbol_rows(bench, one, ref)
    if len(probes) > 1:
        _marginal(bench, one, probes[-1])
