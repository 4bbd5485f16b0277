"""The evaluation stage: score a saved model on its test split, write the report, and the
leaderboard across symbols."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from lstm_assets.core import report as report_mod
from lstm_assets.core.clean import DATA_ADJUSTMENTS_KEY
from lstm_assets.core.evaluate import evaluate, load_truth
from lstm_assets.core.lifecycle.threshold import apply_threshold, choose_threshold
from lstm_assets.core.lifecycle.versions import list_versions
from lstm_assets.core.model import LoadedModel
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.settings import CLASSES, Settings
from lstm_assets.core.stages.layout import Layout, read_clean, read_sequences, upstream
from lstm_assets.core.storage import parquet_metadata, write_parquet
from lstm_assets.core.walkforward import walk_forward

log = logging.getLogger(__name__)


def model_inputs(model: LoadedModel, seq: SequenceSet, frame: pd.DataFrame) -> np.ndarray:
    """The matrix the model scores: the sequence set's when the model was fit on it (same
    features and scaler), else the clean frame scaled with the model's own scaler (a serving
    model kept after the data moved its splits, or promoted by hand)."""
    cfg = model.config
    same = (cfg["features"] == seq.features
            and np.array_equal(np.asarray(cfg["scaler"]["mean"]), seq.mean)
            and np.array_equal(np.asarray(cfg["scaler"]["scale"]), seq.scale))
    if same:
        return seq.X
    missing = [f for f in cfg["features"] if f not in frame.columns]
    if missing or len(frame) != len(seq.X):
        raise ValueError(f"the serving model does not fit this data ({len(missing)} of its "
                         f"features missing, e.g. {missing[:3]}): retrain it")
    return model.scale(frame)


def abstain_threshold(model: LoadedModel, seq: SequenceSet, X: np.ndarray,
                      test_proba: np.ndarray, settings: Settings) -> dict[str, Any]:
    """The ABSTAIN threshold chosen on the validation split (coverage against accuracy), and
    the test split's figures at that point."""
    va, te = seq.end_rows("val"), seq.end_rows("test")
    chosen = choose_threshold(model.predict_proba(X, va), seq.y[va].astype(np.int64),
                              min_coverage=settings.threshold_min_coverage)
    chosen["test"] = apply_threshold(test_proba, seq.y[te].astype(np.int64),
                                     chosen["threshold"])
    chosen["used_by_signals"] = settings.choose_threshold
    return chosen


def _lifecycle(layout: Layout, symbol: str, serving: str) -> dict[str, Any]:
    """From the kept versions (read once): ``latest_challenger``, the newest version when it is
    a challenger kept out (never served, not the serving one), and ``promotions``, the hand
    promotions of the serving version (``lstm-assets promote``), oldest first."""
    kept = list_versions(layout.warehouse, symbol, serving)
    last = kept[-1] if kept else None
    kept_out = None
    if not (last is None or last["serving"] or last.get("promotions")
            or (last.get("decision") or {}).get("promote")):
        kept_out = {"version": last["version"], "created_at": last.get("created_at"),
                    "init": last.get("init"),
                    "reason": (last.get("decision") or {}).get("reason")}
    promotions = next((list(r.get("promotions") or []) for r in kept if r["serving"]), [])
    return {"latest_challenger": kept_out, "promotions": promotions}


def run_evaluate(layout: Layout, symbol: str, settings: Settings) -> dict[str, Any]:
    seq = read_sequences(layout, symbol)
    frame = read_clean(layout, symbol)
    model = LoadedModel.load(layout.warehouse.model(symbol))
    te = seq.end_rows("test")
    X = model_inputs(model, seq, frame)
    proba = model.predict_proba(X, te)
    rep = evaluate(seq, frame, proba, settings, load_truth(layout.truth_dir, symbol))
    rep["symbol"] = symbol
    rep["model_version"] = model.version
    rep.update(_lifecycle(layout, symbol, model.version))
    rep["threshold"] = abstain_threshold(model, seq, X, proba, settings)
    # the splits adjusted and the price jumps found when the clean frame was made (run_clean);
    # None for a clean frame written without them
    rep["data_adjustments"] = parquet_metadata(
        upstream(layout.warehouse.clean_frame(symbol), "clean_frames", symbol),
        DATA_ADJUSTMENTS_KEY)
    if settings.walk_forward_folds > 0:
        rep["walk_forward"] = walk_forward(frame, settings, settings.walk_forward_folds)
    rep["training"] = {k: model.config["training"].get(k) for k in
                       ("epochs_run", "best_epoch", "best_val_loss", "best_val_accuracy",
                        "seconds", "device", "init", "features_used", "top_features")}
    rep["training"]["features_total"] = len(model.config["features"])
    # cold vs warm: the previous model and this one on the same val/test windows (see run_train)
    rep["retrain"] = model.config.get("retrain")
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


def reload_and_predict(layout: Layout, symbol: str) -> np.ndarray:
    """Test-split probabilities from the saved model alone (used to check reproducibility)."""
    seq = read_sequences(layout, symbol)
    model = LoadedModel.load(layout.warehouse.model(symbol))
    X = model_inputs(model, seq, read_clean(layout, symbol))
    return model.predict_proba(X, seq.end_rows("test"))
