"""Next-day signals: a saved model applied to the latest window of each symbol's clean frame.

The model is each symbol's own (``signal_source=per_symbol``, the default: the serving
``lstm_model``) or the pooled model of ``pooled_family`` (``signal_source=pooled``: one network
over all symbols, the ``pooled_model`` asset; its promise is its validation accuracy per symbol,
``promise_split``). The rest of this docstring describes the per-symbol source; a pooled model
is used the same way with ``signal_min_confidence`` as its threshold.

For every symbol that has a model, the model's own scaler scales the clean frame, the window
ending on the frame's last day is scored, and the top class becomes the signal unless its
probability is below the symbol's threshold or the window holds a price jump that training
left out (then the signal is ``ABSTAIN``, and ``reason`` says why). The threshold is the one
chosen on the serving model's validation split (its evaluation report, ``choose_threshold``),
else ``signal_min_confidence``.

Each run's rows are also appended to ``signal_history.parquet`` (one row per symbol and as-of
date: a rerun of the same day replaces that day's row, other days are kept), which the live
scorecard (``core/lifecycle/outcomes.py``) scores once the prices after it arrive. The last
``horizon`` rows of a clean frame have no label yet: they are exactly the rows signals are for.

One symbol that cannot be scored (no clean frame, a stale model whose features are gone, too
short a history) does not stop the others: it is listed in ``errors`` with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from lstm_assets.core.clean import EXCLUDED_LABEL
from lstm_assets.core.model import LoadedModel
from lstm_assets.core.settings import CLASSES, Settings
from lstm_assets.core.storage import (
    Warehouse,
    exists,
    read_json,
    read_parquet,
    write_parquet,
)

log = logging.getLogger(__name__)

ABSTAIN = "ABSTAIN"
COLUMNS = ["symbol", "as_of", "horizon", "signal", "predicted", "confidence",
           *[f"p_{c.lower()}" for c in CLASSES], "threshold", "source", "model_version",
           "model_init", "model_trained_at", "model_test_accuracy", "majority_test_accuracy",
           "promise_split", "reason", "generated_at"]
"""``model_test_accuracy`` is the accuracy the serving model promised for the symbol: on its
test split (``promise_split`` test, a per-symbol model) or on the pooled model's validation
block (``validation``)."""


@dataclass
class SignalTable:
    frame: pd.DataFrame
    errors: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.frame["signal"].value_counts().items()}


def model_symbols(wh: Warehouse) -> list[str]:
    folder = wh.base / "lstm_model"
    if not folder.exists():
        return []
    return sorted(p.name[: -len(".safetensors")] for p in folder.glob("*.safetensors"))


def signal_for(model: LoadedModel, frame: pd.DataFrame,
               min_confidence: float) -> dict[str, Any]:
    """The next-day signal from the window ending on the last row of ``frame``."""
    missing = [f for f in model.config["features"] if f not in frame.columns]
    if missing:
        raise ValueError(f"the clean frame lacks {len(missing)} model feature(s) "
                         f"(e.g. {missing[:3]}): the model is stale, retrain it")
    if len(frame) < model.lookback:
        raise ValueError(f"{len(frame)} clean rows < lookback {model.lookback}")
    X = model.scale(frame.iloc[-model.lookback:])
    proba = model.predict_proba(X, np.array([len(X) - 1]))[0].astype(float)
    return signal_from_proba(proba, frame, int(model.config.get("horizon", 1)), min_confidence)


def signal_from_proba(proba: np.ndarray, frame: pd.DataFrame, horizon: int,
                      min_confidence: float) -> dict[str, Any]:
    """The signal row for class probabilities of the window ending on ``frame``'s last row."""
    proba = np.asarray(proba, dtype=float)
    top = int(proba.argmax())
    conf = float(proba[top])
    reason = None
    if conf < min_confidence:
        reason = f"confidence {conf:.0%} < {min_confidence:.0%}"
    if "label" in frame.columns and frame["label"].iloc[-1] == EXCLUDED_LABEL:
        # trained without such windows: its output on one says nothing
        reason = "the latest window holds a price jump (jump_policy=exclude)"
    return {
        "as_of": pd.Timestamp(frame["date"].iloc[-1]).date().isoformat(),
        "horizon": horizon,
        "predicted": CLASSES[top],
        "signal": CLASSES[top] if reason is None else ABSTAIN,
        "reason": reason,
        "confidence": conf,
        **{f"p_{c.lower()}": float(proba[i]) for i, c in enumerate(CLASSES)},
    }


def _report_for(wh: Warehouse, symbol: str, version: str) -> dict[str, Any] | None:
    """The symbol's evaluation report when it is of the serving model (else None)."""
    rp = wh.report(symbol, ".json")
    if not exists(rp):
        return None
    rep = read_json(rp)
    reported = rep.get("model_version")
    return rep if reported in (None, version) else None


def _threshold(rep: dict[str, Any] | None, settings: Settings) -> float:
    chosen = ((rep or {}).get("threshold") or {}).get("threshold")
    if settings.choose_threshold and chosen is not None:
        return float(chosen)
    return settings.signal_min_confidence


