"""Expanding-window walk-forward evaluation: an alternative to the single 60/20/20 split.

The sample end-days after an initial ``train_frac`` share are cut into ``folds`` consecutive test
blocks. For fold j the model trains on everything before block j (its last ``val_frac`` share,
after a gap, is the early-stopping validation set) and is tested on block j. Per fold, the
scaler **and the FLAT band** are refit on that fold's training rows only, so no fold sees its own
test period. Results are reported per fold and pooled over all test blocks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from lstm_assets.core.clean import feature_columns
from lstm_assets.core.evaluate import classification_metrics
from lstm_assets.core.model import LSTMClassifier, predict_proba
from lstm_assets.core.sequences import CLIP, SequenceSet
from lstm_assets.core.settings import Settings
from lstm_assets.core.splits import MIN_SPLIT_SAMPLES, Bounds
from lstm_assets.core.train import fit


def fold_bounds(n_rows: int, settings: Settings, folds: int) -> list[Bounds]:
    lb, h, gap = settings.lookback, settings.horizon, settings.effective_gap()
    first, stop = lb - 1, n_rows - h
    start = first + int((stop - first) * settings.train_frac)
    edges = np.linspace(start, stop, folds + 1).astype(int)
    out = []
    for j in range(folds):
        test_start, test_end = int(edges[j]) + gap, int(edges[j + 1])
        fit_end = int(edges[j])  # train + val live before the test block (minus the gap)
        n_val = int((fit_end - first) * settings.val_frac / (settings.train_frac
                                                            + settings.val_frac))
        train_end = fit_end - n_val
        b = Bounds(first, train_end, train_end + gap, fit_end, test_start, test_end)
        if min(b.sizes().values()) < MIN_SPLIT_SAMPLES:
            raise ValueError(f"fold {j + 1}: too few samples for {folds} folds ({b.sizes()})")
        out.append(b)
    return out


def _relabel(frame: pd.DataFrame, settings: Settings, b: Bounds) -> np.ndarray:
    """Labels with the FLAT band refit on this fold's train rows (vol_quantile rule)."""
    y = frame["label"].to_numpy(dtype=np.int8).copy()
    if settings.flat_rule != "vol_quantile":
        return y
    fwd, vol = frame["fwd_return"].to_numpy(), frame["vol_est"].to_numpy()
    z = np.abs(fwd / vol)
    zt = z[b.train_start:b.train_end]
    k = float(np.quantile(zt[np.isfinite(zt)], settings.flat_share))
    band = k * vol
    y = np.where(fwd > band, 2, np.where(fwd < -band, 0, 1)).astype(np.int8)
    y[~np.isfinite(fwd) | ~np.isfinite(band)] = -1
    return y


def walk_forward(frame: pd.DataFrame, settings: Settings, folds: int) -> dict[str, Any]:
    feats = feature_columns(frame)
    raw = frame[feats].to_numpy(dtype=np.float32)
    dates = frame["date"].to_numpy().astype("datetime64[D]")
    per_fold, ys, ps, majs = [], [], [], []
    for j, b in enumerate(fold_bounds(len(frame), settings, folds)):
        scaler = StandardScaler().fit(raw[: b.train_end])
        X = np.clip(scaler.transform(raw), -CLIP, CLIP).astype(np.float32)
        seq = SequenceSet(X=X, y=_relabel(frame, settings, b), dates=dates, bounds=b,
                          features=feats, mean=scaler.mean_, scale=scaler.scale_,
                          lookback=settings.lookback)
        res = fit(seq, settings)
        net = LSTMClassifier(X.shape[1], settings.hidden_size, settings.num_layers,
                             settings.dropout)
        net.load_state_dict(res.state)
        te = seq.end_rows("test")
        proba = predict_proba(net, X, te, settings.lookback)
        y = seq.y[te].astype(int)
        m = classification_metrics(y, proba)
        prior = np.bincount(seq.y[seq.end_rows("train")], minlength=3)
        m["majority_accuracy"] = float(np.mean(y == prior.argmax()))
        majs.append(np.full(len(y), prior.argmax()))
        m["test_dates"] = [str(dates[te[0]]), str(dates[te[-1]])]
        m["epochs_run"] = res.epochs_run
        per_fold.append({"fold": j + 1, **m})
        ys.append(y)
        ps.append(proba)
    y_all, p_all = np.concatenate(ys), np.concatenate(ps)
    pooled = classification_metrics(y_all, p_all)
    pooled["majority_accuracy"] = float(np.mean(y_all == np.concatenate(majs)))
    return {"folds": per_fold, "pooled": pooled}
