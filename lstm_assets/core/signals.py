"""Next-day signals: each symbol's saved model applied to the latest window of its clean frame.

For every symbol that has a model, the model's own scaler scales the clean frame, the window
ending on the frame's last day is scored, and the top class becomes the signal unless its
probability is below ``signal_min_confidence`` or the window holds a price jump that training
left out (then the signal is ``ABSTAIN``, and ``reason`` says why). The last
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
from lstm_assets.core.storage import Warehouse, read_json, read_parquet, write_parquet

log = logging.getLogger(__name__)

ABSTAIN = "ABSTAIN"
COLUMNS = ["symbol", "as_of", "horizon", "signal", "predicted", "confidence",
           *[f"p_{c.lower()}" for c in CLASSES], "model_init", "model_trained_at",
           "model_test_accuracy", "majority_test_accuracy", "reason"]


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
        "horizon": int(model.config.get("horizon", 1)),
        "predicted": CLASSES[top],
        "signal": CLASSES[top] if reason is None else ABSTAIN,
        "reason": reason,
        "confidence": conf,
        **{f"p_{c.lower()}": float(proba[i]) for i, c in enumerate(CLASSES)},
    }


def latest_signals(wh: Warehouse, settings: Settings,
                   symbols: list[str] | None = None) -> SignalTable:
    """Signals for ``symbols`` (default: every symbol with a model); writes wh.signals()."""
    if settings.num_threads > 0:
        torch.set_num_threads(settings.num_threads)
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for sym in symbols if symbols is not None else model_symbols(wh):
        try:
            model = LoadedModel.load(wh.model(sym))
            frame = read_parquet(wh.clean_frame(sym))
            row = {"symbol": sym, **signal_for(model, frame, settings.signal_min_confidence)}
        except Exception as e:  # one symbol never stops the table; the reason is reported
            errors[sym] = f"{type(e).__name__}: {e}"
            log.warning("[%s] no signal: %s", sym, errors[sym])
            continue
        retrain = model.config.get("retrain") or {}
        row["model_init"] = retrain.get("init", model.config["training"].get("init"))
        row["model_trained_at"] = retrain.get("trained_at")
        row["model_test_accuracy"] = row["majority_test_accuracy"] = None
        rp = wh.report(sym, ".json")
        if rp.exists():
            rep = read_json(rp)
            row["model_test_accuracy"] = rep["model"]["accuracy"]
            row["majority_test_accuracy"] = rep["baselines"]["majority"]["accuracy"]
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    write_parquet(wh.signals(), frame)
    return SignalTable(frame, errors)


def signals_markdown(table: SignalTable, min_confidence: float) -> str:
    """One Markdown table for the UI."""
    lines = [f"Next-day signals (abstain below {min_confidence:.0%} confidence). Test accuracy "
             "is the model's on its test split, beside always-majority.", "",
             "| symbol | as of | signal | P(DOWN) | P(FLAT) | P(UP) | test acc. | majority |",
             "|---|---|---|---|---|---|---|---|"]

    def pct(x: Any) -> str:
        return "" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.1f}%"

    for r in table.frame.itertuples(index=False):
        lines.append(f"| {r.symbol} | {r.as_of} | **{r.signal}** | {pct(r.p_down)} | "
                     f"{pct(r.p_flat)} | {pct(r.p_up)} | {pct(r.model_test_accuracy)} | "
                     f"{pct(r.majority_test_accuracy)} |")
    if table.errors:
        lines += ["", "No signal:", ""] + [f"- {s}: {m}" for s, m in table.errors.items()]
    return "\n".join(lines) + "\n"