def _per_symbol_row(wh: Warehouse, sym: str, settings: Settings) -> dict[str, Any]:
    model = LoadedModel.load(wh.model(sym))
    rep = _report_for(wh, sym, model.version)
    threshold = _threshold(rep, settings)
    row = {"symbol": sym, **signal_for(model, read_parquet(wh.clean_frame(sym)), threshold)}
    retrain = model.config.get("retrain") or {}
    row.update({
        "threshold": threshold, "model_version": model.version, "source": "per_symbol",
        "model_init": retrain.get("init", model.config["training"].get("init")),
        "model_trained_at": retrain.get("trained_at"),
        "model_test_accuracy": None if rep is None else rep["model"]["accuracy"],
        "majority_test_accuracy": None if rep is None
        else rep["baselines"]["majority"]["accuracy"],
        "promise_split": "test"})
    return row


def _pooled_row(model: Any, wh: Warehouse, sym: str, settings: Settings) -> dict[str, Any]:
    frame = read_parquet(wh.clean_frame(sym))
    threshold = settings.signal_min_confidence
    row = {"symbol": sym, **signal_from_proba(model.predict_latest(sym, frame), frame,
                                              int(model.config["horizon"]), threshold)}
    val = (model.config.get("validation") or {}).get("per_symbol", {}).get(sym) or {}
    row.update({
        "threshold": threshold, "model_version": model.version,
        "source": f"pooled:{model.family}", "model_init": "cold",
        "model_trained_at": model.config.get("trained_at"),
        "model_test_accuracy": val.get("accuracy"),
        "majority_test_accuracy": val.get("majority_accuracy"),
        "promise_split": "validation"})
    return row


def _pooled(wh: Warehouse, settings: Settings) -> Any:
    from lstm_assets.core.research.serving import PooledModel

    path = wh.pooled_model(settings.pooled_family)
    if not exists(path):
        raise FileNotFoundError(f"{path} is missing: materialize pooled_model (family "
                                f"{settings.pooled_family}) first, or set "
                                "signal_source=per_symbol")
    return PooledModel.load(path)


def latest_signals(wh: Warehouse, settings: Settings,
                   symbols: list[str] | None = None) -> SignalTable:
    """Signals for ``symbols`` (default: every symbol with a model) from the model
    ``signal_source`` names; writes wh.signals() and appends them to the signal history."""
    if settings.num_threads > 0:
        torch.set_num_threads(settings.num_threads)
    if settings.signal_source not in ("per_symbol", "pooled"):
        raise ValueError(f"signal_source={settings.signal_source!r}: use per_symbol or pooled")
    pooled = _pooled(wh, settings) if settings.signal_source == "pooled" else None
    if symbols is None:
        symbols = model_symbols(wh) if pooled is None else pooled.symbols
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    now = pd.Timestamp.now(tz="UTC").isoformat()
    for sym in symbols:
        try:
            row = (_per_symbol_row(wh, sym, settings) if pooled is None
                   else _pooled_row(pooled, wh, sym, settings))
        except Exception as e:  # one symbol never stops the table; the reason is reported
            errors[sym] = f"{type(e).__name__}: {e}"
            log.warning("[%s] no signal: %s", sym, errors[sym])
            continue
        row["generated_at"] = now
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    write_parquet(wh.signals(), frame)
    append_history(wh, frame)
    return SignalTable(frame, errors)


def append_history(wh: Warehouse, frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``frame``'s rows to the signal history: one row per symbol and as-of date, the
    newest kept (a rerun of a day replaces its row; other days are never rewritten)."""
    path = wh.signal_history()
    old = read_parquet(path) if exists(path) else pd.DataFrame(columns=COLUMNS)
    both = pd.concat([old.astype(object), frame.astype(object)], ignore_index=True)
    both = both.drop_duplicates(["symbol", "as_of"], keep="last")
    both = both.sort_values(["as_of", "symbol"], kind="stable").reset_index(drop=True)
    both = both.infer_objects()
    write_parquet(path, both)
    return both


def signals_markdown(table: SignalTable, min_confidence: float) -> str:
    """One Markdown table for the UI."""
    lines = ["Next-day signals: ABSTAIN below each symbol's threshold (chosen on its "
             f"validation split; {min_confidence:.0%} where none was chosen). Promised "
             "accuracy: the model's on its test split (a pooled model: on its validation "
             "block), beside always-majority.", "",
             "| symbol | as of | signal | P(DOWN) | P(FLAT) | P(UP) | threshold | promised acc. "
             "| majority | model |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def pct(x: Any) -> str:
        return "" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.1f}%"

    for r in table.frame.itertuples(index=False):
        lines.append(f"| {r.symbol} | {r.as_of} | **{r.signal}** | {pct(r.p_down)} | "
                     f"{pct(r.p_flat)} | {pct(r.p_up)} | {pct(r.threshold)} | "
                     f"{pct(r.model_test_accuracy)} | {pct(r.majority_test_accuracy)} | "
                     f"{r.source} {r.model_version} |")
    if table.errors:
        lines += ["", "No signal:", ""] + [f"- {s}: {m}" for s, m in table.errors.items()]
    return "\n".join(lines) + "\n"
