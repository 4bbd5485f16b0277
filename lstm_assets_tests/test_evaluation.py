"""Evaluation: metrics, baselines, intervals, trading view, and that only test rows count."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstm_assets.core.clean import clean_frame
from lstm_assets.core.evaluate import block_bootstrap_indices, evaluate, oracle_proba
from lstm_assets.core.ingest import read_raw
from lstm_assets.core.sequences import build_sequences
from lstm_assets.core.settings import Settings


@pytest.fixture
def seq_frame(demo_raw, tiny: Settings):
    raw, _ = read_raw(demo_raw / "SYN001.csv")
    frame, _ = clean_frame(raw, tiny)
    seq, _ = build_sequences(frame, tiny)
    return seq, frame


def test_report_has_baselines_intervals_and_trading_view(seq_frame, tiny: Settings) -> None:
    seq, frame = seq_frame
    te = seq.end_rows("test")
    proba = np.random.default_rng(0).dirichlet([1, 1, 1], size=len(te))
    rep = evaluate(seq, frame, proba, tiny)
    assert set(rep["baselines"]) == {"majority", "prior", "logreg_last"}
    for d in [rep["model"], *rep["baselines"].values()]:
        lo, hi = d["accuracy_ci"]
        assert lo <= d["accuracy"] <= hi
        assert d["macro_f1_ci"][0] <= d["macro_f1_ci"][1]
    assert np.asarray(rep["model"]["confusion_matrix"]).sum() == len(te)
    assert {"cumulative_return", "sharpe", "hit_rate", "turnover"} <= set(
        rep["trading"]["strategy"])
    assert rep["reliability"]["bins"]
    assert rep["best_baseline"] in rep["baselines"]


def test_leakage_report_ignores_train_and_val_rows(seq_frame, tiny: Settings) -> None:
    """Scrambling validation labels, and train/val prices, changes no test-split model metric."""
    seq, frame = seq_frame
    te = seq.end_rows("test")
    proba = np.random.default_rng(1).dirichlet([1, 1, 1], size=len(te))
    rep = evaluate(seq, frame, proba, tiny)
    y2 = seq.y.copy()
    va = seq.end_rows("val")
    y2[va] = (y2[va] + 1) % 3
    seq.y = y2
    frame2 = frame.copy()
    frame2.loc[: seq.bounds.val_end - 1, "close"] *= 1.7
    rep2 = evaluate(seq, frame2, proba, tiny)
    for k in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "confusion_matrix"):
        assert rep["model"][k] == rep2["model"][k]
    assert rep["trading"]["strategy"]["sharpe"] == pytest.approx(
        rep2["trading"]["strategy"]["sharpe"])


def test_block_bootstrap_shapes() -> None:
    idx = block_bootstrap_indices(95, 7, seed=0, block=10)
    assert idx.shape == (7, 95) and idx.min() >= 0 and idx.max() < 95


def test_oracle_probabilities_are_exact_gaussian_probabilities() -> None:
    dates = pd.bdate_range("2020-01-01", periods=3)
    frame = pd.DataFrame({"date": dates, "band": [0.01, 0.01, 0.02]})
    truth = pd.DataFrame({"date": dates, "fwd_mean": [0.0, 0.01, -0.02],
                          "fwd_std": [0.01, 0.01, 0.02]})
    p = oracle_proba(frame, truth, dates.to_numpy())
    np.testing.assert_allclose(p.sum(1), 1)
    assert p[0, 0] == pytest.approx(p[0, 2])  # symmetric when the mean is 0
    assert p[1, 2] == pytest.approx(0.5)  # mean exactly on the upper band
    assert p[2, 0] == pytest.approx(0.5)


def test_walk_forward_folds_expand_and_never_overlap(seq_frame, tiny: Settings) -> None:
    from lstm_assets.core.walkforward import fold_bounds, walk_forward

    _, frame = seq_frame
    folds = fold_bounds(len(frame), tiny, 3)
    gap = tiny.effective_gap()
    for a, b in zip(folds, folds[1:], strict=False):
        assert b.train_end > a.train_end  # expanding window
        assert b.test_start >= a.test_end
    for f in folds:
        assert f.train_end - 1 + tiny.horizon < f.val_start  # embargo inside each fold
        assert f.val_end - 1 + tiny.horizon < f.test_start
        assert f.test_start - f.val_end == gap
    res = walk_forward(frame, tiny.replace(max_epochs=1), 2)
    assert len(res["folds"]) == 2
    assert res["pooled"]["confusion_matrix"] and 0 <= res["pooled"]["accuracy"] <= 1


def test_report_explains_the_oracle_and_a_model_above_it(seq_frame, demo_raw,
                                                         tiny: Settings) -> None:
    """On demo data the report says what the oracle is, and a model above the oracle's expected
    accuracy is called luck on a finite test split (never better than the best achievable)."""
    from lstm_assets.core.evaluate import load_truth
    from lstm_assets.core.report import leaderboard_markdown, markdown

    seq, frame = seq_frame
    truth = load_truth(demo_raw.parent / "demo_truth", "SYN001")
    assert truth is not None
    te = seq.end_rows("test")
    dates = seq.dates[te].astype("datetime64[ns]")
    proba = oracle_proba(frame, truth, dates)  # the oracle's own rule as the "model"
    rep = evaluate(seq, frame, proba, tiny, truth=truth)
    o = rep["oracle"]
    assert rep["model"]["accuracy"] == pytest.approx(o["realized_accuracy"])
    text = markdown(rep)
    assert "Oracle: the rule that knows the demo generator's true probabilities" in text
    assert f"its predictions scored {100 * o['realized_accuracy']:.1f}%" in text
    assert "say nothing about real markets" in text  # demo data's trading view
    lucky = "got lucky on a finite test split"
    lo, hi = rep["model"]["accuracy_ci"]
    above = rep["model"]["accuracy"] > o["expected_accuracy"] and lo <= o["expected_accuracy"]
    assert (lucky in text) == above
    # the same report, the model above / below the oracle's expected figure
    for acc, want in ((o["expected_accuracy"] + 0.01, True), (o["expected_accuracy"] - 0.01,
                                                                False)):
        r2 = {**rep, "model": {**rep["model"], "accuracy": acc,
                               "accuracy_ci": [acc - 0.03, acc + 0.03]}}
        assert (lucky in markdown(r2)) == want
    rows = [{"symbol": s, "model_accuracy": a, "best_baseline": "prior", "prior_accuracy": 0.33,
             "edge_vs_best": a - 0.33, "significant_edge": True, "oracle_accuracy": 0.67,
             "sharpe": 1.0} for s, a in (("AAA", 0.69), ("BBB", 0.60))]
    board = leaderboard_markdown({"symbols": 2, "rows": rows, "mean": {},
                                  "significant_wins": 2})
    assert "A model above it (AAA) was lucky" in board
    rows[0]["model_accuracy"] = 0.66
    assert "was lucky" not in leaderboard_markdown({"symbols": 2, "rows": rows, "mean": {},
                                                    "significant_wins": 2})
    # without an oracle (real data) neither note appears
    plain = markdown({k: v for k, v in rep.items() if k != "oracle"})
    assert "Oracle:" not in plain and "real markets" not in plain
