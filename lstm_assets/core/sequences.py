"""Clean frame -> scaled 2-D float32 matrix + labels + split bounds (never materialized windows).

The scaler (scikit-learn ``StandardScaler``) is fit on the rows the training samples can see
(rows ``0 .. train_end-1``) and applied to all rows. A feature constant over the train rows gets
scale 1 (scikit-learn's rule), so it cannot divide by zero; it is listed in ``constant_features``.
Scaled values are clipped to +-``CLIP`` so one wild test-period print cannot blow up the LSTM.

Windows are made at batch time from end-row indices: :func:`window_view` is a zero-copy view.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from lstm_assets.core.clean import feature_columns
from lstm_assets.core.settings import Settings
from lstm_assets.core.splits import Bounds, split_bounds
from lstm_assets.core.storage import InputError, read_npz, write_npz

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
"""Columns fitted and scaled at a time. scikit-learn upcasts the rows it fits to float64 (and
makes a NaN mask); a block of columns keeps those temporaries small. Each column's statistics
do not depend on the other columns, so the result is the same as one fit over all columns."""


def _scale_in_place(X: np.ndarray, train_end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standard-scale ``X`` (float32) in place with scalers fit on rows ``< train_end``; clip to
    +-``CLIP``. Returns the scaler's mean, scale and variance per column (float64)."""
    mean, scale, var = [], [], []
    for j in range(0, X.shape[1], SCALER_BLOCK):
        cols = slice(j, j + SCALER_BLOCK)
        scaler = StandardScaler().fit(X[:train_end, cols])
        X[:, cols] = scaler.transform(X[:, cols])
        mean.append(scaler.mean_)
        scale.append(scaler.scale_)
        var.append(scaler.var_)
    np.clip(X, -CLIP, CLIP, out=X)
    return (np.concatenate(mean).astype(np.float64), np.concatenate(scale).astype(np.float64),
            np.concatenate(var))


def build_sequences(frame: pd.DataFrame, settings: Settings,
                    path: str = "") -> tuple[SequenceSet, dict[str, Any]]:
    bounds = split_bounds(len(frame), settings)
    if bounds is None:
        raise InputError(path, f"history too short for lookback {settings.lookback} + horizon "
                         f"{settings.horizon} + three splits ({len(frame)} rows)",
                         "supply a longer history (or lower lookback)")
    feats = feature_columns(frame)
    X = frame[feats].to_numpy(dtype=np.float32, copy=True)  # our own copy: scaled in place
    mean, scale, var = _scale_in_place(X, bounds.train_end)
    y = frame["label"].to_numpy(dtype=np.int8)
    seq = SequenceSet(X=X, y=y, dates=frame["date"].to_numpy().astype("datetime64[D]"),
                      bounds=bounds, features=feats, mean=mean, scale=scale,
                      lookback=settings.lookback)
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


def window_view(X: np.ndarray, lookback: int) -> np.ndarray:
    """All windows as a zero-copy view: ``view[t - lookback + 1]`` is rows ``t-lookback+1..t``."""
    return np.lib.stride_tricks.sliding_window_view(X, lookback, axis=0).transpose(0, 2, 1)
