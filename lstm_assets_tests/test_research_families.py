"""The research model families: shapes and the group lasso's target, training on the one loop,
the pooled net's symbol embedding, the tree baseline and the price factors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstm_assets.core.model import LSTMClassifier
from lstm_assets.core.research.families import (
    DEEP_FAMILIES,
    FACTORS,
    TREE_PATIENCE,
    ALSTMClassifier,
    GRUClassifier,
    NetFactory,
    PooledNet,
    ensemble_proba,
    factor_scores,
    fit_trees,
    make_net_factory,
    predict_trees,
    predict_windows,
    tree_features,
)
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.settings import Settings
from lstm_assets.core.splits import Bounds
from lstm_assets.core.train import train_models

SMALL = Settings(lookback=5, hidden_size=16, num_layers=1, dropout=0.0, max_epochs=6,
                 batch_size=32, learning_rate=1e-2, input_group_lasso=0.01, device="cpu",
                 num_threads=1)


def _seq(X: np.ndarray, y: np.ndarray, lookback: int) -> SequenceSet:
    """A sequence set over ``X`` split 60/20/20 by row, every row labelled."""
    n = len(y)
    first = lookback - 1
    a = first + int((n - first) * 0.6)
    b = a + int((n - first) * 0.2)
    width = X.shape[1]
    return SequenceSet(X=X.astype(np.float32), y=y.astype(np.int8),
                       dates=np.arange(n).astype("datetime64[D]"),
                       bounds=Bounds(first, a, a, b, b, n),
                       features=[f"f{i}" for i in range(width)],
                       mean=np.zeros(width), scale=np.ones(width), lookback=lookback)


def _test_accuracy(make_net: NetFactory, seq: SequenceSet, settings: Settings,
                   state: dict[str, torch.Tensor]) -> float:
    net = make_net(seq.X.shape[1], settings)
    net.load_state_dict(state)
    rows = seq.end_rows("test")
    proba = predict_windows(net, seq.X, rows, seq.lookback, batch=64)
    assert proba.shape == (len(rows), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    return float(np.mean(proba.argmax(1) == seq.y[rows]))


@torch.no_grad()
def test_family_nets_shapes_and_lasso_key() -> None:
    """Every family, per symbol and pooled (with and without an embedding), maps windows to 3
    logits; its input weight's columns are exactly the real features: zeroing a column makes
    the output blind to that feature, and the pooled nets' weights never include the id."""
    torch.manual_seed(0)
    n_real, steps, batch = 5, 7, 6
    x = torch.randn(batch, steps, n_real)
    assert type(make_net_factory("lstm")(n_real, SMALL)) is LSTMClassifier
    assert isinstance(make_net_factory("gru")(n_real, SMALL), GRUClassifier)
    assert isinstance(make_net_factory("alstm")(n_real, SMALL), ALSTMClassifier)
    ids = torch.tensor([0, 1, 2, 0, 1, 2], dtype=torch.float32)
    x_pooled = torch.cat([x, ids[:, None, None].expand(batch, steps, 1)], dim=2)
    for family in DEEP_FAMILIES:
        cases = [(make_net_factory(family), x, 0)]
        cases += [(make_net_factory(family, n_symbols=3, emb_dim=e), x_pooled, e)
                  for e in (0, 4)]
        for make_net, xb, emb in cases:
            net = make_net(xb.shape[2], SMALL).eval()
            assert net(xb).shape == (batch, 3), (family, emb)
            w = net.get_parameter(net.input_weight_key)
            assert w.shape[1] == n_real, (family, net.input_weight_key)
            w[:, 0] = 0.0
            moved = xb.clone()
            moved[..., 0] += 3.0
            torch.testing.assert_close(net(moved), net(xb))
            moved[..., 1] += 3.0  # a feature whose column is not zero does count
            assert not torch.allclose(net(moved), net(xb))
            if isinstance(net, PooledNet):
                other = xb.clone()
                other[..., -1] = (other[..., -1] + 1) % 3
                assert torch.allclose(net(other), net(xb)) == (emb == 0), (family, emb)
    with pytest.raises(ValueError, match="unknown family"):
        make_net_factory("tcn")
    with pytest.raises(ValueError, match="pooled"):
        make_net_factory("gru", emb_dim=2)


