"""The statistics of a pooled model comparison (``lstm_assets.core.research.stats``), checked on
simulated panels whose true values are known."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import balanced_accuracy_score, log_loss

from lstm_assets.core.research.stats import (
    _stationary_long_run_var,
    benjamini_hochberg,
    daily_rank_ic,
    date_block_resamples,
    ic_summary,
    long_short,
    newey_west_se,
    paired_test,
    pooled_classification,
    spa_test,
)


def _panel_dates(n_dates: int, n_names: int) -> np.ndarray:
    """Business dates repeated once per name (date-major), as a pooled prediction table."""
    return np.repeat(pd.bdate_range("2020-01-01", periods=n_dates).values, n_names)


def _bivariate(rng: np.random.Generator, n_dates: int, n_names: int,
               rho: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per date, ``n_names`` i.i.d. pairs (score, return) ~ bivariate normal with corr rho."""
    z1 = rng.standard_normal((n_dates, n_names))
    z2 = rho * z1 + np.sqrt(1.0 - rho**2) * rng.standard_normal((n_dates, n_names))
    return _panel_dates(n_dates, n_names), z1.ravel(), z2.ravel()


# ------------------------------------------------------------------------------ rank IC


def test_rank_ic_known_correlation() -> None:
    rng = np.random.default_rng(1)
    n_dates, n_names = 400, 50
    for rho in (0.1, 0.0):
        dates, score, ret = _bivariate(rng, n_dates, n_names, rho)
        ic = daily_rank_ic(dates, score, ret)
        assert len(ic) == n_dates and ic.index.is_monotonic_increasing
        summary = ic_summary(ic)
        spearman = 6.0 / np.pi * np.arcsin(rho / 2.0)  # population Spearman of a normal pair
        assert summary["mean"] == pytest.approx(spearman, abs=0.02)
        naive_t = ic.mean() / (ic.std(ddof=1) / np.sqrt(len(ic)))
        # independent dates: the Newey-West t is the naive t up to estimation noise
        assert summary["t"] == pytest.approx(naive_t, rel=0.15)
        if rho == 0.0:
            assert abs(summary["t"]) < 3.0
        else:
            assert summary["t"] > 5.0 and summary["ci_low"] > 0.0


def test_rank_ic_matches_scipy_with_ties_and_drops_thin_dates() -> None:
    rng = np.random.default_rng(2)
    dates = np.repeat(np.array(["2021-01-04", "2021-01-05", "2021-01-06", "2021-01-07"]),
                      [12, 12, 3, 6])
    score = rng.integers(0, 4, dates.size).astype(float)  # many ties
    ret = np.round(rng.standard_normal(dates.size), 1)
    ret[1] = np.nan  # dropped pair
    score[-6:] = 1.0  # the last date: all scores tie -> no IC
    ic = daily_rank_ic(dates[::-1], score[::-1], ret[::-1], min_names=5)  # order-free
    assert list(ic.index) == ["2021-01-04", "2021-01-05"]  # 3 names < 5; zero variance
    for day in ic.index:
        m = (dates == day) & np.isfinite(ret)
        assert ic[day] == pytest.approx(stats.spearmanr(score[m], ret[m]).statistic, abs=1e-12)


def test_rank_ic_newey_west_overlap() -> None:
    rng = np.random.default_rng(3)
    n_dates, n_names, h = 600, 50, 5
    signal = rng.standard_normal(n_names)  # a persistent score per name
    daily = 0.05 * signal + rng.standard_normal((n_dates + h, n_names))  # i.i.d. over dates
    score = np.tile(signal, n_dates)
    dates = _panel_dates(n_dates, n_names)

    ic1 = daily_rank_ic(dates, score, daily[:n_dates].ravel())
    se1, lags1 = newey_west_se(ic1.to_numpy())
    naive1 = ic1.std(ddof=1) / np.sqrt(len(ic1))
    assert lags1 == 5  # floor(4 * 6 ** (2/9))
    assert se1 / naive1 == pytest.approx(1.0, abs=0.2)

    fwd = sum(daily[k:n_dates + k] for k in range(h))  # overlapping 5-day forward returns
    ic5 = daily_rank_ic(dates, score, fwd.ravel())
    v5 = ic5.to_numpy()
    assert np.corrcoef(v5[1:], v5[:-1])[0, 1] > 0.5  # overlap -> serially correlated ICs
    summary = ic_summary(ic5, horizon=h)
    naive5 = ic5.std(ddof=1) / np.sqrt(len(ic5))
    assert summary["nw_lags"] >= h - 1
    assert summary["se"] > 1.4 * naive5
    # the lag floor from the horizon: a long horizon forces more lags than the default rule
    assert ic_summary(ic5, horizon=30)["nw_lags"] == 29


