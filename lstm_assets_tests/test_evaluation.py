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


# ---- the prior baseline: expected figures, no random draw ------------------------------------

def _enumerate_prior(y: np.ndarray, prior: np.ndarray) -> dict[str, float]:
    """Exact expectations over every possible prediction sequence (3**n of them), each weighted
    by its probability under independent draws from ``prior``; metrics by scikit-learn."""
    import itertools
    import warnings

    from sklearn.metrics import balanced_accuracy_score, f1_score

    out = {"accuracy": 0.0, "balanced_accuracy": 0.0, "macro_f1": 0.0}
    for pred in itertools.product(range(3), repeat=len(y)):
        w = float(np.prod(prior[list(pred)]))
        if w == 0:
            continue
        p = np.asarray(pred)
        out["accuracy"] += w * float(np.mean(p == y))
        with warnings.catch_warnings():  # a class absent from y: sklearn warns, then skips it
            warnings.simplefilter("ignore")
            out["balanced_accuracy"] += w * float(balanced_accuracy_score(y, p))
        out["macro_f1"] += w * float(f1_score(y, p, labels=[0, 1, 2], average="macro",
                                              zero_division=0))
    return out


@pytest.mark.parametrize("y", [[0, 0, 1, 2, 2, 2], [2, 0, 0, 2, 2, 0, 2]],
                         ids=["all classes", "a class absent"])
def test_prior_baseline_figures_are_exact_expectations(y: list[int]) -> None:
    """Accuracy is sum_c p_c q_c exactly; balanced accuracy and macro-F1 equal their expectation
    over every possible draw (enumerated), with no draw made."""
    from lstm_assets.core.evaluate import prior_expected_metrics

    yy = np.asarray(y)
    prior = np.array([0.5, 0.3, 0.2])
    got = prior_expected_metrics(yy, prior)
    q = np.bincount(yy, minlength=3) / len(yy)
    assert got["accuracy"] == pytest.approx(float((prior * q).sum()), abs=1e-15)
    assert got["kind"] == "expected"
    want = _enumerate_prior(yy, prior)
    for k in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert got[k] == pytest.approx(want[k], abs=1e-12), k
    p = np.clip(prior, 1e-7, 1)
    assert got["log_loss"] == pytest.approx(float(-np.mean(np.log(p[yy]))))
    assert got["predicted_share"] == prior.tolist()


def test_prior_baseline_is_identical_across_reruns_and_seeds(seq_frame, tiny: Settings) -> None:
    seq, frame = seq_frame
    te = seq.end_rows("test")
    proba = np.random.default_rng(2).dirichlet([1, 1, 1], size=len(te))
    a = evaluate(seq, frame, proba, tiny)["baselines"]
    b = evaluate(seq, frame, proba, tiny)["baselines"]
    c = evaluate(seq, frame, proba, tiny.replace(seed=tiny.seed + 17))["baselines"]
    assert a == b  # the same seed: every figure and interval identical
    for k in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "per_class",
              "confusion_matrix", "predicted_share"):
        assert a["prior"][k] == c["prior"][k], k  # another seed moves only the intervals
        assert a["logreg_last"][k] == c["logreg_last"][k], k
    y = seq.y[te].astype(int)
    p = np.bincount(seq.y[seq.end_rows("train")].astype(int), minlength=3)
    p = p / p.sum()
    assert a["prior"]["accuracy"] == pytest.approx(
        float((p * np.bincount(y, minlength=3) / len(y)).sum()), abs=1e-15)


def test_prior_baseline_interval_contains_the_point(seq_frame, tiny: Settings) -> None:
    from lstm_assets.core.evaluate import prior_bootstrap, prior_expected_metrics

    seq, frame = seq_frame
    te = seq.end_rows("test")
    proba = np.random.default_rng(3).dirichlet([1, 1, 1], size=len(te))
    d = evaluate(seq, frame, proba, tiny)["baselines"]["prior"]
    for k in ("accuracy", "macro_f1"):
        lo, hi = d[f"{k}_ci"]
        assert lo <= d[k] <= hi, k
    y = np.random.default_rng(4).integers(0, 3, size=200)
    for prior in (np.full(3, 1 / 3), np.array([0.6, 0.1, 0.3])):  # degenerate, and not
        point = prior_expected_metrics(y, prior)
        ci = prior_bootstrap(y, prior, 300, seed=5, point=point)
        assert ci == prior_bootstrap(y, prior, 300, seed=5, point=point)  # deterministic
        for k in ("accuracy", "macro_f1"):
            assert ci[f"{k}_ci"][0] <= point[k] <= ci[f"{k}_ci"][1], (prior, k)


