"""Input and label drift of one symbol (``core.lifecycle.drift``) on hand-built sequence sets."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from lstm_assets.core.clean import EXCLUDED_LABEL
from lstm_assets.core.lifecycle.drift import drift_report, label_mix_psi, psi
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.splits import Bounds

ROWS, WINDOW = 600, 60


def _seq(X: np.ndarray, y: np.ndarray, bounds: Bounds | None = None) -> SequenceSet:
    n, f = X.shape
    b = bounds or Bounds(train_start=9, train_end=360, val_start=361, val_end=480,
                         test_start=481, test_end=n - 1)
    dates = np.datetime64("2020-01-01", "D") + np.arange(n)
    return SequenceSet(X=X.astype(np.float32), y=y.astype(np.int8), dates=dates, bounds=b,
                       features=[f"f{j}" for j in range(f)], mean=np.zeros(f), scale=np.ones(f),
                       lookback=10)


def _labels(rng: np.random.Generator, n: int) -> np.ndarray:
    y = rng.choice(3, size=n, p=[0.3, 0.4, 0.3]).astype(np.int8)
    y[-1] = -1  # the last row has no label yet
    y[100] = EXCLUDED_LABEL
    return y


def test_drift_flags_the_shifted_feature_only() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(ROWS, 3))
    X[-WINDOW:, 1] += 1.5
    rep = drift_report(_seq(X, _labels(rng, ROWS)), window=WINDOW)
    feats = rep["features"]
    assert feats["f1"]["psi"] > rep["threshold"]
    assert feats["f1"]["ks_pvalue"] < 1e-6
    assert feats["f0"]["psi"] < rep["threshold"] and feats["f2"]["psi"] < rep["threshold"]
    assert rep["drifted"] == ["f1"] and rep["drifted_any"]
    assert rep["max_psi"] == pytest.approx(feats["f1"]["psi"])
    assert rep["reference_rows"] == 360 - 9 and rep["recent_rows"] == WINDOW
    assert rep["recent_from"] == str(np.datetime64("2020-01-01", "D") + ROWS - WINDOW)
    assert rep["recent_to"] == str(np.datetime64("2020-01-01", "D") + ROWS - 1)
    assert not rep["label_mix"]["drifted"]
    json.dumps(rep)  # JSON-serialisable as it is


def test_drift_of_label_mix_flagged_only_when_it_moves() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(ROWS, 3))
    y = _labels(rng, ROWS)
    same = drift_report(_seq(X, y), window=WINDOW)["label_mix"]
    assert not same["drifted"] and same["psi"] < 0.25
    assert sum(same["train"].values()) == pytest.approx(1.0)
    y_up = y.copy()
    y_up[-WINDOW - 1:-1] = 2  # the last 60 labelled rows (the very last row is unlabelled)
    rep = drift_report(_seq(X, y_up), window=WINDOW)
    assert rep["label_mix"]["drifted"] and rep["drifted_any"]
    assert rep["label_mix"]["recent"] == {"DOWN": 0.0, "FLAT": 0.0, "UP": 1.0}
    assert rep["features"] == drift_report(_seq(X, y), window=WINDOW)["features"]
    assert label_mix_psi(np.array([0, 1, 2, -1, -2]), np.array([2, 2, 2])) > 1.0


def test_drift_psi_of_identical_distributions_is_near_zero() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=20_000), rng.normal(size=20_000)
    assert 0.0 <= psi(a, b) < 0.05
    assert psi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert psi(a, b + 1.0) > 0.25  # a one-sd shift is significant


def test_drift_psi_noise_floor_of_small_windows() -> None:
    rng = np.random.default_rng(6)
    for bins, n, m in ((10, 3000, 60), (5, 3000, 60), (10, 3000, 250)):
        null = np.mean([psi(rng.normal(size=n), rng.normal(size=m), bins) for _ in range(200)])
        expected = (bins - 1) * (1 / n + 1 / m)
        assert 0.7 * expected < null < 1.4 * expected, (bins, m, null, expected)


def test_drift_constant_column_does_not_crash() -> None:
    c = np.full(500, 3.0)
    assert psi(c, np.full(50, 3.0)) == 0.0
    far = psi(c, np.full(50, 4.0))
    assert np.isfinite(far) and far > 10.0
    assert np.isfinite(psi(c, np.full(50, 2.0))) and psi(c, np.full(50, 2.0)) > 10.0
    rng = np.random.default_rng(3)
    X = rng.normal(size=(ROWS, 3))
    X[:, 2] = 0.0
    rep = drift_report(_seq(X, _labels(rng, ROWS)), window=WINDOW)
    assert rep["features"]["f2"]["psi"] == 0.0 and "f2" not in rep["drifted"]
    X[-WINDOW:, 2] = 1.0  # constant in training, moving now
    rep = drift_report(_seq(X, _labels(rng, ROWS)), window=WINDOW)
    assert rep["drifted"][0] == "f2" and np.isfinite(rep["max_psi"])


def test_drift_rejects_short_windows_and_too_few_rows() -> None:
    rng = np.random.default_rng(4)
    seq = _seq(rng.normal(size=(ROWS, 3)), _labels(rng, ROWS))
    with pytest.raises(ValueError, match="window must be at least"):
        drift_report(seq, window=5)
    with pytest.raises(ValueError, match="overlap the train rows"):
        drift_report(seq, window=300)
    with pytest.raises(ValueError, match="too few train rows"):
        drift_report(seq, window=400)
    unlabelled = _seq(rng.normal(size=(ROWS, 3)), np.full(ROWS, -1))
    with pytest.raises(ValueError, match="labelled rows"):
        drift_report(unlabelled, window=WINDOW)


def test_drift_report_is_fast_on_a_full_symbol() -> None:
    rng = np.random.default_rng(5)
    n = 5000
    X = rng.normal(size=(n, 69))
    b = Bounds(29, 3000, 3010, 4000, 4010, n - 1)
    seq = _seq(X, rng.choice(3, size=n).astype(np.int8), b)
    drift_report(seq)  # warm-up (imports, caches)
    start = time.perf_counter()
    rep = drift_report(seq)
    assert time.perf_counter() - start < 1.0  # ~0.05 s; generous for a loaded machine
    assert len(rep["features"]) == 69