def test_newey_west_se_hand_computed() -> None:
    x = np.array([1.0, 2.0, 0.0, 3.0, 1.0, np.nan])
    se, lags = newey_west_se(x, lags=1)
    u = x[:5] - x[:5].mean()
    var = (u @ u + 2 * 0.5 * (u[1:] @ u[:-1])) / 5
    assert lags == 1 and se == pytest.approx(np.sqrt(var / 5), rel=1e-12)
    se0, _ = newey_west_se(x, lags=0)
    assert se0 == pytest.approx(np.std(x[:5]) / np.sqrt(5), rel=1e-12)


def _newey_west_reference(a: np.ndarray, lags: int) -> float:
    """The Bartlett-kernel HAC se of the mean, written out (no small-sample correction)."""
    n = a.size
    u = a - a.mean()
    var = u @ u / n
    for j in range(1, lags + 1):
        var += 2.0 * (1.0 - j / (lags + 1.0)) * (u[j:] @ u[:-j]) / n
    return float(np.sqrt(var / n))


def test_newey_west_se_matches_formula_on_ar1() -> None:
    rng = np.random.default_rng(10)
    n = 700
    e = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = e[0]
    for t in range(1, n):  # AR(1), phi = 0.6: the autocovariances matter
        x[t] = 0.6 * x[t - 1] + e[t]
    default = int(np.floor(4 * (n / 100) ** (2 / 9)))
    for lags, used in ((None, default), (0, 0), (3, 3), (60, 60), (10**6, n - 1)):
        se, n_lags = newey_west_se(x, lags)
        assert n_lags == used
        assert se == pytest.approx(_newey_west_reference(x, used), rel=1e-12, abs=0)
    with_gaps = np.r_[x[:300], np.nan, x[300:], np.inf]  # non-finite values are dropped
    assert newey_west_se(with_gaps, 5)[0] == pytest.approx(_newey_west_reference(x, 5),
                                                           rel=1e-12, abs=0)
    se_short, lags_short = newey_west_se(np.array([1.0, np.nan]))
    assert np.isnan(se_short) and lags_short == 0
    assert newey_west_se(np.full(50, 0.3), 2)[0] == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError):
        newey_west_se(x, -1)


def test_min_detectable_ic() -> None:
    rng = np.random.default_rng(4)
    summary = ic_summary(rng.normal(0.01, 0.1, 500))
    assert summary["min_detectable"] == pytest.approx((1.96 + 0.8416) * summary["se"], rel=1e-3)
    z = stats.norm.ppf(0.975)
    assert summary["ci_high"] - summary["mean"] == pytest.approx(z * summary["se"], rel=1e-12)
    assert summary["p"] == pytest.approx(2 * stats.norm.sf(abs(summary["t"])), rel=1e-12)
    # a more demanding design (90% power, 1% size) needs a larger true IC
    strict = ic_summary(rng.normal(0.01, 0.1, 500), alpha=0.01, power=0.9)
    assert strict["min_detectable"] / strict["se"] == pytest.approx(
        stats.norm.ppf(0.995) + stats.norm.ppf(0.9), rel=1e-12)


# ------------------------------------------------------------------------------ resampling


def test_date_block_resamples_are_circular_blocks() -> None:
    n, block = 23, 5
    idx = date_block_resamples(n, 400, block, seed=0)
    assert idx.shape == (400, n) and idx.min() >= 0 and idx.max() < n
    step = (idx[:, 1:] - idx[:, :-1]) % n
    inside = (np.arange(1, n) % block) != 0  # positions that continue a block
    assert np.all(step[:, inside] == 1)
    counts = np.bincount(idx.ravel(), minlength=n)
    assert counts.min() > 0.8 * counts.mean()  # every date equally likely (wrap-around)
    assert np.array_equal(idx, date_block_resamples(n, 400, block, seed=0))
    assert not np.array_equal(idx, date_block_resamples(n, 400, block, seed=1))
    # a block longer than the series: each resample is one rotation of all dates
    long_block = date_block_resamples(4, 50, 10, seed=0)
    assert all(np.array_equal(np.roll(r, r[0]), np.arange(4)) for r in long_block)
    with pytest.raises(ValueError):
        date_block_resamples(n, 10, 0, seed=0)


