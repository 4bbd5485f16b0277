"""The data stages timed: raw -> clean -> sequences per symbol (``stages.run_raw``,
``run_clean``, ``run_sequences``, one symbol after the other as a run does, or over worker
processes), the bare read + scale of the same raw files as the floor to compare them with, and
the ``data`` section that reports both."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from lstm_assets.bench.context import Bench
from lstm_assets.bench.demo import demo_layout
from lstm_assets.core import stages
from lstm_assets.core.ingest import find_raw_file
from lstm_assets.core.settings import Settings

T = TypeVar("T")

BARE_READ_TARGET = 3.2
"""The data stages may take at most this many times the bare read + scale of their input."""


def time_data_stages(layout: stages.Layout, symbols: Sequence[str],
                     settings: Settings) -> list[dict[str, Any]]:
    """raw -> clean -> sequences for each symbol in turn; one row per symbol with each stage's
    seconds, or ``ok=False`` and the error where a stage failed (as in the pipeline, a bad file
    fails its symbol only)."""
    out = []
    for sym in symbols:
        row: dict[str, Any] = {"symbol": sym, "ok": True}
        try:
            t0 = time.perf_counter()
            raw = stages.run_raw(layout, sym, settings)
            t1 = time.perf_counter()
            stages.run_clean(layout, sym, settings)
            t2 = time.perf_counter()
            seq = stages.run_sequences(layout, sym, settings)
            t3 = time.perf_counter()
            row.update(raw_s=t1 - t0, clean_s=t2 - t1, seq_s=t3 - t2, rows=int(raw["rows"]),
                       matrix_bytes=int(seq.get("matrix_bytes", 0)))
        except Exception as e:  # a bad demo file fails its symbol only (as in the pipeline)
            row.update(ok=False, error=f"{type(e).__name__}: {e}")
        out.append(row)
    return out


def stage_totals(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Sums over the symbols that went through: seconds per stage and in all, rows, rows/s."""
    ok = [r for r in rows if r["ok"]]
    tot = {k: float(sum(r[k] for r in ok)) for k in ("raw_s", "clean_s", "seq_s")}
    tot["seconds"] = sum(tot.values())
    tot["rows"] = float(sum(r["rows"] for r in ok))
    tot["rows_per_second"] = tot["rows"] / tot["seconds"] if tot["seconds"] else float("nan")
    tot["symbols_ok"] = float(len(ok))
    return tot


def _stages_worker(args: tuple[str, str, str, dict[str, Any]]) -> dict[str, Any]:
    raw, wh, sym, sdict = args
    return time_data_stages(demo_layout(Path(raw), Path(wh)), [sym], Settings(**sdict))[0]


def time_data_stages_parallel(layout: stages.Layout, symbols: Sequence[str],
                              settings: Settings, workers: int) -> float:
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


# ------------------------------------------------------------------- the bare read + scale


def _read_csv_bare(path: Path) -> pa.Table:
    """The file as pyarrow reads it with no options but one thread (as the raw stage reads)
    and one block, so the column types are inferred from the whole file: a numeric column with
    junk text further down comes back as text instead of failing the read."""
    size = max(path.stat().st_size, 1)
    return pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False,
                                                               block_size=size + 1))


def _numeric_matrix(table: pa.Table) -> np.ndarray:
    """The table's integer and floating-point columns as one float32 matrix (nulls as NaN)."""
    cols = [c for c in table.columns
            if pa.types.is_integer(c.type) or pa.types.is_floating(c.type)]
    X = np.empty((table.num_rows, len(cols)), dtype=np.float32, order="F")
    for j, col in enumerate(cols):
        X[:, j] = col.to_numpy()
    return X


def _scale(X: np.ndarray) -> np.ndarray:
    """``(X - mean) / std`` per column, float32 (NaN, inf and constant columns left as they
    come out: this is a timing floor, not a scaler)."""
    with np.errstate(all="ignore"):
        return ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32, copy=False)


