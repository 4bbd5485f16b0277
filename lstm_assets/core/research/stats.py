"""Statistics of a model comparison over a pooled universe of stocks.

A pooled evaluation holds many symbols' test predictions on the same dates. Predictions of one
date are not independent (one market, one news day, one regime), so the unit of resampling here
is always the **date**: every interval and test resamples dates, in blocks of consecutive dates
(which also keeps the serial dependence of overlapping forward returns), never single
predictions. Treating 164 symbols x 1000 dates as 164,000 independent draws would make every
interval several times too narrow.

What is here:

- :func:`daily_rank_ic` / :func:`ic_summary`: the cross-sectional Spearman IC per date and its
  mean with a Newey-West standard error, a t-statistic, an interval and the smallest true mean
  IC the design would detect (so that a null result says what it rules out).
- :func:`long_short`: a top-minus-bottom quantile portfolio with turnover and costs.
- :func:`pooled_classification`: accuracy, balanced accuracy and log loss of all predictions
  pooled, with date-block bootstrap intervals.
- :func:`paired_test`: is family A better than family B on a per-date metric.
- :func:`benjamini_hochberg`: false discovery rate over many such tests.
- :func:`spa_test`: is the best of N models really better than a benchmark, after trying N.

Estimators taken from the libraries the field uses:

- statsmodels: :func:`newey_west_se` is the HAC standard error of ``OLS(x, ones)`` with
  ``cov_type="HAC"`` (Bartlett kernel, no small-sample correction), with the lag rule
  ``floor(4 (n/100)^(2/9))`` of Newey & West (1994) as its default.
- arch: :func:`date_block_resamples` draws its date positions with ``CircularBlockBootstrap``;
  :func:`spa_test` runs ``arch.bootstrap.SPA`` (stationary bootstrap, consistent p-value of
  Hansen 2005) on loss differences it studentizes first (arch's ``compute`` does not).
- scipy: the Benjamini-Hochberg adjustment (``false_discovery_control``) and the normal
  quantiles.

Written here, because no library computes them on a pooled panel at this size:

- The bootstrap statistics. A resample of dates becomes per-date weights (how many times each
  date was drawn), and statistics that are sums over dates become one matrix product for all
  resamples, so 1000 resamples of 164 symbols x 1000 dates take tens of milliseconds. arch's
  ``apply`` would call a Python function per resample on the whole panel. arch's index
  generation itself is a Python loop per resample: about 25 ms for 1000 resamples of 1000
  dates on a 2-core CPU, small beside the statistics.
- :func:`daily_rank_ic`: per-date average ranks of a long (date, symbol) table by one grouped
  rank and ``bincount`` sums, the values of ``scipy.stats.spearmanr`` on each date without a
  Python loop over dates.
- :func:`long_short`: the project's portfolio conventions (quantile books, turnover against the
  book ``h`` dates earlier, costs per rebalance).

statsmodels and arch are imported inside the functions that use them: this module is imported
by every training process (``lifecycle/versions.py``) and on GPU machines that lack arch, and
importing statsmodels or arch costs one to two seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

TRADING_DAYS = 252
N_CLASSES = 3  # DOWN / FLAT / UP, coded 0 / 1 / 2
PROBA_FLOOR = 1e-7

__all__ = [
    "benjamini_hochberg",
    "daily_rank_ic",
    "date_block_resamples",
    "ic_summary",
    "long_short",
    "newey_west_se",
    "paired_test",
    "pooled_classification",
    "spa_test",
]


# ------------------------------------------------------------------------------ helpers


def _date_codes(dates: np.ndarray) -> tuple[np.ndarray, pd.Index]:
    """Integer code per row (0..D-1 in sorted date order) and the sorted unique dates."""
    codes, uniques = pd.factorize(np.asarray(dates), sort=True)
    return codes.astype(np.intp), pd.Index(uniques, name="date")


def _resample_weights(idx: np.ndarray, n_dates: int) -> np.ndarray:
    """(n_resamples, n_dates) float counts: how often each date is drawn in each resample.

    A statistic that is a sum over dates of per-date sums is then ``weights @ per_date``."""
    n_res = idx.shape[0]
    flat = (np.arange(n_res, dtype=np.intp)[:, None] * n_dates + idx).ravel()
    counts = np.bincount(flat, minlength=n_res * n_dates)
    return counts.reshape(n_res, n_dates).astype(float)


def _default_lags(n: int) -> int:
    """Newey & West (1994) rule, as statsmodels' ``cov_hac`` default: floor(4 (n/100)^(2/9))."""
    return int(np.floor(4.0 * (max(n, 0) / 100.0) ** (2.0 / 9.0)))