def test_paired_test_false_positive_rate() -> None:
    rng = np.random.default_rng(5)
    n_series, n_dates = 300, 250
    rejected = 0
    for i in range(n_series):
        ic_a = 0.02 + 0.1 * rng.standard_normal(n_dates)
        ic_b = 0.02 + 0.1 * rng.standard_normal(n_dates)  # same distribution, own noise
        rejected += paired_test(ic_a - ic_b, n_resamples=300, seed=i)["p"] < 0.05
    assert 0.02 <= rejected / n_series <= 0.09

    ic_a = 0.06 + 0.1 * rng.standard_normal(n_dates)
    ic_b = 0.02 + 0.1 * rng.standard_normal(n_dates)
    real = paired_test(ic_a - ic_b)
    assert real["p"] < 0.01
    assert 0.0 < real["low"] < real["mean"] < real["high"]
    assert real["n_dates"] == n_dates


# ------------------------------------------------------------------------------ classification


def _classified_panel(rng: np.random.Generator, n_dates: int, n_names: int,
                      day_effect: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions right with probability Phi(day_effect * u_date): with day_effect > 0 a
    date's predictions are right or wrong together (one market move), with 0 independently."""
    n = n_dates * n_names
    y = rng.integers(0, 3, n)
    u = np.repeat(rng.standard_normal(n_dates), n_names)
    right = rng.random(n) < stats.norm.cdf(day_effect * u)
    pred = np.where(right, y, (y + rng.integers(1, 3, n)) % 3)
    logits = rng.normal(0.0, 0.5, (n, 3))
    logits[np.arange(n), pred] += 2.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return _panel_dates(n_dates, n_names), y, proba


def test_pooled_classification_intervals() -> None:
    rng = np.random.default_rng(6)
    widths = {}
    for day_effect in (0.0, 1.0):
        dates, y, proba = _classified_panel(rng, 300, 40, day_effect)
        res = pooled_classification(dates, y, proba, n_resamples=1000, block=5, seed=1)
        pred = proba.argmax(axis=1)
        assert res["n"] == y.size and res["n_dates"] == 300
        assert res["accuracy"]["value"] == pytest.approx(np.mean(pred == y), abs=1e-12)
        assert res["balanced_accuracy"]["value"] == pytest.approx(
            balanced_accuracy_score(y, pred), abs=1e-12)
        assert res["log_loss"]["value"] == pytest.approx(
            log_loss(y, proba, labels=[0, 1, 2]), rel=1e-9)
        for metric in ("accuracy", "balanced_accuracy", "log_loss"):
            assert res[metric]["low"] < res[metric]["value"] < res[metric]["high"]
        acc = res["accuracy"]["value"]
        binomial = 2 * stats.norm.ppf(0.975) * np.sqrt(acc * (1 - acc) / y.size)
        widths[day_effect] = (res["accuracy"]["high"] - res["accuracy"]["low"]) / binomial
    assert widths[0.0] == pytest.approx(1.0, abs=0.25)  # independent: the binomial interval
    assert widths[1.0] > 2.0  # correlated within dates: far wider than the naive interval


def test_pooled_statistics_speed_at_universe_scale() -> None:
    """164 symbols x 1000 dates x 1000 resamples: well under a few seconds (vectorized)."""
    rng = np.random.default_rng(7)
    n_dates, n_names = 1000, 164
    dates, y, proba = _classified_panel(rng, n_dates, n_names, 0.5)
    score = proba[:, 2] - proba[:, 0]
    ret = rng.standard_normal(y.size)
    symbols = np.tile(np.arange(n_names), n_dates)
    import arch.bootstrap  # noqa: F401  # a one-off import (~1-2 s), not the statistics' cost

    start = time.perf_counter()
    pooled_classification(dates, y, proba, n_resamples=1000)
    ic = daily_rank_ic(dates, score, ret)
    long_short(dates, score, ret, symbols=symbols)
    paired_test(ic.to_numpy(), n_resamples=1000)
    spa_test(-ic.to_numpy(), -np.column_stack([ic.to_numpy()] * 20)
             + 0.01 * rng.standard_normal((len(ic), 20)), n_resamples=1000)
    assert time.perf_counter() - start < 6.0


# ------------------------------------------------------------------------------ many tests


def test_benjamini_hochberg() -> None:
    p = np.array([0.01, 0.039, 0.03, 0.005, 0.2, np.nan])
    rejected, adjusted = benjamini_hochberg(p, q=0.05)
    # m = 5 finite tests; sorted 0.005 0.01 0.03 0.039 0.2 -> 5p/rank, then running min
    np.testing.assert_allclose(adjusted, [0.025, 0.04875, 0.04875, 0.025, 0.2, np.nan])
    assert rejected.tolist() == [True, True, True, True, False, False]
    rejected, _ = benjamini_hochberg(p, q=0.04)
    assert rejected.tolist() == [True, False, False, True, False, False]
    # step-up: 0.03 is above its own threshold 3 * 0.049 / 5 but rejected with 0.039 <= 4q/5
    rejected, _ = benjamini_hochberg(p, q=0.049)
    assert rejected.tolist() == [True, True, True, True, False, False]
    with pytest.raises(ValueError):
        benjamini_hochberg(np.array([0.5, 1.5]))


def test_spa_rejects_only_real_edge() -> None:
    rng = np.random.default_rng(8)
    n, n_models = 500, 10
    bench = rng.standard_normal(n)

    worse = rng.standard_normal((n, n_models)) + 0.3
    res = spa_test(bench, worse, n_resamples=500, seed=0)
    assert res["statistic"] == 0.0 and res["p"] == 1.0 and res["n_models"] == n_models

    mu = np.r_[np.full(5, 0.3), np.zeros(4), -0.4]  # worse, as good, one clearly better
    models = rng.standard_normal((n, n_models)) + mu
    res = spa_test(bench, models, n_resamples=1000, seed=0)
    assert res["p"] < 0.01
    assert res["best_model"] == 9
    assert res["best_mean_improvement"] == pytest.approx(0.4, abs=0.15)

    # no model better (four as good, the rest worse): few rejections over many samples
    rejected = 0
    for i in range(40):
        b = rng.standard_normal(250)
        m = rng.standard_normal((250, 8)) + np.r_[np.zeros(4), np.full(4, 0.3)]
        rejected += spa_test(b, m, n_resamples=300, seed=i)["p"] < 0.05
    assert rejected <= 5


def test_spa_is_arch_spa_on_the_finite_dates() -> None:
    from arch.bootstrap import SPA

    rng = np.random.default_rng(11)
    n, n_models = 300, 6
    bench = rng.standard_normal(n)
    models = rng.standard_normal((n, n_models)) + np.r_[0.2, 0.0, 0.0, 0.1, 0.3, -0.15]
    bench[[3, 40]] = np.nan
    models[7, 2] = np.inf
    models[100, 0] = np.nan
    ok = np.isfinite(bench) & np.isfinite(models).all(axis=1)
    res = spa_test(bench, models, n_resamples=400, block=4, seed=3)
    d = bench[ok, None] - models[ok]
    # the long-run variance is arch's own estimator (SPA with nested=False)
    raw = SPA(bench[ok], models[ok], block_size=4, reps=10, seed=3)
    raw.compute()
    omega2 = _stationary_long_run_var(d, 4)
    np.testing.assert_allclose(omega2, raw._loss_diff_var, rtol=1e-10)
    # and the test is arch's SPA on the studentized differences
    z = d / np.sqrt(omega2)
    direct = SPA(np.zeros(len(z)), -z, block_size=4, reps=400, bootstrap="stationary",
                 studentize=True, nested=False, seed=3)
    direct.compute()
    improvement = d.mean(axis=0)
    assert res == pytest.approx({
        "p": direct.pvalues["consistent"],
        "statistic": np.sqrt(len(z)) * z.mean(axis=0).max(),
        "best_model": 5,
        "best_mean_improvement": improvement.max(),
        "n_models": n_models,
        "n_dates": n - 4,
    }, rel=1e-9, abs=0)
    assert res["statistic"] > 0 and 0.0 < res["p"] < 1.0

    # studentized: a small steady edge is found beside noisy models whose larger mean swings
    # would dominate an unscaled maximum (arch's compute alone, same data, same resamples)
    steady = 0.15 + 0.3 * rng.standard_normal(n)  # t about 8
    noisy = 8.0 * rng.standard_normal((n, 5))
    mix = np.column_stack([bench - steady, bench[:, None] - noisy])[ok]
    assert spa_test(bench[ok], mix, n_resamples=400, block=4, seed=3)["p"] < 0.01
    unscaled = SPA(bench[ok], mix, block_size=4, reps=400, seed=3)
    unscaled.compute()
    assert unscaled.pvalues["consistent"] > 0.05

    # no model better even in the sample: arch's share of T* > T is not 1, ours is
    worse = rng.standard_normal((n, n_models)) + 0.3
    direct = SPA(bench[ok], worse[ok], block_size=4, reps=400, seed=3)
    direct.compute()
    assert direct.pvalues["consistent"] < 1.0
    res = spa_test(bench, worse, n_resamples=400, block=4, seed=3)
    assert res["statistic"] == 0.0 and res["p"] == 1.0 and res["best_mean_improvement"] < 0

    # a model with the benchmark's own losses (d = 0) adds a 0 to the bootstrap maximum, which
    # never exceeds a positive T: the same p; too few dates or no model: errors
    with_copy = np.column_stack([models, bench])
    assert spa_test(bench, with_copy, n_resamples=400, block=4, seed=3)["p"] == (
        spa_test(bench, models, n_resamples=400, block=4, seed=3)["p"])
    with pytest.raises(ValueError):
        spa_test(np.array([1.0, np.nan, 2.0, 0.5]),  # two of the four dates have a NaN
                 np.array([[1.0], [2.0], [np.nan], [0.3]]))
    with pytest.raises(ValueError):
        spa_test(bench, np.empty((n, 0)))


def test_stats_import_does_not_load_statsmodels_or_arch() -> None:
    code = ("import sys, lstm_assets.core.research.stats; "
            "print('statsmodels' in sys.modules, 'arch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


# ------------------------------------------------------------------------------ portfolio


def test_long_short_costs() -> None:
    rng = np.random.default_rng(9)
    n_dates, n_names = 120, 20
    dates = _panel_dates(n_dates, n_names)
    symbols = np.tile(np.array([f"S{i:02d}" for i in range(n_names)]), n_dates)
    ret = 0.01 * rng.standard_normal(dates.size)

    res = long_short(dates, ret, ret, quantile=0.2, cost_bps=10.0, symbols=symbols)
    s = res["series"]
    assert len(s) == n_dates and (s["gross"] > 0).all()  # a perfect score
    first = np.sort(ret[:n_names])
    assert s["gross"].iloc[0] == pytest.approx(first[-4:].mean() - first[:4].mean())
    np.testing.assert_allclose(s["net"], s["gross"] - s["turnover"] * 2 * 10.0 / 1e4)
    np.testing.assert_allclose(s["cum_net"], np.cumsum(s["net"]))
    assert s["turnover"].iloc[0] == 1.0 and s["turnover"].between(0, 1).all()
    assert s["turnover"].iloc[1:].mean() < 1.0  # random books share some names
    assert res["mean_net"] < res["mean_gross"] and res["t_net"] > 5
    assert res["annualized_net"] == pytest.approx(252 * res["mean_net"])

    free = long_short(dates, ret, ret, quantile=0.2, cost_bps=0.0, symbols=symbols)
    np.testing.assert_allclose(free["series"]["net"], free["series"]["gross"])
    no_symbols = long_short(dates, ret, ret, quantile=0.2, cost_bps=10.0)
    assert (no_symbols["series"]["turnover"] == 1.0).all()

    # a score that never changes keeps its books: no turnover, no cost after the first date
    fixed = np.tile(np.arange(n_names, dtype=float), n_dates)
    held = long_short(dates, fixed, ret, symbols=symbols)["series"]
    assert (held["turnover"].iloc[1:] == 0.0).all()
    np.testing.assert_allclose(held["net"].iloc[1:], held["gross"].iloc[1:])

    # horizon h: the spread / h, and each book compared with the one h dates before
    h2 = long_short(dates, fixed, ret, horizon=2, symbols=symbols)["series"]
    np.testing.assert_allclose(h2["gross"], held["gross"] / 2)
    assert h2["turnover"].tolist()[:3] == [1.0, 1.0, 0.0]
    np.testing.assert_allclose(h2["net"], h2["gross"] - h2["turnover"] * 2 * 10.0 / 1e4 / 2)