def bare_read_scale_seconds(paths: Sequence[Path]) -> float:
    """Seconds to read each raw CSV with ``pyarrow.csv.read_csv`` and scale its numeric columns
    with numpy (``(X - mean) / std``, float32): the least work that turns the data stages' input
    into a scaled matrix.

    The data stages do the same read and scale plus everything the bare version leaves out:
    dates, defect repairs, derived features and labels, a scaler fit on the training rows only,
    and writing the clean frame and the sequence file; their ratio to this prices that work.
    """
    t0 = time.perf_counter()
    for path in paths:
        _scale(_numeric_matrix(_read_csv_bare(path)))
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------- the section


def _bare_read_around(bench: Bench, paths: list[Path], run: Callable[[], T]) -> tuple[T, float]:
    """``run()`` between two timed bare passes over ``paths``; its result and the mean of the
    two passes (a drift in the machine's load over the run moves both figures alike)."""
    before = bare_read_scale_seconds(paths)
    out = run()
    after = bare_read_scale_seconds(paths)
    bench.details["bare_read_scale_seconds"] = {"before": before, "after": after}
    return out, (before + after) / 2


def data(bench: Bench) -> None:
    """The ``data`` section: the data stages over the main demo set, serial (and over
    ``bench.workers`` processes where > 1), against the bare read + scale of the same files."""
    sz, st = bench.size, bench.settings
    layout, symbols = bench.main_data()
    bench.say(f"data stages: {len(symbols)} symbols x {sz.data_years} years "
              f"(demo data made in {bench.details['main']['generate_seconds']:.1f}s)")
    paths = [find_raw_file(layout.raw_dir, s) for s in symbols]
    rows, bare = _bare_read_around(bench, paths, lambda: time_data_stages(layout, symbols, st))
    tot = stage_totals(rows)
    bench.details["data_rows"] = rows
    f = bench.figures
    f["data_stages_seconds"] = tot["seconds"]
    f["data_stages_symbols"] = len(symbols)
    f["data_stages_years"] = sz.data_years
    f["data_stages_rows_per_second"] = tot["rows_per_second"]
    f["data_stages_failed_symbols"] = len(symbols) - int(tot["symbols_ok"])
    f["data_stage_seconds"] = {"raw": tot["raw_s"], "clean": tot["clean_s"],
                               "sequences": tot["seq_s"]}
    f["bare_read_scale_seconds"] = bare
    f["data_stages_vs_bare_read"] = tot["seconds"] / bare if bare > 0 else None
    f["data_stages_parallel_seconds"] = None
    if bench.workers > 1:
        f["data_stages_parallel_seconds"] = time_data_stages_parallel(
            demo_layout(layout.raw_dir, bench.work / "main_parallel_wh"), symbols, st,
            bench.workers)
        f["data_stages_parallel_workers"] = bench.workers
    _data_rows(bench, tot, len(symbols))


def _data_rows(bench: Bench, tot: dict[str, float], n_symbols: int) -> None:
    sz, f = bench.size, bench.figures
    s = tot["seconds"]
    target = 20.0 * n_symbols * sz.data_years / (164 * 20)
    bench.add("data", f"raw -> clean -> sequences, {n_symbols} symbols x "
              f"{sz.data_years} y (serial)",
              f"{s:.1f}s, {tot['rows_per_second']:,.0f} rows/s (raw {tot['raw_s']:.1f}s, "
              f"clean {tot['clean_s']:.1f}s, sequences {tot['seq_s']:.1f}s)",
              f"<= {target:.1f}s" + ("" if sz.data_symbols == 164 else " (pro rata)"),
              s <= target)
    ratio = f["data_stages_vs_bare_read"]
    if ratio is not None:
        bench.add("data", "the same / bare pyarrow read + numpy scale of the same raw files",
                  f"{ratio:.2f}x ({s:.2f}s / {f['bare_read_scale_seconds']:.2f}s)",
                  f"<= {BARE_READ_TARGET}x", ratio <= BARE_READ_TARGET)
    if f["data_stages_parallel_seconds"]:
        bench.add("data", f"the same over {bench.workers} processes",
                  f"{f['data_stages_parallel_seconds']:.1f}s")