def _finite(x: np.ndarray | pd.Series) -> np.ndarray:
    """The finite values of ``x`` as a 1-D float array (NaN/inf dropped)."""
    a = np.asarray(x, dtype=float).ravel()
    return a[np.isfinite(a)]


# ------------------------------------------------------------------------------ rank IC


def daily_rank_ic(dates: np.ndarray, score: np.ndarray, ret: np.ndarray,
                  min_names: int = 5) -> pd.Series:
    """The cross-sectional Spearman rank correlation of ``score`` and ``ret`` on each date.

    Rows with a non-finite score or return are left out. Ranks are average ranks within a date
    (ties share their mean rank, as ``scipy.stats.spearmanr``), and the IC is the Pearson
    correlation of the two rank vectors. Dates with fewer than ``min_names`` finite pairs, or
    on which all scores (or all returns) tie, have no IC and are dropped.

    Returns a float Series named ``rank_ic`` indexed by the sorted dates that have one: the
    per-date series that :func:`ic_summary` and :func:`paired_test` work on (one value per date,
    so their resampling is over dates).
    """
    d = np.asarray(dates)
    s = np.asarray(score, dtype=float)
    r = np.asarray(ret, dtype=float)
    if not (d.shape == s.shape == r.shape) or s.ndim != 1:
        raise ValueError("dates, score and ret must be 1-D arrays of one length")
    ok = np.isfinite(s) & np.isfinite(r)
    codes, uniq = _date_codes(d[ok])
    if codes.size == 0:
        return pd.Series([], index=pd.Index([], name="date"), name="rank_ic", dtype=float)
    frame = pd.DataFrame({"s": s[ok], "r": r[ok]})
    ranks = frame.groupby(codes, sort=False).rank(method="average").to_numpy()
    n_d = np.bincount(codes, minlength=len(uniq)).astype(float)
    centre = (n_d[codes] + 1.0) / 2.0  # the mean of average ranks 1..n, ties or not
    a = ranks[:, 0] - centre
    b = ranks[:, 1] - centre
    cov = np.bincount(codes, weights=a * b, minlength=len(uniq))
    var_a = np.bincount(codes, weights=a * a, minlength=len(uniq))
    var_b = np.bincount(codes, weights=b * b, minlength=len(uniq))
    keep = (n_d >= max(min_names, 2)) & (var_a > 0) & (var_b > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ic = cov / np.sqrt(var_a * var_b)
    return pd.Series(ic[keep], index=uniq[keep], name="rank_ic")


def newey_west_se(x: np.ndarray, lags: int | None = None) -> tuple[float, int]:
    """The HAC standard error of the mean of ``x`` (Bartlett kernel) and the lag count used.

    statsmodels' ``OLS(x, ones).fit(cov_type="HAC")`` with ``maxlags = L``, the Bartlett kernel
    and no small-sample correction: ``se = sqrt((g0 + 2 sum_{j=1..L} (1 - j/(L+1)) g_j) / n)``
    with the autocovariances ``g_j = sum_t u_t u_{t-j} / n`` of the demeaned series. Serial
    correlation (overlapping h-day returns, persistent signals) makes the naive ``sd/sqrt(n)``
    too small; this does not. Default ``lags``: ``floor(4 (n/100)^(2/9))`` (Newey & West 1994);
    lags are capped at n-1. Non-finite values are dropped first. Fewer than 2 values give
    ``(nan, 0)``; negative ``lags`` raise ``ValueError``. About 0.3 ms a call for n = 5000.
    """
    a = _finite(x)
    n = a.size
    if n < 2:
        return float("nan"), 0
    n_lags = _default_lags(n) if lags is None else int(lags)
    if n_lags < 0:
        raise ValueError(f"lags must be >= 0, got {lags}")
    n_lags = min(n_lags, n - 1)
    from statsmodels.regression.linear_model import OLS

    fit = OLS(a, np.ones((n, 1))).fit(
        cov_type="HAC",
        cov_kwds={"maxlags": n_lags, "kernel": "bartlett", "use_correction": False})
    return float(fit.bse[0]), n_lags


def ic_summary(ic: pd.Series | np.ndarray, horizon: int = 1, alpha: float = 0.05,
               power: float = 0.8) -> dict[str, float]:
    """Mean daily IC with a Newey-West t-test, an interval and the minimum detectable IC.

    Returns ``mean``, ``sd`` (of the daily ICs), ``icir`` (mean/sd, per date, not annualized),
    ``n_dates``, ``se`` and ``nw_lags`` (Newey-West with ``max(horizon - 1, default rule)``
    lags: h-day forward returns of consecutive dates share h-1 days, so their ICs are serially
    correlated by construction), ``t``, ``p`` (two-sided, normal), ``ci_low`` / ``ci_high``
    (``mean -+ z_{1-alpha/2} se``) and ``min_detectable = (z_{1-alpha/2} + z_{power}) se``: the
    smallest true mean IC this design detects with probability ``power`` in a two-sided test
    of size ``alpha``. A non-significant mean IC thus rules out true ICs above
    ``min_detectable``, and says nothing about smaller ones. Non-finite ICs are dropped.
    """
    a = _finite(ic)
    n = a.size
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))
    z_pow = float(stats.norm.ppf(power))
    if n < 2:
        nan = float("nan")
        return {"mean": float(a.mean()) if n else nan, "sd": nan, "icir": nan,
                "n_dates": n, "se": nan, "nw_lags": 0, "t": nan, "p": nan,
                "ci_low": nan, "ci_high": nan, "min_detectable": nan}
    mean = float(a.mean())
    sd = float(a.std(ddof=1))
    se, lags = newey_west_se(a, max(int(horizon) - 1, _default_lags(n)))
    t = mean / se if se > 0 else float("nan")
    p = float(2.0 * stats.norm.sf(abs(t))) if np.isfinite(t) else float("nan")
    return {
        "mean": mean,
        "sd": sd,
        "icir": mean / sd if sd > 0 else float("nan"),
        "n_dates": n,
        "se": se,
        "nw_lags": lags,
        "t": t,
        "p": p,
        "ci_low": mean - z * se,
        "ci_high": mean + z * se,
        "min_detectable": (z + z_pow) * se,
    }


