"""The data stages, per symbol: raw file -> checked frame (``run_raw``) -> clean frame with
features and labels (``run_clean``) -> scaled sequence matrix (``run_sequences``). Each writes
its artifact atomically and returns the metadata the asset shows."""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from lstm_assets.core.clean import (
    DATA_ADJUSTMENTS_KEY,
    RAW_FILE_KEY,
    clean_frame,
    data_adjustments,
)
from lstm_assets.core.ingest import RawInfo, find_raw_file, read_options, read_raw
from lstm_assets.core.sequences import build_sequences_from_parquet
from lstm_assets.core.settings import Settings
from lstm_assets.core.stages.layout import Layout, file_hash, upstream
from lstm_assets.core.storage import write_parquet

log = logging.getLogger(__name__)


# The parse of the last raw files read by run_raw, for run_clean in the same process (the data
# step runs raw -> clean -> sequences per symbol): parsing a raw CSV is the costliest part of
# the data stages, so it is done once. Keyed by the file's identity (device, inode,
# size, modification time in ns), taken before the parse and checked again after it and by
# run_clean, and by the reading settings (``read_options``: intraday, excel_dates); a file
# replaced or rewritten in between, or a parse made under other settings, is parsed again.
# run_clean takes the entry out, so at most a few parsed frames are held.
_RAW_PARSES: dict[str, tuple[tuple[int, ...], tuple[str, str], pd.DataFrame, RawInfo]] = {}
_RAW_PARSES_MAX = 2
_RAW_PARSES_LOCK = threading.Lock()


def _file_identity(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read(path: Path, settings: Settings | None) -> tuple[pd.DataFrame, RawInfo]:
    """``read_raw`` under ``settings``; plain ``read_raw(path)`` when its reading settings are
    the defaults (the same parse)."""
    if settings is None or read_options(settings) == read_options(None):
        return read_raw(path)
    return read_raw(path, settings)


def _parse_raw(path: Path, keep: bool,
               settings: Settings | None = None) -> tuple[pd.DataFrame, RawInfo]:
    """``read_raw(path, settings)``, or the parse run_raw kept of the unchanged file under the
    same reading settings (``keep``: keep this parse for the next run_clean; otherwise take a
    kept one out)."""
    key, opts = str(path), read_options(settings)
    try:
        ident = _file_identity(path)
    except OSError:  # missing, a broken link...: read_raw says what is wrong
        return _read(path, settings)
    if not keep:
        with _RAW_PARSES_LOCK:
            hit = _RAW_PARSES.pop(key, None)
        if hit is not None and hit[0] == ident and hit[1] == opts:
            return hit[2], copy.deepcopy(hit[3])  # the raw stage's metadata shares its lists
    df, info = _read(path, settings)
    if keep:
        with _RAW_PARSES_LOCK, contextlib.suppress(OSError):
            _RAW_PARSES.pop(key, None)
            if _file_identity(path) == ident:  # not rewritten while it was read
                while len(_RAW_PARSES) >= _RAW_PARSES_MAX:
                    _RAW_PARSES.pop(next(iter(_RAW_PARSES)))
                _RAW_PARSES[key] = (ident, opts, df, info)
    return df, info


def run_raw(layout: Layout, symbol: str, settings: Settings | None = None) -> dict[str, Any]:
    """Read and validate the symbol's raw file; metadata: rows, dates, columns and defects.

    ``settings`` (None: the defaults) are the reading settings (intraday bars, Excel dates). A
    link to outside the raw folder is refused before anything is read or hashed.
    """

    path = find_raw_file(layout.raw_dir, symbol)
    df, info = _parse_raw(path, keep=True, settings=settings)
    dates = df["date"].dropna()
    return {
        "file": str(path), "bytes": path.stat().st_size,
        "content_hash": file_hash(path, layout.raw_dir),
        "rows": info.rows, "columns": len(df.columns),
        "first_date": str(dates.min().date()) if len(dates) else None,
        "last_date": str(dates.max().date()) if len(dates) else None,
        "columns_found": info.columns_found,
        "columns_renamed": info.renamed, "columns_dropped": info.columns_dropped,
        "junk_cells": info.junk_cells, "junk_by_column": info.junk_by_column,
        "inf_cells": info.inf_cells, "bad_lines": info.bad_lines,
        "missing_cells": int(df.drop(columns="date").isna().sum().sum()),
        "bad_dates": int(df["date"].isna().sum()),
        "duplicate_dates": int(dates.duplicated().sum()),
        "unsorted": bool(not dates.is_monotonic_increasing), "notes": info.notes,
    }


def run_clean(layout: Layout, symbol: str, settings: Settings) -> dict[str, Any]:
    """Raw file -> ``clean_frames/<SYMBOL>.parquet`` (written atomically, only on success).

    Metadata shows the columns found in the file, the features derived from OHLCV and every
    column dropped with its reason, beside the cleaning counts of :func:`clean_frame`, and the
    splits adjusted and price jumps found (``corporate_actions``, ``price_jumps``), which are also
    stored in the parquet file's metadata for the evaluation report. Reuses the parse of
    :func:`run_raw` when it ran on the same, unchanged file in this process.
    """

    path = find_raw_file(layout.raw_dir, symbol)
    raw, rinfo = _parse_raw(path, keep=False, settings=settings)
    frame, info = clean_frame(raw, settings, str(path))
    del raw  # the parse is not needed past this point (it is ~2x the clean frame)
    out = layout.warehouse.clean_frame(symbol)
    write_parquet(out, frame, metadata={
        DATA_ADJUSTMENTS_KEY: data_adjustments(info),
        RAW_FILE_KEY: {"name": path.name, "hash": file_hash(path, layout.raw_dir)}})
    derived = info.pop("columns_derived")
    return {
        "file": str(path),
        "columns_found": rinfo.columns_found,
        "columns_renamed": rinfo.renamed,
        "columns_derived": [c for c in derived if c in frame.columns],
        "columns_dropped": {**rinfo.columns_dropped, **info.pop("columns_dropped")},
        "junk_cells": rinfo.junk_cells, "inf_cells": rinfo.inf_cells,
        "bad_lines": rinfo.bad_lines, "notes": rinfo.notes,
        **info,
        "path": str(out),
    }


def run_sequences(layout: Layout, symbol: str, settings: Settings) -> dict[str, Any]:
    """``clean_frames/<SYMBOL>.parquet`` -> ``sequence_tensors/<SYMBOL>.npz`` (atomic write).

    The matrix is filled from the parquet file a block of columns at a time (see
    :func:`build_sequences_from_parquet`): the frame itself is never loaded whole.
    """
    src = upstream(layout.warehouse.clean_frame(symbol), "clean_frames", symbol)
    seq, info = build_sequences_from_parquet(src, settings)
    out = layout.warehouse.sequences(symbol)
    seq.save(out)
    info["file_bytes"] = out.stat().st_size
    info["file_to_matrix_ratio"] = round(out.stat().st_size / seq.X.nbytes, 4)
    info["path"] = str(out)
    return info
