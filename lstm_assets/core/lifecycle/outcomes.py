"""The live scorecard: past signals scored against the prices that arrived after them.

Every row of the signal history (``core/signals.append_history``: one per symbol and as-of date)
is joined with the symbol's current clean frame on its as-of date. Once the raw file holds the
``horizon`` days after it, that row of the clean frame has a label (the realised class, by the
frame's label rule) and a forward log return; until then the signal is *pending*. Rows whose
label was left out (a price jump in the window, ``jump_policy=exclude``) are *excluded*.

Per symbol and overall the scorecard gives, with 95% intervals:

- live accuracy: the model's top class against the realised class, on every scored signal
  (abstained ones included), beside the test accuracy the model's report promised when the
  signal was made;
- hit rate: the same on the signals that were not ABSTAIN;
- P&L after costs: long on UP, short on DOWN, flat otherwise, held ``horizon`` days, one round
  trip (``2 x cost_bps``) per position; the mean per signal and the sum.

:func:`below_promise` tests whether live accuracy is significantly below the promised test
accuracy (one-sided; a normal approximation of the Poisson-binomial count, since each signal
carries the promise of the model that made it), symbol by symbol with a Benjamini-Hochberg
correction across symbols, and overall.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from lstm_assets.core.research.stats import benjamini_hochberg
from lstm_assets.core.settings import CLASSES, Settings
from lstm_assets.core.signals import ABSTAIN
from lstm_assets.core.storage import Warehouse, exists, read_parquet, write_json, write_parquet

MIN_SCORED = 20
"""Fewer scored signals than this: no verdict on live accuracy (too little to test)."""


def wilson(k: int, n: int) -> list[float] | None:
    """The Wilson 95% interval of k successes in n (None when n is 0)."""
    if n == 0:
        return None
    ci = sps.binomtest(int(k), int(n)).proportion_ci(method="wilson")
    return [float(ci.low), float(ci.high)]


def join_outcomes(history: pd.DataFrame, frames: dict[str, pd.DataFrame],
                  cost_bps: float) -> pd.DataFrame:
    """The signal history with ``status`` (scored / pending / excluded / no data),
    ``realised``, ``correct``, ``fwd_return`` and ``pnl`` per row."""
    out = history.copy()
    out["status"] = "no data"
    out["realised"] = None
    out["fwd_return"] = np.nan
    for sym, idx in out.groupby("symbol").groups.items():
        frame = frames.get(str(sym))
        if frame is None:
            continue
        by_day = frame.assign(day=pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d"))
        by_day = by_day.drop_duplicates("day").set_index("day")
        days = out.loc[idx, "as_of"].astype(str)
        label = by_day["label"].reindex(days).to_numpy()
        fwd = by_day["fwd_return"].reindex(days).to_numpy(dtype=np.float64)
        status = np.where(pd.isna(label), "no data",
                          np.where(label >= 0, "scored",
                                   np.where(label == -1, "pending", "excluded")))
        out.loc[idx, "status"] = status
        lab = np.where(label >= 0, label, 0).astype(int)
        out.loc[idx, "realised"] = [CLASSES[v] if s == "scored" else None
                                    for v, s in zip(lab, status, strict=True)]
        out.loc[idx, "fwd_return"] = np.where(status == "scored", fwd, np.nan)
    scored = out["status"] == "scored"
    out["correct"] = np.where(scored, out["predicted"] == out["realised"], np.nan)
    pos = out["signal"].map({"UP": 1.0, "DOWN": -1.0}).fillna(0.0)
    ret = np.expm1(out["fwd_return"].astype(np.float64))
    out["pnl"] = np.where(scored, pos * ret - (pos != 0) * 2 * cost_bps / 1e4, np.nan)
    return out


def _mean_ci(x: np.ndarray) -> dict[str, Any]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"mean": None, "ci": None, "sum": 0.0, "n": 0}
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else float("nan")
    m = float(x.mean())
    return {"mean": m, "ci": [m - half, m + half] if np.isfinite(half) else None,
            "sum": float(x.sum()), "n": int(x.size)}


def _promise_p(correct: np.ndarray, promised: np.ndarray) -> float | None:
    """One-sided p of live accuracy below the promise (normal approx. of Poisson-binomial)."""
    ok = np.isfinite(promised)
    if ok.sum() < MIN_SCORED:
        return None
    k, p0 = correct[ok].sum(), promised[ok]
    var = float((p0 * (1 - p0)).sum())
    if var <= 0:
        return None
    return float(sps.norm.cdf((k - p0.sum() + 0.5) / np.sqrt(var)))  # continuity corrected


def _summary(rows: pd.DataFrame) -> dict[str, Any]:
    scored = rows[rows["status"] == "scored"]
    correct = scored["correct"].astype(float).to_numpy()
    acted = scored[scored["signal"] != ABSTAIN]
    promised = pd.to_numeric(scored["model_test_accuracy"], errors="coerce").to_numpy(float)
    promised_all = pd.to_numeric(rows["model_test_accuracy"], errors="coerce").to_numpy(float)
    n, k = len(scored), int(correct.sum())
    hits = int(acted["correct"].astype(float).sum())
    return {
        "signals": len(rows), "scored": n,
        "pending": int((rows["status"] == "pending").sum()),
        "excluded": int((rows["status"] == "excluded").sum()),
        "live_accuracy": k / n if n else None, "live_accuracy_ci": wilson(k, n),
        "promised_test_accuracy": float(np.nanmean(promised_all))
        if np.isfinite(promised_all).any() else None,
        "acted": len(acted), "hit_rate": hits / len(acted) if len(acted) else None,
        "hit_rate_ci": wilson(hits, len(acted)),
        "pnl": _mean_ci(scored["pnl"].to_numpy(dtype=np.float64)),
        "p_below_promise": _promise_p(correct, promised),
    }


def scorecard(outcomes: pd.DataFrame, level: float = 0.05) -> dict[str, Any]:
    """Per-symbol and overall figures, and which symbols are significantly below promise."""
    per = {str(sym): _summary(g) for sym, g in outcomes.groupby("symbol")}
    overall = _summary(outcomes) if len(outcomes) else _summary(outcomes.iloc[:0])
    return {"overall": overall, "symbols": per, **below_promise(per, overall, level)}


def below_promise(per: dict[str, dict[str, Any]], overall: dict[str, Any],
                  level: float) -> dict[str, Any]:
    tested = {s: r["p_below_promise"] for s, r in per.items()
              if r["p_below_promise"] is not None}
    flagged: list[str] = []
    if tested:
        keep, _ = benjamini_hochberg(np.array(list(tested.values())), level)
        flagged = [s for s, k in zip(tested, keep, strict=True) if k]
    p = overall["p_below_promise"]
    return {"level": level, "symbols_tested": len(tested), "symbols_below_promise": flagged,
            "overall_below_promise": bool(p is not None and p < level),
            "min_scored": MIN_SCORED}


def run_outcomes(wh: Warehouse, settings: Settings) -> dict[str, Any]:
    """Score the signal history against the current clean frames; write
    ``signal_outcomes.parquet`` (one row per signal) and ``signal_outcomes.json``."""
    path = wh.signal_history()
    if not exists(path):
        raise FileNotFoundError(f"{path} is missing: materialize latest_signals first")
    history = read_parquet(path)
    frames = {}
    for sym in sorted(set(history["symbol"])):
        cf = wh.clean_frame(sym)
        if exists(cf):
            frames[sym] = read_parquet(cf, columns=["date", "label", "fwd_return"])
    out = join_outcomes(history, frames, settings.cost_bps)
    card = scorecard(out)
    card["cost_bps_per_side"] = settings.cost_bps
    write_parquet(wh.outcomes(".parquet"), out)
    write_json(wh.outcomes(".json"), card)
    return {"card": card, "outcomes": out}


def _pct(x: float | None, ci: list[float] | None = None) -> str:
    if x is None:
        return ""
    text = f"{100 * x:.1f}%"
    return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _bps(pnl: dict[str, Any]) -> str:
    if pnl["mean"] is None:
        return ""
    ci = pnl["ci"]
    text = f"{1e4 * pnl['mean']:+.1f}"
    return text + (f" [{1e4 * ci[0]:+.1f}, {1e4 * ci[1]:+.1f}]" if ci else "")


def scorecard_markdown(card: dict[str, Any]) -> str:
    """The scorecard as one Markdown table (overall first), for the UI."""
    flagged = set(card["symbols_below_promise"])
    lines = [
        "Live signals scored against the prices that arrived after them. Live accuracy: the "
        "top class on every scored signal; hit rate: on the signals not ABSTAIN; P&L per "
        f"signal in bps after {2 * card.get('cost_bps_per_side', 0):g} bps a round trip. "
        "95% intervals in brackets. *Promised*: the accuracy the model that made each signal "
        "showed on its test split (a pooled model: on its validation block).", "",
        "| symbol | scored | pending | live accuracy | promised | hit rate (acted) | "
        "P&L bps/signal | below promise |",
        "|---|---|---|---|---|---|---|---|"]

    def row(name: str, r: dict[str, Any], below: bool) -> str:
        return (f"| {name} | {r['scored']} | {r['pending']} | "
                f"{_pct(r['live_accuracy'], r['live_accuracy_ci'])} | "
                f"{_pct(r['promised_test_accuracy'])} | "
                f"{_pct(r['hit_rate'], r['hit_rate_ci'])} ({r['acted']}) | "
                f"{_bps(r['pnl'])} | {'**yes**' if below else ''} |")

    lines.append(row("**all**", card["overall"], card["overall_below_promise"]))
    lines += [row(s, r, s in flagged) for s, r in card["symbols"].items()]
    lines += ["", f"Below promise: one-sided test at {card['level']:.0%} (BH across "
              f"{card['symbols_tested']} symbols with at least {card['min_scored']} scored "
              "signals)."]
    return "\n".join(lines) + "\n"