# ------------------------------------------------------------------------------ portfolio


def _book_turnover(book: np.ndarray, date_pos: np.ndarray, sym: np.ndarray, n_dates: int,
                   n_sym: int, lag: int) -> np.ndarray:
    """Per date, the fraction of ``book`` (a row mask) not held in the book ``lag`` dates
    before; 1 where there is no earlier book (it is bought from cash)."""
    keys = date_pos[book] * n_sym + sym[book]
    prev = (date_pos[book] - lag) * n_sym + sym[book]
    held = np.isin(prev, keys) & (date_pos[book] >= lag)
    size = np.bincount(date_pos[book], minlength=n_dates)
    kept = np.bincount(date_pos[book], weights=held.astype(float), minlength=n_dates)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(size > 0, 1.0 - kept / np.maximum(size, 1), np.nan)


def long_short(dates: np.ndarray, score: np.ndarray, ret: np.ndarray, quantile: float = 0.2,
               cost_bps: float = 10.0, horizon: int = 1,
               symbols: np.ndarray | None = None) -> dict[str, Any]:
    """An equal-weight top-minus-bottom quantile portfolio, rebalanced every date.

    Each date, the ``k = max(1, floor(quantile * n))`` names with the highest score are held
    long and the ``k`` lowest short (ties broken by input order; rows with a non-finite score
    or return are left out; dates with fewer than 2 names are skipped). ``gross`` is the mean
    return of the long book minus that of the short book.

    Turnover: with ``symbols``, the fraction of each book replaced since the previous
    rebalance, averaged over the two books (1 on the first date: bought from cash); without,
    full turnover (1) every date. Costs: ``net = gross - turnover * 2 * cost_bps / 1e4`` (both
    books trade) per rebalance.

    Horizon ``h > 1``: ``ret`` is an h-day forward return, and a daily-rebalanced portfolio is
    approximated by h overlapping sub-portfolios, one formed each date and held h days. Its
    daily return is approximately the mean spread divided by h, so ``gross`` is the spread / h;
    each date only the sub-portfolio formed h dates earlier (1/h of the capital) is rebalanced,
    so ``turnover`` compares a book with the book h dates earlier and the cost is divided by h
    too. For h = 1 both reduce to the plain daily portfolio. This is an approximation (it
    ignores the compounding within the h days), not a simulation.

    Returns ``series`` (DataFrame indexed by date: ``gross``, ``net``, ``turnover``, ``cum_net``
    = the cumulative sum of ``net``) and the floats ``mean_gross``, ``mean_net``, ``t_net``
    (Newey-West, lags ``max(h-1, default rule)``), ``annualized_net`` (mean x 252),
    ``sharpe_net`` (annualized, mean/sd x sqrt(252)), ``mean_turnover``, ``cost_bps`` and
    ``n_dates``.
    """
    if not 0.0 < quantile <= 0.5:
        raise ValueError(f"quantile must be in (0, 0.5], got {quantile}")
    h = int(horizon)
    if h < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    d = np.asarray(dates)
    s = np.asarray(score, dtype=float)
    r = np.asarray(ret, dtype=float)
    ok = np.isfinite(s) & np.isfinite(r)
    codes, uniq = _date_codes(d[ok])
    s, r = s[ok], r[ok]
    n_d = np.bincount(codes, minlength=len(uniq))
    use_date = n_d >= 2
    row_ok = use_date[codes]
    date_pos_of_code = np.cumsum(use_date) - 1  # position among the dates with a portfolio
    codes, s, r = codes[row_ok], s[row_ok], r[row_ok]
    pos = date_pos_of_code[codes]
    dates_used = uniq[use_date]
    n_dates = len(dates_used)
    n_names = n_d[use_date]
    k = np.maximum(1, np.floor(quantile * n_names + 1e-9).astype(int))

    order = np.lexsort((s, pos))  # by date, then score ascending; stable among ties
    start = np.cumsum(n_names) - n_names  # first sorted row of each date
    rank_in_date = np.empty(order.size, dtype=int)
    rank_in_date[order] = np.arange(order.size) - np.repeat(start, n_names)
    short = rank_in_date < k[pos]
    long = rank_in_date >= (n_names - k)[pos]

    mean_long = np.bincount(pos[long], weights=r[long], minlength=n_dates) / k
    mean_short = np.bincount(pos[short], weights=r[short], minlength=n_dates) / k
    gross = (mean_long - mean_short) / h

    if symbols is None:
        turnover = np.ones(n_dates)
    else:
        sym_codes, sym_uniq = pd.factorize(np.asarray(symbols)[ok][row_ok])
        args = (pos, sym_codes.astype(np.intp), n_dates, max(len(sym_uniq), 1), h)
        turnover = (_book_turnover(long, *args) + _book_turnover(short, *args)) / 2.0
    net = gross - turnover * 2.0 * cost_bps / 1e4 / h

    series = pd.DataFrame({"gross": gross, "net": net, "turnover": turnover,
                           "cum_net": np.cumsum(net)}, index=dates_used)
    nan = float("nan")
    if n_dates < 2:
        return {"series": series, "mean_gross": float(gross.mean()) if n_dates else nan,
                "mean_net": float(net.mean()) if n_dates else nan, "t_net": nan,
                "annualized_net": nan, "sharpe_net": nan,
                "mean_turnover": float(turnover.mean()) if n_dates else nan,
                "cost_bps": float(cost_bps), "n_dates": n_dates}
    se, _ = newey_west_se(net, max(h - 1, _default_lags(n_dates)))
    sd = float(net.std(ddof=1))
    mean_net = float(net.mean())
    return {
        "series": series,
        "mean_gross": float(gross.mean()),
        "mean_net": mean_net,
        "t_net": mean_net / se if se > 0 else nan,
        "annualized_net": mean_net * TRADING_DAYS,
        "sharpe_net": mean_net / sd * np.sqrt(TRADING_DAYS) if sd > 0 else nan,
        "mean_turnover": float(turnover.mean()),
        "cost_bps": float(cost_bps),
        "n_dates": n_dates,
    }


