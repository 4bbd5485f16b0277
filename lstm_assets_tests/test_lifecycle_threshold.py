"""The ABSTAIN threshold chosen on validation predictions (``core.lifecycle.threshold``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from lstm_assets.core.lifecycle.threshold import (
    apply_threshold,
    choose_threshold,
    coverage_curve,
    wilson_interval,
)


def _proba(rng: np.random.Generator, n: int, informative: bool) -> tuple[np.ndarray,
                                                                        np.ndarray]:
    """Random 3-class probabilities and labels; when ``informative``, the top class is right
    with probability equal to its own confidence (a calibrated model), else at a flat 45%."""
    proba = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    top, conf = proba.argmax(axis=1), proba.max(axis=1)
    right = rng.random(n) < (conf if informative else 0.45)
    other = (top + rng.integers(1, 3, size=n)) % 3
    return proba, np.where(right, top, other)


def test_threshold_chosen_above_floor_when_confidence_is_informative() -> None:
    rng = np.random.default_rng(0)
    proba, y = _proba(rng, 2000, informative=True)
    res = choose_threshold(proba, y)
    overall = float(np.mean(proba.argmax(axis=1) == y))
    assert res["threshold"] > 1 / 3 and res["chosen_on"] == "validation"
    assert res["val"]["accuracy"] > overall + 0.05
    assert res["val"]["coverage"] >= 0.2
    lo, hi = res["val"]["accuracy_ci"]
    assert lo < res["val"]["accuracy"] < hi
    json.dumps(res)


def test_threshold_uninformative_confidence_keeps_the_all_kept_lower_bound() -> None:
    rng = np.random.default_rng(1)
    proba, y = _proba(rng, 2000, informative=False)
    res = choose_threshold(proba, y)
    all_kept = apply_threshold(proba, y, 1 / 3)
    assert all_kept["coverage"] == 1.0
    chosen = next(p for p in res["curve"] if p["threshold"] == res["threshold"])
    assert chosen["lower_bound"] >= all_kept["lower_bound"]
    # no real gain to be had: whatever point wins, it wins by noise only
    assert res["val"]["accuracy"] - all_kept["accuracy"] < 0.05
    fresh_proba, fresh_y = _proba(rng, 2000, informative=False)
    fresh = apply_threshold(fresh_proba, fresh_y, res["threshold"])
    assert abs(fresh["accuracy"] - 0.45) < 0.06  # the "test" split sees no gain either


def test_threshold_min_coverage_is_respected() -> None:
    rng = np.random.default_rng(2)
    proba, y = _proba(rng, 1000, informative=True)
    for min_cov in (0.1, 0.5, 0.9):
        res = choose_threshold(proba, y, min_coverage=min_cov)
        assert res["val"]["coverage"] >= min_cov and res["min_coverage_met"]
    # a floor above every confidence: no candidate reaches min_coverage
    res = choose_threshold(proba, y, floor=0.999)
    assert not res["min_coverage_met"] and res["threshold"] >= 0.999


def test_threshold_rejects_empty_and_malformed_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        choose_threshold(np.empty((0, 3)), np.empty(0, dtype=np.int64))
    with pytest.raises(ValueError, match="labels"):
        choose_threshold(np.full((2, 3), 1 / 3), np.array([0, -1]))
    with pytest.raises(ValueError, match="proba must be"):
        coverage_curve(np.full((2, 2), 0.5), np.array([0, 1]))


def test_threshold_curve_coverage_is_non_increasing() -> None:
    rng = np.random.default_rng(3)
    proba, y = _proba(rng, 500, informative=True)
    curve = coverage_curve(proba, y)
    thr = [p["threshold"] for p in curve]
    cov = [p["coverage"] for p in curve]
    assert thr == sorted(set(thr)) and thr[0] == pytest.approx(1 / 3)
    assert all(a >= b for a, b in zip(cov, cov[1:], strict=False))
    assert cov[0] == 1.0 and 15 <= len(curve) <= 21
    kept = [p["n_kept"] for p in curve]
    assert kept == [int(np.sum(proba.max(axis=1) >= t)) for t in thr]
    empty = coverage_curve(proba, y, np.array([1.5]))[0]
    assert empty["n_kept"] == 0 and empty["accuracy"] is None and empty["lower_bound"] is None


def test_threshold_wilson_interval_matches_scipy_and_prefers_many_signals() -> None:
    for k, n in ((5, 5), (130, 200), (0, 7), (17, 40)):
        ci = stats.binomtest(k, n).proportion_ci(method="wilson")
        lo, hi = wilson_interval(np.array([k]), np.array([n]))
        assert lo[0] == pytest.approx(ci.low, abs=1e-9) and hi[0] == pytest.approx(ci.high,
                                                                                   abs=1e-9)
    five_lucky, many = wilson_interval(np.array([5, 130]), np.array([5, 200]))[0]
    assert five_lucky < many  # 5/5 at 100% loses to 130/200 at 65%


def test_threshold_apply_on_another_split() -> None:
    proba = np.array([[0.9, 0.05, 0.05], [0.2, 0.5, 0.3], [0.34, 0.33, 0.33], [0.1, 0.1, 0.8]])
    y = np.array([0, 2, 0, 2])
    res = apply_threshold(proba, y, 0.5)
    assert res["n_kept"] == 3 and res["coverage"] == 0.75
    assert res["accuracy"] == pytest.approx(2 / 3)
    assert res["accuracy_ci"][0] == res["lower_bound"] < 2 / 3 < res["accuracy_ci"][1]
