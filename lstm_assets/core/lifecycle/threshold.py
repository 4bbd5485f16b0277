"""The ABSTAIN threshold of one symbol's signals, chosen on its validation predictions.

A signal abstains when its top class probability (its confidence) is below a threshold. Raising
the threshold keeps fewer signals; when confidence is informative the kept ones are right more
often. :func:`choose_threshold` picks the threshold on the validation split only: the test split
then measures the chosen point (:func:`apply_threshold`) without having helped choose it.

The criterion is the lower end of the Wilson 95% interval of the kept signals' accuracy, not the
accuracy itself. The lower bound weighs accuracy against the number of signals it rests on: a
threshold that keeps 5 lucky signals at 100% has a Wilson lower bound of about 57%, below a
threshold that keeps 200 signals at 65% (about 58%). The highest raw accuracy usually sits at
one of the highest thresholds, where few signals make it noise. The lower bound is a guard, not
a significance test: the chosen point's lower bound is never below keeping every signal, but
where confidence carries no information, noise among the ~20 candidates still moves the choice
above the floor about two times in three (at no real cost in accuracy, and the test split shows
no gain).

A point of the coverage curve is ``{"threshold", "coverage", "n_kept", "accuracy",
"accuracy_ci", "lower_bound"}``: the share and number of signals kept (confidence >=
threshold), their accuracy (None when none is kept), its Wilson 95% interval ``[lo, hi]`` and
that interval's lower end (None when none is kept).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from lstm_assets.core.settings import CLASSES

Z95 = float(stats.norm.ppf(0.975))
"""The two-sided 95% normal quantile (1.96) of the Wilson interval."""

QUANTILES = np.arange(0.0, 1.0, 0.05)
"""Quantiles of the confidences (0, 5, ..., 95%) that make the default candidate thresholds."""

TIE_TOLERANCE = 1e-12
"""Lower bounds closer than this count as equal (the lower threshold wins)."""


def wilson_interval(k: np.ndarray, n: np.ndarray, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``k`` successes in ``n`` trials, element-wise (the same interval
    as ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``); NaN where ``n`` is 0."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        center = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(center - half, 0.0, 1.0), np.clip(center + half, 0.0, 1.0)


def _confidence_and_hits(proba: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top probability and whether its top class is the label; ValueError on shapes
    that do not match or labels outside 0..2."""
    p = np.asarray(proba, dtype=np.float64)
    labels = np.asarray(y).ravel()
    if p.ndim != 2 or p.shape[1] != len(CLASSES) or p.shape[0] != labels.shape[0]:
        raise ValueError(f"proba must be (n, {len(CLASSES)}) with one label per row; got "
                         f"proba {p.shape} and y {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise ValueError(f"labels must be in 0..{len(CLASSES) - 1} (unlabelled rows left out)")
    return p.max(axis=1), p.argmax(axis=1) == labels


def _point(threshold: float, n: int, kept: int, hits: int, lo: float,
           hi: float) -> dict[str, Any]:
    none_kept = kept == 0
    return {"threshold": float(threshold), "coverage": kept / n if n else 0.0,
            "n_kept": int(kept), "accuracy": None if none_kept else hits / kept,
            "accuracy_ci": None if none_kept else [float(lo), float(hi)],
            "lower_bound": None if none_kept else float(lo)}


def _curve(conf: np.ndarray, hit: np.ndarray, thresholds: np.ndarray) -> list[dict[str, Any]]:
    """The coverage curve at the sorted ``thresholds`` (kept: ``conf >= threshold``)."""
    order = np.argsort(conf, kind="stable")
    conf_sorted = conf[order]
    # hits among the rows from sorted position i to the end
    hits_from = np.concatenate([np.cumsum(hit[order][::-1])[::-1], [0]])
    first = np.searchsorted(conf_sorted, thresholds, side="left")
    kept = conf.size - first
    hits = hits_from[first]
    lo, hi = wilson_interval(hits, kept)
    return [_point(t, conf.size, int(k), int(h), float(a), float(b))
            for t, k, h, a, b in zip(thresholds, kept, hits, lo, hi, strict=True)]


def default_thresholds(conf: np.ndarray, floor: float = 1 / len(CLASSES)) -> np.ndarray:
    """Candidate thresholds: ``floor`` and the 0, 5, ..., 95% quantiles of the confidences at or
    above it, sorted and without repeats."""
    q = np.quantile(conf, QUANTILES) if conf.size else np.empty(0)
    return np.unique(np.concatenate([[floor], q[q >= floor]]))


def coverage_curve(proba: np.ndarray, y: np.ndarray,
                   thresholds: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Coverage and kept accuracy (with its Wilson 95% interval) at each candidate threshold,
    in increasing threshold order; the default candidates are :func:`default_thresholds`.
    A row is kept when its top probability is >= the threshold."""
    conf, hit = _confidence_and_hits(proba, y)
    cand = default_thresholds(conf) if thresholds is None else np.unique(
        np.asarray(thresholds, dtype=np.float64))
    return _curve(conf, hit, cand)


def _summary(point: dict[str, Any]) -> dict[str, Any]:
    return {k: point[k] for k in ("coverage", "accuracy", "accuracy_ci", "n_kept")}


def choose_threshold(proba_val: np.ndarray, y_val: np.ndarray, min_coverage: float = 0.2,
                     floor: float = 1 / len(CLASSES)) -> dict[str, Any]:
    """The validation-split threshold that maximises the Wilson 95% lower bound of the kept
    signals' accuracy, among candidates at or above ``floor`` that keep at least
    ``min_coverage`` of the rows; equal lower bounds go to the lower threshold (more signals).
    When no candidate keeps ``min_coverage`` (a ``floor`` above most confidences), the
    candidate that keeps the most rows is chosen and ``min_coverage_met`` is False.

    Returns ``{"threshold", "chosen_on": "validation", "min_coverage", "min_coverage_met",
    "val": {"coverage", "accuracy", "accuracy_ci", "n_kept"}, "curve": [points]}``.
    Raises ValueError when the validation set is empty.
    """
    conf, hit = _confidence_and_hits(proba_val, y_val)
    if conf.size == 0:
        raise ValueError("choose_threshold needs validation predictions; the validation set "
                         "is empty")
    curve = _curve(conf, hit, default_thresholds(conf, floor))
    eligible = [p for p in curve if p["n_kept"] and p["coverage"] >= min_coverage]
    if eligible:
        best = max(p["lower_bound"] for p in eligible)
        chosen = min((p for p in eligible if p["lower_bound"] >= best - TIE_TOLERANCE),
                     key=lambda p: p["threshold"])
    else:
        chosen = max(curve, key=lambda p: (p["n_kept"], -p["threshold"]))
    return {"threshold": chosen["threshold"], "chosen_on": "validation",
            "min_coverage": float(min_coverage), "min_coverage_met": bool(eligible),
            "val": _summary(chosen), "curve": curve}


def apply_threshold(proba: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    """Coverage, number kept, and accuracy with its Wilson 95% interval of the rows whose top
    probability is >= ``threshold`` (any split; accuracy and interval None when none is kept):
    ``{"threshold", "coverage", "n_kept", "accuracy", "accuracy_ci", "lower_bound"}``."""
    conf, hit = _confidence_and_hits(proba, y)
    return _curve(conf, hit, np.array([float(threshold)]))[0]