# ------------------------------------------------------------------------------ bootstraps


def date_block_resamples(n_dates: int, n_resamples: int, block: int, seed: int) -> np.ndarray:
    """(n_resamples, n_dates) date positions of a circular block bootstrap.

    arch's ``CircularBlockBootstrap(block, arange(n_dates), seed=seed)``, one row per resample:
    each resample strings together ``ceil(n_dates / block)`` blocks of ``block`` consecutive
    date positions, each starting at a uniform random date and wrapping from the last date to
    the first (so every date is equally likely), cut to ``n_dates``. Blocks keep the serial
    dependence of up to ``block`` dates (overlapping returns, slow regimes) that resampling
    single dates would destroy; ``block = 1`` is the i.i.d. bootstrap of dates. A block longer
    than the series is cut to ``n_dates``. The same ``seed`` gives the same positions.
    """
    if n_dates < 1 or n_resamples < 1:
        raise ValueError("n_dates and n_resamples must be >= 1")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    from arch.bootstrap import CircularBlockBootstrap

    boot = CircularBlockBootstrap(int(block), np.arange(n_dates, dtype=np.intp), seed=seed)
    rows = [pos[0] for pos, _ in boot.bootstrap(int(n_resamples))]
    return np.stack(rows).astype(np.intp, copy=False)


