"""Honest evaluation on the test split: model vs baselines vs oracle, with intervals.

Everything here is computed on the test windows only; nothing the model trained or early-stopped
on (train and val) enters a reported number. Baselines are fit on the train split only, and
none of their figures depends on a random draw:

- ``majority``: always the most frequent train class (deterministic);
- ``prior``: a day's class drawn at random from the train class shares ``p``, reported by its
  *expectation* over the draws given the test labels (:func:`prior_expected_metrics`): accuracy
  ``sum_c p_c q_c`` (``q``: test class shares), balanced accuracy the mean ``p_c`` over the
  classes present, macro-F1 its exact expectation, log loss that of predicting ``p`` every day;
- ``logreg_last``: scikit-learn logistic regression (L-BFGS, deterministic) on the last day's
  (scaled) features.

Intervals: a 95% moving-block bootstrap over test days (blocks of ``BLOCK`` days keep the
serial dependence of daily data) for accuracy and macro-F1, and for the paired difference
between the model and the best baseline; the edge is *significant* when that difference's
interval lies above zero. The prior's intervals recompute its expectation on each resample.
The per-resample metrics come from confusion counts in numpy (the same figures as
scikit-learn's, without its per-call input validation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr
from scipy.stats import binom
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)
from threadpoolctl import threadpool_limits

from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.settings import CLASSES, Settings

BLOCK = 10
LABELS = list(range(len(CLASSES)))
F1_RESAMPLES = 300  # macro-F1 intervals use the first (at most) 300 bootstrap resamples
COMPARABLE = ("deterministic", "expected")  # the kinds of baseline figures the edge is judged on


def _log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-7, 1)
    return float(log_loss(y, p / p.sum(1, keepdims=True), labels=LABELS))


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    pred = proba.argmax(1)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=LABELS, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=LABELS, average="macro", zero_division=0)),
        "log_loss": _log_loss(y, proba),
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                          "support": int(s[i])} for i, c in enumerate(CLASSES)},
        "confusion_matrix": confusion_matrix(y, pred, labels=LABELS).tolist(),
        "predicted_share": (np.bincount(pred, minlength=3) / max(len(pred), 1)).tolist(),
    }


def block_bootstrap_indices(n: int, samples: int, seed: int, block: int = BLOCK) -> np.ndarray:
    """(samples, n) index arrays of a circular moving-block bootstrap."""
    rng = np.random.default_rng(seed)
    nb = int(np.ceil(n / block))
    starts = rng.integers(0, n, size=(samples, nb))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]) % n
    return idx.reshape(samples, -1)[:, :n]


def confusion_counts(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Confusion counts ``[..., true, predicted]`` of label arrays ``(..., n)`` (one matrix per
    leading index, e.g. per bootstrap resample)."""
    k = len(LABELS)
    code = (np.asarray(y, dtype=np.int64) * k + np.asarray(pred, dtype=np.int64))
    lead = code.shape[:-1]
    rows = int(np.prod(lead)) if lead else 1
    flat = code.reshape(rows, -1) + (np.arange(rows, dtype=np.int64) * k * k)[:, None]
    counts = np.bincount(flat.ravel(), minlength=rows * k * k)
    return counts.reshape(*lead, k, k)


