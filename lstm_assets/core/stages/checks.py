"""Data-quality checks on the stages' outputs; the Dagster layer reports them as asset checks."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstm_assets.core.clean import EXCLUDED_LABEL
from lstm_assets.core.settings import CLASSES, Settings
from lstm_assets.core.stages.layout import Layout, read_clean, read_sequences

log = logging.getLogger(__name__)


def check_raw_freshness(raw_meta: dict[str, Any], settings: Settings,
                        now: datetime | None = None) -> dict[str, Any]:
    """Is the raw file's last date recent (within ``raw_max_age_days``)? Uses run_raw's meta."""
    now = now or datetime.now(UTC)
    last = raw_meta.get("last_date")
    age = (now.date() - datetime.fromisoformat(last).date()).days if last else None
    try:
        mtime = Path(raw_meta["file"]).stat().st_mtime
        file_age = round((now.timestamp() - mtime) / 86400, 2)
    except (KeyError, OSError):
        file_age = None
    passed = age is not None and age <= settings.raw_max_age_days
    return {
        "passed": passed,
        "description": (f"data ends {last} ({age} days ago; limit {settings.raw_max_age_days})"
                        if age is not None else "no valid date in the file"),
        "metadata": {"last_date": last, "data_age_days": age, "file_age_days": file_age,
                     "max_age_days": settings.raw_max_age_days},
    }


def check_clean_frame(layout: Layout, symbol: str, settings: Settings) -> dict[str, Any]:
    """No NaN/inf in features, unique sorted dates, valid labels, enough rows for the splits."""
    from lstm_assets.core.clean import feature_columns
    from lstm_assets.core.splits import min_rows

    frame = read_clean(layout, symbol)
    feats = feature_columns(frame)
    values = frame[feats].to_numpy(dtype=np.float64)
    dates = pd.to_datetime(frame["date"])
    labels = frame["label"].to_numpy()
    problems = {
        "nan_cells": int(np.isnan(values).sum()),
        "inf_cells": int(np.isinf(values).sum()),
        "bad_dates": int(dates.isna().sum()),
        "duplicate_dates": int(dates.duplicated().sum()),
        "unsorted_dates": int((dates.diff().dt.total_seconds() <= 0).sum()),
        "bad_labels": int((~np.isin(labels, [EXCLUDED_LABEL, -1, 0, 1, 2])).sum()),
    }
    need = min_rows(settings)
    failed = [k for k, v in problems.items() if v]
    if len(frame) < need:
        failed.append(f"rows {len(frame)} < {need}")
    return {
        "passed": not failed,
        "description": "ok" if not failed else f"{symbol}: " + ", ".join(failed),
        "metadata": {**problems, "rows": len(frame), "min_rows": need, "features": len(feats),
                     "unlabelled_rows": int((labels < 0).sum())},
    }


def check_sequences(layout: Layout, symbol: str) -> dict[str, Any]:
    """Shapes agree, no NaN/inf, every split has samples; class balance per split recorded."""
    seq = read_sequences(layout, symbol)
    n, f = seq.X.shape if seq.X.ndim == 2 else (len(seq.X), -1)
    problems: list[str] = []
    if seq.X.ndim != 2 or seq.X.dtype != np.float32:
        problems.append(f"X is {seq.X.dtype} with {seq.X.ndim} dims (want 2-D float32)")
    if not (len(seq.y) == len(seq.dates) == n):
        problems.append(f"rows differ: X {n}, y {len(seq.y)}, dates {len(seq.dates)}")
    if not (f == len(seq.features) == len(seq.mean) == len(seq.scale)):
        problems.append(f"features differ: X {f}, names {len(seq.features)}, "
                        f"scaler {len(seq.mean)}/{len(seq.scale)}")
    bad = int((~np.isfinite(seq.X)).sum()) if seq.X.dtype.kind == "f" else 0
    if bad:
        problems.append(f"{bad} NaN/inf values")
    if seq.bounds.train_start < seq.lookback - 1 or seq.bounds.test_end > n:
        problems.append("split bounds outside the matrix")
    balance: dict[str, dict[str, int]] = {}
    for split in ("train", "val", "test"):
        rows = seq.end_rows(split)
        counts = np.bincount(seq.y[rows].astype(np.int64), minlength=len(CLASSES))
        balance[split] = {c: int(counts[i]) for i, c in enumerate(CLASSES)}
        if len(rows) == 0:
            problems.append(f"{split} split is empty")
    if sum(v > 0 for v in balance["train"].values()) < 2:
        problems.append("fewer than two classes in the train split")
    return {
        "passed": not problems,
        "description": "ok" if not problems else f"{symbol}: " + "; ".join(problems),
        "metadata": {"rows": int(n), "features": int(f), "nonfinite": bad,
                     "class_balance": balance},
    }


def _input_weight_shares(layout: Layout, symbol: str, features: list[str]
                         ) -> dict[str, float] | None:
    """Each feature's share of the serving model's first-layer input-weight norm (0: the group
    lasso dropped it); None when there is no readable model on these features."""
    from lstm_assets.core.model import LoadedModel, LSTMClassifier

    try:
        model = LoadedModel.load(layout.warehouse.model(symbol))
    except Exception:  # noqa: BLE001 - no model yet (or unreadable): every feature counts
        return None
    if model.config["features"] != features:
        return None
    norms = model.net.state_dict()[LSTMClassifier.input_weight_key].float().norm(dim=0)
    total = float(norms.sum())
    return {f: float(n) / total if total > 0 else 0.0 for f, n in zip(features, norms.tolist(),
                                                                     strict=True)}


def check_drift(layout: Layout, symbol: str, settings: Settings) -> dict[str, Any]:
    """Each input feature's last ``drift_window`` rows against the train rows (PSI with a KS
    test, ``core/lifecycle/drift.py``), and the label mix. It warns when a feature the serving
    model uses drifted, or the label mix did, listing which, how far and what share of the
    model's input weights they carry; drifted features the model's group lasso dropped (zero
    input weights) are listed apart and do not warn. Without a model every feature counts."""
    from lstm_assets.core.lifecycle.drift import drift_report

    seq = read_sequences(layout, symbol)
    try:
        rep = drift_report(seq, settings.drift_window, settings.drift_threshold)
    except ValueError as e:  # too short a history to tell: nothing to warn about
        return {"passed": True, "description": f"{symbol}: not checked ({e})",
                "metadata": {"checked": False}}
    weights = _input_weight_shares(layout, symbol, seq.features)
    used = [f for f in rep["drifted"] if weights is None or weights[f] > 0]
    unused = [f for f in rep["drifted"] if f not in used]
    psi = {f: round(rep["features"][f]["psi"], 3) for f in used}
    mix = rep["label_mix"]
    parts = []
    if used:
        top = ", ".join(f"{f} {v}" for f, v in list(psi.items())[:10])
        share = "" if weights is None else (
            f", {sum(weights[f] for f in used):.0%} of the model's input weights")
        parts.append(f"{len(used)} of {len(rep['features'])} features drifted (PSI above "
                     f"{rep['threshold']} and above what a train window shows{share}): {top}")
    if mix["drifted"]:
        def shares(d: dict[str, float]) -> str:
            return "/".join(f"{v:.0%}" for v in d.values())

        parts.append(f"label mix drifted (PSI {mix['psi']:.3f}): DOWN/FLAT/UP recent "
                     f"{shares(mix['recent'])} vs train {shares(mix['train'])}")
    if unused:
        parts.append(f"{len(unused)} more drifted but the model does not use them")
    if weights is None and parts:
        parts.append("no serving model yet: every feature counts")
    return {
        "passed": not (used or mix["drifted"]),
        "description": (f"{symbol}: " + "; ".join(parts)) if parts else
        f"{symbol}: no drift in the last {rep['window']} rows (max PSI {rep['max_psi']:.3f})",
        "metadata": {"checked": True, "window": rep["window"], "threshold": rep["threshold"],
                     "recent_from": rep["recent_from"], "recent_to": rep["recent_to"],
                     "drifted_features": psi, "drifted_count": len(used),
                     "drifted_unused_by_model": unused,
                     "drifted_weight_share": "no serving model yet" if weights is None
                     else f"{sum(weights[f] for f in used):.1%}",
                     "max_psi": round(rep["max_psi"], 4), "label_mix_drifted": mix["drifted"],
                     "label_mix_psi": round(mix["psi"], 4),
                     "label_mix_recent": mix["recent"], "label_mix_train": mix["train"],
                     "cold_on_drift": settings.cold_on_drift},
    }


def check_model_freshness(layout: Layout, symbol: str, settings: Settings,
                          now: datetime | None = None) -> dict[str, Any]:
    """Is the serving model recent (trained within ``model_max_age_days``)?"""
    from lstm_assets.core.model import read_model_config

    now = now or datetime.now(UTC)
    cfg = read_model_config(layout.warehouse.model(symbol))
    trained = (cfg.get("retrain") or {}).get("trained_at")
    try:
        at = datetime.fromisoformat(str(trained))
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        age = round((now - at).total_seconds() / 86400, 2)
    except ValueError:
        age = None
    passed = age is not None and age <= settings.model_max_age_days
    return {
        "passed": passed,
        "description": (f"{symbol}: serving model trained {trained} ({age} days ago; limit "
                        f"{settings.model_max_age_days})" if age is not None
                        else f"{symbol}: serving model has no training time"),
        "metadata": {"trained_at": trained, "model_age_days": age,
                     "max_age_days": settings.model_max_age_days,
                     "data_end": (cfg.get("trained_on") or {}).get("data_end")},
    }