def _classification_metrics(cm: np.ndarray, ll_sum: np.ndarray,
                            n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy, balanced accuracy and mean log loss from flattened 3x3 confusion counts
    (``(..., 9)``, true class major), log-loss sums and counts."""
    m = cm.reshape(*cm.shape[:-1], N_CLASSES, N_CLASSES)
    diag = np.diagonal(m, axis1=-2, axis2=-1)
    support = m.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = diag.sum(axis=-1) / n
        recall = np.where(support > 0, diag / support, np.nan)
        present = (support > 0).sum(axis=-1)
        bal = np.nansum(recall, axis=-1) / present
        ll = ll_sum / n
    return acc, bal, ll


def pooled_classification(dates: np.ndarray, y: np.ndarray, proba: np.ndarray,
                          n_resamples: int = 1000, block: int = 5, seed: int = 0,
                          alpha: float = 0.05) -> dict[str, Any]:
    """Accuracy, balanced accuracy and log loss of all predictions pooled, with intervals that
    resample dates.

    ``y`` holds classes 0/1/2, ``proba`` the (n, 3) predicted probabilities; the prediction is
    the arg-max class. Balanced accuracy is the mean recall over the classes present in ``y``
    (as ``sklearn.metrics.balanced_accuracy_score``); log loss is the mean of
    ``-log(clip(p_true, 1e-7, 1))``. Rows with a class outside 0..2 or a non-finite
    probability are left out.

    Intervals: percentile intervals (``alpha/2``, ``1 - alpha/2``) of a circular block
    bootstrap over dates (:func:`date_block_resamples`): each resample draws whole dates, with
    all their symbols, so the correlation of predictions within a date (one market move makes
    most of a day's predictions right or wrong together) widens the interval as it should. The
    per-date 3x3 confusion counts and log-loss sums are made once; a resample's totals are
    per-date counts x how often each date was drawn, one matrix product for all resamples.

    Returns ``{"accuracy": {"value", "low", "high"}, "balanced_accuracy": {...},
    "log_loss": {...}, "n": rows used, "n_dates": dates used}``.
    """
    d = np.asarray(dates)
    yy = np.asarray(y)
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2 or p.shape[1] != N_CLASSES or not (p.shape[0] == yy.shape[0] == d.shape[0]):
        raise ValueError("proba must be (n, 3) with one row per date/y entry")
    ok = np.isin(yy, np.arange(N_CLASSES)) & np.isfinite(p).all(axis=1)
    codes, uniq = _date_codes(d[ok])
    yy = yy[ok].astype(np.intp)
    p = p[ok]
    n_dates = len(uniq)
    nan_block = {"value": float("nan"), "low": float("nan"), "high": float("nan")}
    if n_dates == 0:
        return {"accuracy": dict(nan_block), "balanced_accuracy": dict(nan_block),
                "log_loss": dict(nan_block), "n": 0, "n_dates": 0}
    pred = p.argmax(axis=1)
    cells = N_CLASSES * N_CLASSES
    cm = np.bincount(codes * cells + yy * N_CLASSES + pred, minlength=n_dates * cells)
    cm = cm.reshape(n_dates, cells).astype(float)
    p_true = np.clip(p[np.arange(yy.size), yy], PROBA_FLOOR, 1.0)
    ll = np.bincount(codes, weights=-np.log(p_true), minlength=n_dates)
    n_per = cm.sum(axis=1)

    point = _classification_metrics(cm.sum(axis=0), ll.sum(), n_per.sum())
    w = _resample_weights(date_block_resamples(n_dates, n_resamples, block, seed), n_dates)
    boot = _classification_metrics(w @ cm, w @ ll, w @ n_per)
    out: dict[str, Any] = {}
    for name, value, draws in zip(("accuracy", "balanced_accuracy", "log_loss"), point, boot,
                                  strict=True):
        low, high = np.nanquantile(draws, [alpha / 2.0, 1.0 - alpha / 2.0])
        out[name] = {"value": float(value), "low": float(low), "high": float(high)}
    out["n"] = int(yy.size)
    out["n_dates"] = int(n_dates)
    return out


def paired_test(diff: np.ndarray, n_resamples: int = 2000, block: int = 5, seed: int = 0,
                alpha: float = 0.05) -> dict[str, float]:
    """Is the mean of a per-date difference (metric of family A minus family B) non-zero?

    ``diff`` is one value per date (e.g. the daily IC of A minus the daily IC of B, both on the
    same dates), so the pairing removes the market's common day-to-day swings and the
    resampling is over dates. Non-finite values are dropped.

    Returns ``mean``, ``se`` (the bootstrap standard deviation of the mean), ``low`` /
    ``high`` (percentile interval of the circular block bootstrap of the mean), ``p`` (two-sided:
    the share of resampled means of the centred series, i.e. under the null of zero mean,
    whose absolute value reaches ``|mean|``, as ``(1 + count) / (1 + n_resamples)`` so it is
    never 0) and ``n_dates``.
    """
    a = _finite(diff)
    n = a.size
    nan = float("nan")
    if n < 2:
        return {"mean": float(a.mean()) if n else nan, "se": nan, "low": nan, "high": nan,
                "p": nan, "n_dates": n}
    idx = date_block_resamples(n, n_resamples, block, seed)
    mean = float(a.mean())
    boot = a[idx].mean(axis=1)
    low, high = np.quantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0])
    centred = boot - mean  # the resampled means of a - mean: the null of zero mean
    hits = int(np.count_nonzero(np.abs(centred) >= abs(mean)))
    return {
        "mean": mean,
        "se": float(boot.std(ddof=1)),
        "low": float(low),
        "high": float(high),
        "p": (1.0 + hits) / (1.0 + n_resamples),
        "n_dates": n,
    }


# ------------------------------------------------------------------------------ many tests


def benjamini_hochberg(pvalues: np.ndarray, q: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg false discovery rate control over many tests.

    Returns ``(rejected, adjusted)``: the boolean mask of tests rejected at FDR ``q`` and the
    BH-adjusted p-values (``scipy.stats.false_discovery_control(method="bh")``); a test is
    rejected when its adjusted p-value is <= ``q``, which is the BH step-up rule. NaN p-values
    (tests that could not be run) are never rejected, keep a NaN adjusted value and do not
    count among the m tests.
    """
    p = np.asarray(pvalues, dtype=float)
    finite = np.isfinite(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    adjusted = np.full(p.shape, np.nan)
    if finite.any():
        adjusted[finite] = stats.false_discovery_control(p[finite], method="bh")
    rejected = finite & (np.nan_to_num(adjusted, nan=np.inf) <= q)
    return rejected, adjusted


def _stationary_long_run_var(d: np.ndarray, block: float) -> np.ndarray:
    """Per column of ``d`` (n, N), the long-run variance of ``sqrt(n) * mean`` that the
    stationary bootstrap with mean block ``block`` implies (Hansen 2005; the estimator of
    arch's ``SPA`` with ``nested=False``): ``g_0 + 2 sum_i k_i g_i``, ``k_i = (1 - i/n)
    (1 - 1/block)^i + (i/n)(1 - 1/block)^(n - i)``, the autocovariances ``g_i`` by FFT."""
    n = d.shape[0]
    u = d - d.mean(axis=0)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(u, n=size, axis=0)
    acov = np.fft.irfft(f * np.conj(f), n=size, axis=0)[:n] / n
    i = np.arange(1, n)
    q = 1.0 - 1.0 / block
    kappa = (1.0 - i / n) * q ** i + (i / n) * q ** (n - i)
    return acov[0] + 2.0 * (kappa[:, None] * acov[1:]).sum(axis=0)


def spa_test(losses_bench: np.ndarray, losses_models: np.ndarray, n_resamples: int = 1000,
             block: int = 5, seed: int = 0) -> dict[str, float]:
    """Hansen's (2005) test of superior predictive ability, studentized, consistent p-value.

    ``losses_bench`` is the per-date loss of a benchmark (n_dates,), ``losses_models`` that of
    N models (n_dates, N); lower is better (for an IC, use ``loss = -IC``). Dates on which any
    loss is non-finite are dropped. H0: no model has a lower expected loss than the benchmark.
    After trying N models, the best of them beats the benchmark by luck alone more often than
    a single test's alpha; this p-value accounts for the search over all N.

    With ``d_k = bench - model_k`` (positive: model k better) and ``omega_k`` its long-run
    standard deviation under the stationary bootstrap (:func:`_stationary_long_run_var`), the
    statistic is Hansen's ``T = max(0, max_k sqrt(n) mean(d_k) / omega_k)``: each model's
    improvement in units of its own noise, so a model whose losses swing more does not
    dominate the maximum by its noise alone. Its null distribution and the consistent p-value
    are arch's: ``arch.bootstrap.SPA`` on the studentized differences ``d_k / omega_k``
    (stationary bootstrap over dates, mean block ``block``, ``n_resamples`` resamples,
    ``seed``), whose re-centring ``g(x) = x 1{x >= -sqrt(2 log log n / n)}`` leaves a model
    much worse than the benchmark at its negative mean, so that poor models do not cost the
    test its power. arch's ``SPA.compute`` itself maximizes the unscaled mean differences (its
    ``studentize`` flag, in arch 8.0, only labels its summary), hence the scaling here; on the
    scaled differences arch's own variance estimate is 1 and its threshold is Hansen's. A model
    with ``omega_k = 0`` (identical losses) enters as zeros and adds nothing to the maximum.

    When no model beats the benchmark even in the sample (``T = 0``), ``p`` is 1: arch returns
    the share of ``T*_b > T`` for a negative maximum too, which is not evidence against H0.

    Returns ``p``, ``statistic`` (T), ``best_model`` (index of the model with the largest
    mean improvement over the benchmark), ``best_mean_improvement`` (that mean of ``d_k``, in
    loss units), ``n_models`` and ``n_dates`` (dates used).
    """
    bench = np.asarray(losses_bench, dtype=float).ravel()
    models = np.asarray(losses_models, dtype=float)
    if models.ndim == 1:
        models = models[:, None]
    if models.ndim != 2 or models.shape[0] != bench.size:
        raise ValueError("losses_models must be (n_dates, N) with n_dates = len(losses_bench)")
    ok = np.isfinite(bench) & np.isfinite(models).all(axis=1)
    d = bench[ok, None] - models[ok]
    n, n_models = d.shape
    if n < 3 or n_models == 0:
        raise ValueError(f"spa_test needs at least 3 dates and 1 model, got {n} and {n_models}")
    from arch.bootstrap import SPA

    omega = np.sqrt(np.maximum(_stationary_long_run_var(d, block), 0.0))
    live = omega > 1e-12 * np.maximum(np.abs(d).max(axis=0), 1e-300)
    z = np.where(live, d / np.where(live, omega, 1.0), 0.0)
    stat = max(0.0, float(np.sqrt(n) * z.mean(axis=0).max()))
    spa = SPA(np.zeros(n), -z, block_size=int(block), reps=int(n_resamples),
              bootstrap="stationary", studentize=True, nested=False, seed=seed)
    spa.compute()
    mean = d.mean(axis=0)
    best = int(np.argmax(mean))
    return {
        "p": float(spa.pvalues["consistent"]) if stat > 0 else 1.0,
        "statistic": stat,
        "best_model": best,
        "best_mean_improvement": float(mean[best]),
        "n_models": int(n_models),
        "n_dates": int(n),
    }
