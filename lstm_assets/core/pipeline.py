"""One function per stage, per symbol: read inputs from the warehouse, compute, write atomically.

The Dagster assets call these and attach the returned metadata; the CLI and the benchmark call
them directly (no Dagster needed, e.g. on a GPU box).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstm_assets.core import report as report_mod
from lstm_assets.core.clean import clean_frame
from lstm_assets.core.evaluate import evaluate, load_truth
from lstm_assets.core.ingest import list_raw_files, read_raw
from lstm_assets.core.model import LoadedModel, library_versions, predict_proba, save_model
from lstm_assets.core.sequences import SequenceSet, build_sequences
from lstm_assets.core.settings import CLASSES, MODEL_KEYS, Settings
from lstm_assets.core.storage import InputError, Warehouse, normalize_symbol, write_parquet
from lstm_assets.core.train import LSTMClassifier, fit

log = logging.getLogger(__name__)


@dataclass
class Layout:
    """Where the raw files, the artifacts and (for demo data) the ground truth are."""

    raw_dir: Path
    warehouse: Warehouse
    truth_dir: Path | None = None

    @classmethod
    def from_dirs(cls, raw_dir: str | Path, warehouse_dir: str | Path,
                  truth_dir: str | Path | None = None) -> Layout:
        return cls(Path(raw_dir), Warehouse(warehouse_dir), Path(truth_dir) if truth_dir else None)

    def symbols(self) -> list[str]:
        return sorted(list_raw_files(self.raw_dir))

    def raw_file(self, symbol: str) -> Path:
        sym = normalize_symbol(symbol)
        files = list_raw_files(self.raw_dir)
        if sym not in files:
            raise InputError(self.raw_dir / f"{sym}.csv", f"no raw file for symbol {sym}",
                             f"put {sym}.csv (or .csv.gz / .parquet) in {self.raw_dir}")
        return files[sym]


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def run_raw(layout: Layout, symbol: str) -> dict[str, Any]:
    path = layout.raw_file(symbol)
    df, info = read_raw(path)
    dates = df["date"].dropna()
    return {
        "file": str(path), "bytes": path.stat().st_size, "content_hash": file_hash(path),
        "rows": info.rows, "columns": len(df.columns),
        "first_date": str(dates.min().date()) if len(dates) else None,
        "last_date": str(dates.max().date()) if len(dates) else None,
        "columns_renamed": info.renamed, "columns_dropped": info.columns_dropped,
        "junk_cells": info.junk_cells,
        "missing_cells": int(df.drop(columns="date").isna().sum().sum()),
        "duplicate_dates": int(dates.duplicated().sum()),
        "unsorted": bool(not dates.is_monotonic_increasing), "notes": info.notes,
    }


def run_clean(layout: Layout, symbol: str, settings: Settings) -> dict[str, Any]:
    path = layout.raw_file(symbol)
    raw, rinfo = read_raw(path)
    frame, info = clean_frame(raw, settings, str(path))
    write_parquet(layout.warehouse.clean_frame(symbol), frame)
    info["columns_renamed"] = rinfo.renamed
    info["columns_dropped"] = {**rinfo.columns_dropped, **info["columns_dropped"]}
    info["junk_cells"] = rinfo.junk_cells
    info["path"] = str(layout.warehouse.clean_frame(symbol))
    return info


def _read_clean(layout: Layout, symbol: str) -> pd.DataFrame:
    p = layout.warehouse.clean_frame(symbol)
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing: materialize clean_frames[{symbol}] first")
    return pd.read_parquet(p)


def _read_sequences(layout: Layout, symbol: str) -> SequenceSet:
    p = layout.warehouse.sequences(symbol)
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing: materialize sequence_tensors[{symbol}] first")
    return SequenceSet.load(p)


def run_sequences(layout: Layout, symbol: str, settings: Settings) -> dict[str, Any]:
    frame = _read_clean(layout, symbol)
    seq, info = build_sequences(frame, settings, str(layout.warehouse.clean_frame(symbol)))
    out = layout.warehouse.sequences(symbol)
    seq.save(out)
    info["file_bytes"] = out.stat().st_size
    info["file_to_matrix_ratio"] = round(out.stat().st_size / seq.X.nbytes, 4)
    info["path"] = str(out)
    return info


def model_config(seq: SequenceSet, frame_info: dict[str, Any], settings: Settings,
                 summary: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    return {
        "format": "lstm_assets.model/1",
        "classes": list(CLASSES),
        "features": seq.features,
        "scaler": {"mean": seq.mean.tolist(), "scale": seq.scale.tolist(), "clip": 10.0},
        "label_rule": frame_info,
        "lookback": seq.lookback,
        "horizon": settings.horizon,
        "architecture": {"type": "lstm", "hidden_size": settings.hidden_size,
                         "num_layers": settings.num_layers, "dropout": settings.dropout},
        "settings": settings.as_dict(),
        "training": summary,
        "fingerprint": fingerprint,
        "bounds": seq.bounds.as_dict(),
        "versions": library_versions(),
    }


def input_fingerprint(layout: Layout, symbol: str, settings: Settings) -> str:
    """Hash of the training input and the settings that shape training."""
    p = layout.warehouse.sequences(symbol)
    return f"{file_hash(p)}-{settings.fingerprint(*MODEL_KEYS)}"


def run_train(layout: Layout, symbol: str, settings: Settings,
              on_epoch: Callable[[dict[str, float]], None] | None = None,
              init_state: dict[str, Any] | None = None,
              max_epochs: int | None = None) -> dict[str, Any]:
    seq = _read_sequences(layout, symbol)
    frame = _read_clean(layout, symbol)
    fp = input_fingerprint(layout, symbol, settings)
    ck = layout.warehouse.checkpoint(symbol)
    res = fit(seq, settings, checkpoint=ck, fingerprint=fp, on_epoch=on_epoch,
              init_state=init_state, max_epochs=max_epochs)
    label_rule = {"flat_rule": settings.flat_rule, "vol_halflife": settings.vol_halflife,
                  "band_k": _band_k(frame), "horizon": settings.horizon}
    summary = res.summary()
    summary["history"] = res.history
    cfg = model_config(seq, label_rule, settings, summary, fp)
    out = layout.warehouse.model(symbol)
    save_model(out, res.state, cfg)
    ck.unlink(missing_ok=True)  # the model is complete: the checkpoint is no longer needed
    meta = res.summary()
    meta["path"] = str(out)
    meta["history"] = res.history
    return meta


def _band_k(frame: pd.DataFrame) -> float:
    ok = frame["vol_est"] > 0
    k = (frame.loc[ok, "band"] / frame.loc[ok, "vol_est"]).median()
    return float(k) if np.isfinite(k) else float("nan")


def run_evaluate(layout: Layout, symbol: str, settings: Settings) -> dict[str, Any]:
    seq = _read_sequences(layout, symbol)
    frame = _read_clean(layout, symbol)
    model = LoadedModel.load(layout.warehouse.model(symbol))
    te = seq.end_rows("test")
    proba = model.predict_proba(seq.X, te)
    rep = evaluate(seq, frame, proba, settings, load_truth(layout.truth_dir, symbol))
    rep["symbol"] = symbol
    rep["training"] = {k: model.config["training"].get(k) for k in
                       ("epochs_run", "best_epoch", "best_val_loss", "best_val_accuracy",
                        "seconds", "device", "init")}
    history = model.config["training"].get("history", [])
    wh = layout.warehouse
    preds = pd.DataFrame({"date": seq.dates[te], "label": seq.y[te].astype(int),
                          **{f"p_{c.lower()}": proba[:, i] for i, c in enumerate(CLASSES)},
                          "pred": proba.argmax(1)})
    write_parquet(wh.report(symbol, ".predictions.parquet"), preds)
    report_mod.write_symbol_report(wh, symbol, rep, history)
    return rep


def run_leaderboard(layout: Layout) -> dict[str, Any]:
    return report_mod.write_leaderboard(layout.warehouse)


def run_symbol(layout: Layout, symbol: str, settings: Settings) -> dict[str, Any]:
    """All per-symbol stages in order (no Dagster). Returns each stage's metadata."""
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    out["raw"] = run_raw(layout, symbol)
    out["clean"] = run_clean(layout, symbol, settings)
    out["sequences"] = run_sequences(layout, symbol, settings)
    out["model"] = run_train(layout, symbol, settings)
    out["report"] = run_evaluate(layout, symbol, settings)
    out["seconds"] = time.perf_counter() - t0
    return out


def reload_and_predict(layout: Layout, symbol: str) -> np.ndarray:
    """Test-split probabilities from the saved model alone (used to check reproducibility)."""
    seq = _read_sequences(layout, symbol)
    model = LoadedModel.load(layout.warehouse.model(symbol))
    return model.predict_proba(seq.X, seq.end_rows("test"))


__all__ = ["Layout", "LSTMClassifier", "predict_proba", "run_symbol"]
