"""Clean frame -> scaled 2-D float32 matrix + labels + split bounds (never materialized windows).

The scaler (scikit-learn ``StandardScaler``) is fit on the rows the training samples can see
(rows ``0 .. train_end-1``) and applied to all rows. A feature constant over the train rows gets
scale 1 (scikit-learn's rule), so it cannot divide by zero; it is listed in ``constant_features``.
Scaled values are clipped to +-``CLIP`` so one wild test-period print cannot blow up the LSTM.

Windows are made at batch time from end-row indices: :func:`window_view` is a zero-copy view.

The matrix is row-major (C order), the layout training reads windows from. The pipeline builds
it straight from the clean frame's parquet file (:func:`build_sequences_from_parquet`), a few
columns at a time, so the stage's memory is about the matrix, not the frame plus its decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.preprocessing import StandardScaler

from lstm_assets.core.clean import EXCLUDED_LABEL, feature_columns
from lstm_assets.core.settings import Settings
from lstm_assets.core.splits import Bounds, split_bounds
from lstm_assets.core.storage import (
    AnyPath,
    InputError,
    parquet_reader,
    read_npz,
    read_parquet,
    write_npz,
)

CLIP = 10.0


@dataclass
class SequenceSet:
    X: np.ndarray  # (rows, features) float32, scaled
    y: np.ndarray  # (rows,) int8; -1 where unlabelled
    dates: np.ndarray  # (rows,) datetime64[D]
    bounds: Bounds
    features: list[str]
    mean: np.ndarray
    scale: np.ndarray
    lookback: int

    def end_rows(self, split: str) -> np.ndarray:
        """Sample end rows of a split that have a label."""
        rng = self.bounds.range(split)
        r = np.arange(rng.start, rng.stop, dtype=np.int64)
        return r[self.y[r] >= 0]

    def save(self, path: Path) -> None:
        days = self.dates.astype("datetime64[D]").astype(np.int64)
        write_npz(path, X=self.X, y=self.y, dates=days,
                  bounds=np.asarray(self.bounds.as_list(), dtype=np.int64),
                  features=np.asarray(self.features, dtype=str), mean=self.mean,
                  scale=self.scale, lookback=np.asarray(self.lookback))

    @classmethod
    def load(cls, path: Path) -> SequenceSet:
        z = read_npz(path)
        return cls(X=z["X"], y=z["y"], dates=z["dates"].astype("datetime64[D]"),
                   bounds=Bounds(*[int(v) for v in z["bounds"]]),
                   features=[str(f) for f in z["features"]], mean=z["mean"], scale=z["scale"],
                   lookback=int(z["lookback"]))


SCALER_BLOCK = 16
"""Columns read, fitted and scaled at a time. scikit-learn upcasts the rows it fits to float64
(and makes a NaN mask); a block of columns keeps those temporaries small. Each column's
statistics do not depend on the other columns, so the result is the same as one fit over all
columns."""

ReadBlock = Callable[[list[str]], np.ndarray]
"""Feature columns -> their values as a (rows, columns) float32 array."""


def _scaled_matrix(rows: int, feats: list[str], read_block: ReadBlock, train_end: int,
                   y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The scaled, clipped matrix, filled ``SCALER_BLOCK`` columns at a time, and the scaler's
    mean, scale and variance per column (float64; fit on rows ``< train_end``, without the rows
    a price jump spoils: label ``EXCLUDED_LABEL``, see :func:`~lstm_assets.core.clean.label_frame`).

    The matrix is C-ordered (row-major): what training slices windows from, so training uses
    it as it is loaded, without a contiguous copy. Each block is fit and scaled column-major
    (``np.asfortranarray``): the fit's float64 sums then run in the order of one column-major
    fit over the whole matrix, so means and scales are bitwise that fit's.
    Peak beyond the matrix: one block and the fit's float64 copy of its train rows.
    """
    X = np.empty((rows, len(feats)), dtype=np.float32)
    mean, scale, var = [], [], []
    spoiled = y[:train_end] == EXCLUDED_LABEL
    for j in range(0, len(feats), SCALER_BLOCK):
        block = np.asfortranarray(read_block(feats[j:j + SCALER_BLOCK]), dtype=np.float32)
        fit_rows = block[:train_end][~spoiled] if spoiled.any() else block[:train_end]
        scaler = StandardScaler(copy=False).fit(fit_rows)
        block = scaler.transform(block)  # in place (copy=False)
        np.clip(block, -CLIP, CLIP, out=block)
        X[:, j:j + block.shape[1]] = block
        mean.append(scaler.mean_)
        scale.append(scaler.scale_)
        var.append(scaler.var_)
        del block
    return (X, np.concatenate(mean).astype(np.float64), np.concatenate(scale).astype(np.float64),
            np.concatenate(var))