def _handmade_seq(seed: int = 0):
    """Train labels 50/30/20% DOWN/FLAT/UP, test labels only FLAT and UP: the majority
    baseline scores 0, the prior's expectation 0.3 * 0.5 + 0.2 * 0.5 = 0.25."""
    from lstm_assets.core.sequences import SequenceSet
    from lstm_assets.core.splits import Bounds

    rng = np.random.default_rng(seed)
    ytr = np.repeat([0, 1, 2], [100, 60, 40])
    rng.shuffle(ytr)
    yte = np.repeat([1, 2], [50, 50])
    rng.shuffle(yte)
    y = np.concatenate([ytr, np.zeros(50, dtype=int), yte]).astype(np.int8)
    n = len(y)
    dates = np.arange(np.datetime64("2001-01-01"), np.datetime64("2001-01-01") + n)
    seq = SequenceSet(X=rng.normal(size=(n, 4)).astype(np.float32), y=y, dates=dates,
                      bounds=Bounds(0, 200, 200, 250, 250, 350), features=list("abcd"),
                      mean=np.zeros(4), scale=np.ones(4), lookback=1)
    frame = pd.DataFrame({"date": pd.to_datetime(dates),
                          "close": 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))})
    return seq, frame


def test_prior_baseline_best_baseline_is_never_a_random_draw(tiny: Settings) -> None:
    """The best baseline is chosen among deterministic or expected figures: here the prior's
    expectation wins, and the edge is the model minus that expectation, whatever the seed."""
    from lstm_assets.core.evaluate import COMPARABLE, best_baseline

    seq, frame = _handmade_seq()
    te = seq.end_rows("test")
    proba = np.random.default_rng(6).dirichlet([1, 1, 1], size=len(te))
    model_acc = float(np.mean(proba.argmax(1) == seq.y[te]))
    for seed in (0, 1, 99):
        rep = evaluate(seq, frame, proba, tiny.replace(seed=seed))
        assert all(d["kind"] in COMPARABLE for d in rep["baselines"].values())
        assert rep["baselines"]["majority"]["accuracy"] == 0.0
        assert rep["baselines"]["prior"]["accuracy"] == pytest.approx(0.25, abs=1e-15)
        assert rep["best_baseline"] == "prior"
        assert rep["edge_over_best_baseline"]["accuracy_diff"] == pytest.approx(
            model_acc - 0.25, abs=1e-12)
    # a figure from a random draw is never the yardstick, however high
    assert best_baseline({"lucky": {"kind": "random", "accuracy": 0.9},
                          "prior": {"kind": "expected", "accuracy": 0.3},
                          "majority": {"kind": "deterministic", "accuracy": 0.2}}) == "prior"


def test_logreg_baseline_is_deterministic_and_fit_on_train_rows_only() -> None:
    """Changing the validation rows' features and labels changes no test probability (the fit
    sees train rows only), and two fits give the same probabilities (L-BFGS draws nothing)."""
    from lstm_assets.core.evaluate import baselines

    seq, _ = _handmade_seq()
    a = baselines(seq)["logreg_last"]
    assert np.array_equal(a, baselines(seq)["logreg_last"])
    X2, y2 = seq.X.copy(), seq.y.copy()
    X2[200:250] = 50.0  # validation rows: features and labels
    y2[200:250] = 2
    seq.X, seq.y = X2, y2
    assert np.array_equal(a, baselines(seq)["logreg_last"])


def test_bootstrap_metrics_from_counts_equal_sklearn() -> None:
    """Macro-F1 from confusion counts equals scikit-learn's on random resamples, and the
    bootstrap's intervals equal those of per-resample scikit-learn calls."""
    from sklearn.metrics import f1_score

    from lstm_assets.core.evaluate import bootstrap, confusion_counts, macro_f1_from_counts

    rng = np.random.default_rng(7)
    for n, skew in ((50, [1, 1, 1]), (257, [8, 1, 1]), (30, [1, 0.001, 1])):
        y = rng.choice(3, size=n, p=np.asarray(skew) / sum(skew))
        pred = rng.choice(3, size=n)
        idx = block_bootstrap_indices(n, 40, seed=1)
        fast = macro_f1_from_counts(confusion_counts(y[idx], pred[idx]))
        slow = [f1_score(y[i], pred[i], labels=[0, 1, 2], average="macro", zero_division=0)
                for i in idx]
        np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
        cm = confusion_counts(y, pred)
        assert cm.tolist() == [[int(np.sum((y == t) & (pred == p))) for p in range(3)]
                               for t in range(3)]
        other = rng.choice(3, size=n)
        got = bootstrap(y, pred, {"o": (y == other).astype(float)}, 400, seed=2)
        idx = block_bootstrap_indices(n, 400, seed=2)
        f1s = [f1_score(y[i], pred[i], labels=[0, 1, 2], average="macro", zero_division=0)
               for i in idx[:300]]
        np.testing.assert_allclose(got["macro_f1_ci"], np.percentile(f1s, [2.5, 97.5]),
                                   atol=1e-12)
        diff = (y == pred)[idx].mean(1) - (y == other)[idx].mean(1)
        np.testing.assert_allclose(got["edge"]["o"]["ci"], np.percentile(diff, [2.5, 97.5]),
                                   atol=1e-12)
        assert got["edge"]["o"]["p_value"] == float(np.mean(diff <= 0))