def macro_f1_from_counts(cm: np.ndarray) -> np.ndarray:
    """Macro-F1 over all ``LABELS`` from confusion counts ``[..., true, predicted]``, as
    scikit-learn's ``f1_score(average="macro", labels=LABELS, zero_division=0)`` computes it:
    per class ``2 TP / (support + predicted)``, 0 where that is 0/0."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    denom = cm.sum(-1) + cm.sum(-2)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1.mean(-1)


def _percentiles(x: np.ndarray) -> list[float]:
    return np.percentile(x, [2.5, 97.5]).tolist()


def bootstrap(y: np.ndarray, pred: np.ndarray, others: dict[str, np.ndarray], samples: int,
              seed: int) -> dict[str, Any]:
    """95% intervals for accuracy/macro-F1 of ``pred`` and its paired edge over each other.

    ``others`` maps a baseline to its per-day (expected) correctness on the test days: 0/1 for a
    baseline that predicts a class, ``p[y]`` for the prior (its chance of being right that day).
    """
    idx = block_bootstrap_indices(len(y), samples, seed)
    correct = (y == pred)[idx].mean(1)
    sub = idx[: min(samples, F1_RESAMPLES)]
    f1s = macro_f1_from_counts(confusion_counts(y[sub], pred[sub]))
    out: dict[str, Any] = {
        "accuracy_ci": _percentiles(correct),
        "macro_f1_ci": _percentiles(f1s),
        "edge": {},
    }
    for name, score in others.items():
        diff = correct - score[idx].mean(1)
        out["edge"][name] = {"accuracy_diff": float(np.mean(y == pred) - np.mean(score)),
                             "ci": _percentiles(diff),
                             "p_value": float(np.mean(diff <= 0))}
    return out


def _prior_expectations(counts: np.ndarray, prior: np.ndarray) -> dict[str, np.ndarray]:
    """Expected accuracy, balanced accuracy, per-class precision/recall/F1 and macro-F1 of
    predicting each day's class at random from ``prior``, given test class ``counts``
    ``(..., 3)`` (one row per resample, or a single row).

    With ``n`` days, ``n_c`` of class ``c`` and ``Z_c ~ Binomial(n, p_c)`` days predicted ``c``:
    the true positives given ``Z_c = z`` are hypergeometric with mean ``z n_c / n``, so
    ``E[F1_c] = sum_z P(Z_c = z) 2 z n_c / (n (n_c + z))`` and
    ``E[precision_c] = (n_c / n) P(Z_c > 0)`` exactly; ``E[recall_c] = p_c`` for a class present
    (0 for one absent, as scikit-learn's ``zero_division=0`` scores it).
    """
    counts = np.asarray(counts, dtype=np.float64)
    n = int(round(float(counts.sum(-1).ravel()[0])))
    q = counts / n
    present = counts > 0
    z = np.arange(n + 1, dtype=np.float64)
    f1 = np.zeros_like(counts)
    for c, pc in enumerate(prior):
        w = binom.pmf(z, n, pc)
        nc = counts[..., c, None]
        denom = n * (nc + z)
        ratio = np.divide(2 * z * nc, denom, out=np.zeros(np.broadcast_shapes(nc.shape, z.shape)),
                          where=denom > 0)
        f1[..., c] = ratio @ w
    recall = np.where(present, prior, 0.0)
    n_present = present.sum(-1)
    return {
        "accuracy": q @ prior,
        "balanced_accuracy": np.divide(recall.sum(-1), n_present,
                                       out=np.zeros(n_present.shape), where=n_present > 0),
        "precision": q * (1 - (1 - prior) ** n),
        "recall": recall,
        "f1": f1,
        "macro_f1": f1.mean(-1),
    }


def prior_expected_metrics(y: np.ndarray, prior: np.ndarray) -> dict[str, Any]:
    """The ``prior`` baseline's figures on test labels ``y``: their expectations over the random
    draws from the train class shares ``prior`` (no draw is made), in the layout of
    :func:`classification_metrics`; the confusion matrix holds expected counts."""
    prior = np.asarray(prior, dtype=np.float64)
    counts = np.bincount(y, minlength=len(LABELS))
    e = _prior_expectations(counts, prior)
    return {
        "kind": "expected",
        "accuracy": float(e["accuracy"]),
        "balanced_accuracy": float(e["balanced_accuracy"]),
        "macro_f1": float(e["macro_f1"]),
        "log_loss": _log_loss(y, np.tile(prior, (len(y), 1))),
        "per_class": {c: {"precision": float(e["precision"][i]), "recall": float(e["recall"][i]),
                          "f1": float(e["f1"][i]), "support": int(counts[i])}
                      for i, c in enumerate(CLASSES)},
        "confusion_matrix": (counts[:, None] * prior[None, :]).tolist(),
        "predicted_share": prior.tolist(),
    }


def _contains(ci: list[float], point: float) -> list[float]:
    """``ci`` extended, where needed, to hold ``point``. An expected figure can sit at an extreme
    of its function of the test class shares (a uniform prior's accuracy is 1/3 on every
    resample; macro-F1 peaks near balanced classes), so every resample can land on one side of
    it; the interval then reaches the point instead of excluding it (wider, never narrower)."""
    return [min(ci[0], point), max(ci[1], point)]


def prior_bootstrap(y: np.ndarray, prior: np.ndarray, samples: int, seed: int,
                    point: dict[str, Any]) -> dict[str, list[float]]:
    """95% intervals of the prior's expected accuracy and macro-F1: the same block bootstrap
    over test days as the other baselines, the expectation recomputed on each resample
    (deterministic given ``seed``; no draw from the prior)."""
    idx = block_bootstrap_indices(len(y), samples, seed)
    k = len(LABELS)
    counts = (y[idx][..., None] == np.arange(k)).sum(1)
    acc = np.asarray(prior, dtype=np.float64)[y][idx].mean(1)
    sub = counts[: min(samples, F1_RESAMPLES)]
    f1 = _prior_expectations(sub, np.asarray(prior, dtype=np.float64))["macro_f1"]
    return {"accuracy_ci": _contains(_percentiles(acc), point["accuracy"]),
            "macro_f1_ci": _contains(_percentiles(f1), point["macro_f1"])}


def baselines(seq: SequenceSet) -> dict[str, np.ndarray]:
    """Test-split class probabilities of each baseline, all fit on the train split only.

    ``prior`` is the train class shares on every day (its figures are expectations, see
    :func:`prior_expected_metrics`); ``logreg_last`` is fit with L-BFGS, which draws no random
    numbers, so every figure here is the same on every call. The fit runs on one BLAS thread:
    its matrices are small, and threads cost ~10x more than they save (more on a busy machine).
    """
    tr, te = seq.end_rows("train"), seq.end_rows("test")
    ytr = seq.y[tr].astype(int)
    prior = np.bincount(ytr, minlength=3) / len(ytr)
    n = len(te)
    maj = np.zeros((n, 3))
    maj[:, int(prior.argmax())] = 1.0
    p_lr = np.zeros((n, 3))
    with threadpool_limits(limits=1, user_api="blas"):
        lr = LogisticRegression(max_iter=2000, C=0.1, solver="lbfgs")
        lr.fit(seq.X[tr], ytr)
        p_lr[:, lr.classes_] = lr.predict_proba(seq.X[te])
    return {"majority": maj, "prior": np.tile(prior, (n, 1)), "logreg_last": p_lr}


def baseline_metrics(y: np.ndarray, base: dict[str, np.ndarray], samples: int,
                     seed: int) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Each baseline's test figures with 95% intervals, and its per-day (expected) correctness
    for the paired edge (see :func:`bootstrap`)."""
    metrics: dict[str, dict[str, Any]] = {}
    scores: dict[str, np.ndarray] = {}
    n_boot = min(samples, F1_RESAMPLES)
    for k, p in base.items():
        if k == "prior":
            prior = p[0]
            d = prior_expected_metrics(y, prior)
            d.update(prior_bootstrap(y, prior, n_boot, seed, d))
            scores[k] = prior[y]
        else:
            pred = p.argmax(1)
            d = {"kind": "deterministic", **classification_metrics(y, p)}
            bb = bootstrap(y, pred, {}, n_boot, seed)
            d.update({"accuracy_ci": bb["accuracy_ci"], "macro_f1_ci": bb["macro_f1_ci"]})
            scores[k] = (y == pred).astype(np.float64)
        metrics[k] = d
    return metrics, scores


def best_baseline(metrics: dict[str, dict[str, Any]]) -> str:
    """The baseline with the highest test accuracy among deterministic or expected figures
    (a figure that depends on a random draw is never the yardstick)."""
    fair = [k for k, d in metrics.items() if d.get("kind") in COMPARABLE]
    if not fair:
        raise ValueError(f"no baseline with deterministic or expected figures: {list(metrics)}")
    return max(fair, key=lambda k: metrics[k]["accuracy"])


def oracle_proba(frame: pd.DataFrame, truth: pd.DataFrame, dates: np.ndarray) -> np.ndarray | None:
    """Bayes class probabilities for the test days from the generator's ground truth.

    With the forward log return ~ N(mean, std) (known to the generator) and the label band from
    the clean frame, P(UP) = 1 - Phi((band - mean)/std), P(DOWN) = Phi((-band - mean)/std).
    Days the ground truth does not cover (rows added to a demo file after it was generated) get
    NaN rows; None when it covers none.
    """
    f = frame.set_index("date").reindex(pd.to_datetime(dates))
    t = truth.set_index("date").reindex(pd.to_datetime(dates))
    if t["fwd_mean"].isna().all():
        return None
    band, mu, sd = f["band"].to_numpy(), t["fwd_mean"].to_numpy(), t["fwd_std"].to_numpy()
    p_up = 1 - ndtr((band - mu) / sd)
    p_down = ndtr((-band - mu) / sd)
    return np.column_stack([p_down, 1 - p_up - p_down, p_up])


def reliability(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> dict[str, Any]:
    conf = proba.max(1)
    correct = proba.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges) - 1, 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            rows.append({"bin": [float(edges[b]), float(edges[b + 1])], "n": int(m.sum()),
                         "confidence": float(conf[m].mean()), "accuracy": float(correct[m].mean())})
            ece += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return {"bins": rows, "ece": float(ece)}


def backtest(pred: np.ndarray, next_ret: np.ndarray, cost_bps: float) -> dict[str, Any]:
    """Long (UP) / short (DOWN) / flat (FLAT) each day on the next day's simple return."""
    pos = np.array([-1.0, 0.0, 1.0])[pred]
    turnover = np.abs(np.diff(np.r_[0.0, pos]))
    strat = pos * next_ret - turnover * cost_bps / 1e4
    active = pos != 0

    def stats(r: np.ndarray) -> dict[str, float]:
        sd = r.std()
        return {"cumulative_return": float(np.prod(1 + r) - 1),
                "sharpe": float(np.sqrt(252) * r.mean() / sd) if sd > 0 else 0.0}

    s = stats(strat)
    s.update({
        "hit_rate": float(np.mean(np.sign(next_ret[active]) == pos[active])) if active.any()
        else float("nan"),
        "turnover": float(turnover.mean()),
        "exposure": float(active.mean()),
        "cost_bps": cost_bps,
        "equity": np.cumprod(1 + strat).tolist(),
    })
    bh = stats(next_ret)
    bh["equity"] = np.cumprod(1 + next_ret).tolist()
    return {"strategy": s, "buy_and_hold": bh}


def evaluate(seq: SequenceSet, frame: pd.DataFrame, proba: np.ndarray, settings: Settings,
             truth: pd.DataFrame | None = None) -> dict[str, Any]:
    """The full test-split report (a JSON-able dict). ``proba`` = model probabilities on the
    test windows (``seq.end_rows('test')``, in order)."""
    te = seq.end_rows("test")
    y = seq.y[te].astype(int)
    pred = proba.argmax(1)
    model = classification_metrics(y, proba)
    base_metrics, scores = baseline_metrics(y, baselines(seq), settings.bootstrap_samples,
                                            settings.seed)
    best_name = best_baseline(base_metrics)
    boot = bootstrap(y, pred, scores, settings.bootstrap_samples, settings.seed)
    model.update({"accuracy_ci": boot["accuracy_ci"], "macro_f1_ci": boot["macro_f1_ci"]})
    edge = boot["edge"][best_name]

    dates = seq.dates[te]
    f = frame.set_index("date")
    close = f["close"].astype("float64")
    next_ret = (close.shift(-1) / close - 1).reindex(pd.to_datetime(dates)).fillna(0).to_numpy()
    report: dict[str, Any] = {
        "test_samples": int(len(te)),
        "test_dates": [str(dates[0]), str(dates[-1])],
        "label_share_test": (np.bincount(y, minlength=3) / len(y)).tolist(),
        "model": model,
        "baselines": base_metrics,
        "best_baseline": best_name,
        "edge_over_best_baseline": edge,
        "significant_edge": bool(edge["ci"][0] > 0),
        "reliability": reliability(y, proba),
        "trading": backtest(pred, next_ret, settings.cost_bps),
        "oracle": None,
    }
    if truth is not None and settings.horizon == 1:
        op = oracle_proba(frame, truth, dates)
        if op is not None:  # on the test days the ground truth covers
            ok = ~np.isnan(op).any(axis=1)
            expected = float(op[ok].max(1).mean())
            report["oracle"] = {
                "expected_accuracy": expected,
                "realized_accuracy": float(np.mean(op[ok].argmax(1) == y[ok])),
                "model_minus_oracle": float(np.mean(pred[ok] == y[ok])) - expected,
                "days": int(ok.sum()), "test_days": len(y)}
    return report


def load_truth(truth_dir: Path | None, symbol: str) -> pd.DataFrame | None:
    if truth_dir is None:
        return None
    p = truth_dir / f"{symbol}.parquet"
    return pd.read_parquet(p) if p.exists() else None