def _assemble(X: np.ndarray, y: np.ndarray, dates: np.ndarray, bounds: Bounds,
              feats: list[str], mean: np.ndarray, scale: np.ndarray, var: np.ndarray,
              settings: Settings) -> tuple[SequenceSet, dict[str, Any]]:
    seq = SequenceSet(X=X, y=y, dates=dates.astype("datetime64[D]"), bounds=bounds,
                      features=feats, mean=mean, scale=scale, lookback=settings.lookback)
    constant = [f for f, v in zip(feats, var, strict=True) if v == 0]
    shares = {s: np.bincount(y[seq.end_rows(s)], minlength=3) / max(len(seq.end_rows(s)), 1)
              for s in ("train", "val", "test")}
    info = {
        "rows": int(X.shape[0]), "features": int(X.shape[1]), "matrix_bytes": int(X.nbytes),
        "samples": bounds.sizes(), "bounds": bounds.as_dict(), "constant_features": constant,
        "class_share": {s: [round(float(v), 4) for v in sh] for s, sh in shares.items()},
        "train_dates": [str(seq.dates[bounds.train_start]), str(seq.dates[bounds.train_end - 1])],
        "test_dates": [str(seq.dates[bounds.test_start]), str(seq.dates[bounds.test_end - 1])],
    }
    return seq, info


def _bounds(rows: int, settings: Settings, path: str) -> Bounds:
    bounds = split_bounds(rows, settings)
    if bounds is None:
        raise InputError(path, f"history too short for lookback {settings.lookback} + horizon "
                         f"{settings.horizon} + three splits ({rows} rows)",
                         "supply a longer history (or lower lookback)")
    return bounds


def build_sequences(frame: pd.DataFrame, settings: Settings,
                    path: str = "") -> tuple[SequenceSet, dict[str, Any]]:
    """Clean frame -> :class:`SequenceSet` (scaler fit on the train rows) and its metadata."""
    bounds = _bounds(len(frame), settings, path)
    feats = feature_columns(frame)
    y = frame["label"].to_numpy(dtype=np.int8)
    X, mean, scale, var = _scaled_matrix(  # copy=True: a block is scaled in place
        len(frame), feats, lambda cols: frame[cols].to_numpy(dtype=np.float32, copy=True),
        bounds.train_end, y)
    return _assemble(X, y, frame["date"].to_numpy(), bounds, feats, mean, scale, var, settings)


def read_pool() -> pa.MemoryPool:
    """The pyarrow memory pool the sequences stage reads the clean frame with: the system
    allocator, for this stage's reads only. pyarrow's default pool (mimalloc) keeps what its
    decoding used at its peak, about 1.6x more peak memory for this stage at the same speed
    (BENCHMARKS.md, the sequences stage's memory row). Setting
    ``ARROW_DEFAULT_MEMORY_POOL=system`` would do the same for the whole process."""
    return pa.system_memory_pool()


def build_sequences_from_parquet(path: AnyPath, settings: Settings) -> tuple[SequenceSet,
                                                                          dict[str, Any]]:
    """:func:`build_sequences` of the clean frame stored at ``path``, without loading the frame.

    The same result, read a block of columns at a time straight into the matrix: a whole-frame
    read held the frame (~1.2x the matrix) and pyarrow's decode buffers (several times more,
    kept by its allocator) at once.
    """
    with parquet_reader(path, memory_pool=read_pool()) as reader:
        schema = reader.schema_arrow
        index = [c for c in (schema.pandas_metadata or {}).get("index_columns", [])
                 if isinstance(c, str)]  # a stored index is not a column of the frame
        names = [n for n in schema.names if n not in index]
        if index or len(set(names)) != len(names):  # not written by write_parquet: plain read
            return build_sequences(read_parquet(path), settings, str(path))
        rows = reader.metadata.num_rows
        bounds = _bounds(rows, settings, str(path))
        feats = feature_columns(names)
        where = {n: i for i, n in enumerate(schema.names)}

        def column(name: str) -> np.ndarray:
            # one column per read, which keeps the decoding buffers small; read_column returns
            # the column itself (ParquetFile.read built a Table around each: ~4x the time)
            return reader.read_column(where[name]).to_numpy()

        def read_block(cols: list[str]) -> np.ndarray:
            out = np.empty((len(cols), rows), dtype=np.float32)  # .T: column-major
            for i, col in enumerate(cols):
                out[i] = column(col)
            return out.T

        y = column("label").astype(np.int8)
        X, mean, scale, var = _scaled_matrix(rows, feats, read_block, bounds.train_end, y)
        dates = column("date")
    return _assemble(X, y, dates, bounds, feats, mean, scale, var, settings)


def window_view(X: np.ndarray, lookback: int) -> np.ndarray:
    """All windows as a zero-copy view: ``view[t - lookback + 1]`` is rows ``t-lookback+1..t``."""
    return np.lib.stride_tricks.sliding_window_view(X, lookback, axis=0).transpose(0, 2, 1)