def _sign_two_steps_back(n: int, seed: int) -> SequenceSet:
    """3 noise features; the class is UP or DOWN by the sign of feature 0 two rows earlier."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)).astype(np.float32)
    y = np.zeros(n, dtype=np.int8)
    y[2:] = np.where(X[:-2, 0] > 0, 2, 0)
    return _seq(X, y, SMALL.lookback)


def test_family_trains_on_the_one_loop() -> None:
    """GRU and ALSTM learn a planted pattern (the class is the sign of feature 0 two steps
    before the window's end) through ``train_models``, and the same seed gives the same
    weights."""
    seq = _sign_two_steps_back(1200, seed=3)
    for family in ("gru", "alstm"):
        make_net = make_net_factory(family)
        first = train_models([seq], SMALL, make_net=make_net)[0]
        again = train_models([seq], SMALL, make_net=make_net)[0]
        assert first.state.keys() == again.state.keys()
        for k, v in first.state.items():
            assert torch.equal(v, again.state[k]), (family, k)
        assert first.features_used >= 1
        acc = _test_accuracy(make_net, seq, SMALL, first.state)
        assert acc > 0.85, (family, acc)


def test_family_val_score_chooses_the_epoch() -> None:
    """With ``val_score`` the loop keeps the epoch of the highest score (not the lowest
    validation loss), stops when the score stops improving, and records the score; stacked
    training refuses it."""
    seq = _sign_two_steps_back(800, seed=4)
    make_net = make_net_factory("gru")
    # a score that peaks at the third call whatever the network does: epoch 3 is kept
    calls: list[int] = []

    def score(net: torch.nn.Module) -> float:
        calls.append(len(calls))
        return -abs(len(calls) - 3)

    settings = SMALL.replace(max_epochs=12, early_stop_patience=4)
    res = train_models([seq], settings, make_net=make_net, val_score=score)[0]
    assert res.best_epoch == 3 and res.stopped_early and res.epochs_run == 7
    assert [r["val_score"] for r in res.history] == [-2, -1, 0, -1, -2, -3, -4]
    # the state kept is epoch 3's: the last of a run cut after 3 always-improving epochs
    rising = iter(range(100))
    cut = train_models([seq], settings.replace(max_epochs=3), make_net=make_net,
                       val_score=lambda net: float(next(rising)))[0]
    assert cut.best_epoch == 3
    for k, v in cut.state.items():
        assert torch.equal(v, res.state[k]), k
    with pytest.raises(ValueError, match="val_score"):
        train_models([seq, seq], SMALL, stacked=True, val_score=score)


def test_pooled_symbol_embedding_uses_id() -> None:
    """The class is the sign of feature 0 for even symbols and its opposite for odd ones: with
    the symbol embedding the pooled net learns it; without, it cannot tell the symbols apart
    and stays near chance."""
    rng = np.random.default_rng(5)
    n, n_symbols, block = 1600, 4, 40
    real = rng.standard_normal((n, 2)).astype(np.float32)
    ids = (np.arange(n) // block) % n_symbols
    flip = np.where(ids % 2 == 0, 1.0, -1.0)
    y = np.where(real[:, 0] * flip > 0, 2, 0).astype(np.int8)
    X = np.concatenate([real, ids[:, None].astype(np.float32)], axis=1)
    settings = SMALL.replace(lookback=3, max_epochs=10)
    seq = _seq(X, y, settings.lookback)
    accuracy = {}
    for emb in (4, 0):
        make_net = make_net_factory("gru", n_symbols=n_symbols, emb_dim=emb)
        res = train_models([seq], settings, make_net=make_net)[0]
        assert res.state[f"body.{GRUClassifier.input_weight_key}"].shape[1] == 2
        accuracy[emb] = _test_accuracy(make_net, seq, settings, res.state)
    assert accuracy[4] > 0.85, accuracy
    assert accuracy[0] < 0.65, accuracy


def test_family_trees_and_factors() -> None:
    """Tree features are the end row's and earlier rows' features; the trees learn a planted
    pattern, pick their size on the validation rows and always give 3 columns; the factors
    match hand computations and never look ahead; an ensemble is the mean."""
    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    feats = tree_features(X, np.array([5, 10]))  # the last week: rows t .. t-4
    assert feats.shape == (2, 10)
    np.testing.assert_array_equal(feats[0], np.concatenate([X[5], X[4], X[3], X[2], X[1]]))
    np.testing.assert_array_equal(feats[1], np.concatenate([X[10], X[9], X[8], X[7], X[6]]))
    np.testing.assert_array_equal(tree_features(X, np.array([5]), (0, 4))[0],
                                  np.concatenate([X[5], X[1]]))
    with pytest.raises(ValueError):
        tree_features(X, np.array([3]))

    rng = np.random.default_rng(7)
    Z = rng.standard_normal((1000, 4)).astype(np.float32)
    clean = np.digitize(Z[:, 0] + 0.5 * Z[:, 1], [-0.5, 0.5])  # 0/1/2
    y = np.where(rng.random(1000) < 0.2, rng.integers(0, 3, 1000), clean)  # 20% noise
    tr, va, te = slice(0, 600), slice(600, 800), slice(800, 1000)
    model = fit_trees(Z[tr], y[tr], Z[va], y[va], seed=0, max_iter=150)
    # noisy labels: the validation loss turns before the end, and the growing stops early
    grown = len(model.evals_result_["valid_0"]["multi_logloss"])
    assert 1 <= model.best_iteration_ == grown - TREE_PATIENCE < 150 - TREE_PATIENCE
    proba = predict_trees(model, Z[te])
    assert proba.shape == (200, 3)
    assert np.mean(proba.argmax(1) == clean[te]) > 0.8
    # the prediction is the model cut at its best round, and the same seed gives the same model
    cut = model.booster_.predict(Z[te], num_iteration=model.best_iteration_)
    np.testing.assert_allclose(proba, cut, atol=1e-12)
    again = fit_trees(Z[tr], y[tr], Z[va], y[va], seed=0, max_iter=150)
    np.testing.assert_array_equal(predict_trees(again, Z[te]), proba)
    weighted = fit_trees(Z[tr], y[tr], Z[va], y[va], seed=0, max_iter=150, balanced=True)
    assert np.mean(predict_trees(weighted, Z[te]).argmax(1) == clean[te]) > 0.8
    # a given validation score picks the round instead of the log loss: its first maximum
    scores: list[float] = []

    def val_accuracy(p: np.ndarray, keep: np.ndarray) -> float:
        scores.append(float(np.mean(p.argmax(1) == y[va][keep])))
        return scores[-1]

    by_score = fit_trees(Z[tr], y[tr], Z[va], y[va], seed=0, max_iter=150,
                         val_score=val_accuracy)
    assert len(scores) == int(np.argmax(scores)) + 1 + TREE_PATIENCE or len(scores) == 150
    assert by_score.best_iteration_ == int(np.argmax(scores)) + 1
    best_proba = predict_trees(by_score, Z[va])
    assert np.mean(best_proba.argmax(1) == y[va]) == pytest.approx(max(scores))
    no_flat = y[tr] != 1
    kept: list[int] = []
    two = fit_trees(Z[tr][no_flat], y[tr][no_flat], Z[va], y[va], seed=0, max_iter=20,
                    val_score=lambda p, keep: kept.append(int(keep.sum())) or float(p[0, 0]))
    assert set(kept) == {int(np.sum(y[va] != 1))}  # the FLAT validation rows are left out
    p2 = predict_trees(two, Z[te])
    assert p2.shape == (200, 3)
    assert np.all(p2[:, 1] == 0)
    np.testing.assert_allclose(p2.sum(1), 1.0)

    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 40)))
    s = factor_scores(close)
    assert set(s) == set(FACTORS)
    t = 25
    assert s["reversal_1d"][t] == pytest.approx(-np.log(close[t] / close[t - 1]))
    assert s["reversal_5d"][t] == pytest.approx(-np.log(close[t] / close[t - 5]))
    assert s["momentum_20d"][t] == pytest.approx(np.log(close[t] / close[t - 20]))
    rets = np.diff(np.log(close[t - 20:t + 1]))
    assert len(rets) == 20
    assert s["low_vol_20d"][t] == pytest.approx(-np.std(rets, ddof=1))
    for name, first_valid in (("reversal_1d", 1), ("reversal_5d", 5), ("momentum_20d", 20),
                              ("low_vol_20d", 20)):
        assert np.isnan(s[name][:first_valid]).all() and np.isfinite(s[name][first_valid:]).all()
    future = close.copy()
    future[30:] *= 1.5
    future[35] = np.nan
    moved = factor_scores(future)
    for name in FACTORS:
        np.testing.assert_array_equal(moved[name][:30], s[name][:30])
        assert not np.array_equal(moved[name][30:], s[name][30:], equal_nan=True)
    assert np.isnan(moved["reversal_1d"][35:37]).all()
    assert np.isnan(moved["low_vol_20d"][35]) and np.isnan(moved["momentum_20d"][35])

    a, b = np.array([[0.2, 0.3, 0.5]]), np.array([[0.4, 0.5, 0.1]])
    np.testing.assert_allclose(ensemble_proba([a, b]), [[0.3, 0.4, 0.3]])


def test_family_linear_finds_a_weak_linear_pattern_and_picks_its_strength() -> None:
    """The pooled linear baseline: a pattern of correlation ~0.1 over 20,000 rows is found
    (rank correlation of P(UP) - P(DOWN) with the signal), the strength is one of the grid's,
    and the probabilities have 3 columns in class order."""
    from scipy.stats import spearmanr

    from lstm_assets.core.research.families import LINEAR_CS, fit_linear, predict_linear

    rng = np.random.default_rng(3)
    n = 20000
    X = rng.standard_normal((n, 6))
    ret = 0.1 * X[:, 2] + rng.standard_normal(n)
    y = np.digitize(ret, np.quantile(ret, [1 / 3, 2 / 3]))  # DOWN / FLAT / UP
    tr, va, te = slice(0, 12000), slice(12000, 16000), slice(16000, n)
    model = fit_linear(X[tr], y[tr], X[va], y[va], seed=0)
    assert model.C in LINEAR_CS
    p = predict_linear(model, X[te])
    assert p.shape == (4000, 3)
    np.testing.assert_allclose(p.sum(1), 1.0)
    rho = spearmanr(p[:, 2] - p[:, 0], X[te, 2]).statistic
    assert rho > 0.8  # the score follows the one informative input
    assert spearmanr(p[:, 2] - p[:, 0], ret[te]).statistic > 0.05
