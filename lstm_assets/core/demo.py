"""Synthetic demo data: market-like prices, ~95 features, a planted pattern with a known oracle.

Prices: a common market factor plus an idiosyncratic part per symbol, each a GARCH(1,1) process
(volatility clustering; fat-tailed unconditional returns), betas drawn per symbol, a small drift.

Features per file (95): 69 technical (``tech_*``, derived from the simulated OHLCV by
:func:`lstm_assets.core.features.technical_features`, the same code that serves OHLCV-only
input), 14 fundamental (``fund_*``, quarterly, carried forward; valuation ratios move with the
price) and 11 macro (``macro_*``, identical for every symbol), plus ``micro_order_flow``.

Three modes (:data:`MODES`), all drawn from the same random streams, so for one seed they differ
only in the planted mean of the returns (and in the prices and price-derived features that
follow from it):

- ``signal`` plants a pattern that needs the sequence: the expected next-day return is
  ``signal_strength * sigma[t+1] * s[t]`` where ``s[t]`` is the (unit-variance) sum of
  ``micro_order_flow`` on the days ``signal_lags`` before day t. One day of features sees only a
  fraction of it, so a model that looks only at the last day cannot reach the best accuracy.
- ``weak`` plants the same pattern, with the same rule and strength for every symbol, at the
  strength :data:`WEAK_SIGNAL_STRENGTH` (``signal_strength`` is not used; the manifest records
  the strength used): the best achievable accuracy is only a few points above the majority
  class, about as much as markets offer at best. It tests statistical power: at real-data size a
  model pooled over all symbols can find it, a model per symbol mostly cannot.
- ``null`` has no pattern.

Because the returns are conditionally Gaussian with mean and standard deviation known to the
generator, the best achievable (Bayes) accuracy for any label rule can be computed exactly
(:func:`lstm_assets.core.evaluate.oracle_proba`): the generator saves the conditional mean and
std of every day's forward return in ``<out>/../demo_truth/`` (not in the raw folder, where it
would be taken for a symbol).

A known share of files gets realistic defects (NaN runs, duplicated and unsorted dates, inf,
junk strings); the manifest lists which.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from lstm_assets.core.features import technical_features
from lstm_assets.core.storage import atomic_path, write_json, write_parquet

log = logging.getLogger(__name__)

END_DATE = "2025-12-31"  # fixed, so the same seed gives the same files on any day
MODES = ("signal", "weak", "null")
"""The generator's modes (module docstring)."""
WEAK_SIGNAL_STRENGTH = 0.1
"""``signal_strength`` of ``weak`` mode. With the default label rule (3 classes, the default FLAT
band) the oracle's expected accuracy over every labelled day is 3.4-3.8 points above the
majority class's (pooled: 3.44 and 3.36 on 40 symbols x 5 years, seeds 3 and 11; 3.84 on
164 x 5, seed 7), 0.4-4.9 points per symbol. About 1.8-2.3 of those points are there with no
pattern at all (``null`` mode: the oracle knows each day's true volatility, which the FLAT band
only estimates from past returns); the pattern adds about 1.5 (pooled gap at strength 0.05:
2.4; at 0.125: 3.9-4.0; on 40 x 5). Measured by ``universe_gap`` in
``lstm_assets_tests/test_weak_signal.py``."""
DEFECT_KINDS = ("nan_runs", "duplicate_dates", "unsorted_dates", "inf_values", "junk_strings")
FUND_NAMES = (
    "pe", "pb", "ps", "ev_ebitda", "dividend_yield", "fcf_yield", "eps_growth", "revenue_growth",
    "gross_margin", "net_margin", "roe", "roa", "debt_to_equity", "current_ratio",
)
MACRO_NAMES = (
    "rate_3m", "rate_10y", "term_spread", "credit_spread", "vix", "usd_index_ret_20",
    "oil_ret_20", "gold_ret_20", "cpi_yoy", "unemployment", "market_ret_20",
)


@dataclass
class DemoSpec:
    """What :func:`generate` writes. ``mode`` is one of :data:`MODES`; ``signal_strength`` is
    the strength ``signal`` mode plants (``weak`` mode plants :data:`WEAK_SIGNAL_STRENGTH`)."""

    symbols: int = 164
    years: int = 20
    seed: int = 7
    mode: str = "signal"
    signal_strength: float = 1.5
    signal_lags: tuple[int, ...] = (1, 3)
    defect_share: float = 0.25
    fmt: str = "csv"
    names: list[str] = field(default_factory=list)


def demo_symbols(n: int) -> list[str]:
    return [f"SYN{i:03d}" for i in range(1, n + 1)]


def _garch(rng: np.random.Generator, t: int, k: int, daily_vol: np.ndarray,
           a: float = 0.08, b: float = 0.90) -> tuple[np.ndarray, np.ndarray]:
    """GARCH(1,1) shocks and conditional std for k series over t days (Gaussian innovations)."""
    var = daily_vol**2
    omega = var * (1 - a - b)
    h = np.empty((t, k))
    eps = np.empty((t, k))
    z = rng.standard_normal((t, k))
    h_prev, e_prev = var.copy(), np.zeros(k)
    for i in range(t):
        h_prev = omega + a * e_prev**2 + b * h_prev
        h[i] = h_prev
        e_prev = np.sqrt(h_prev) * z[i]
        eps[i] = e_prev
    return eps, np.sqrt(h)


def _ou(rng: np.random.Generator, n: int, mean: float, sd: float, half_life: float,
        lo: float = -np.inf, hi: float = np.inf) -> np.ndarray:
    """Mean-reverting (Ornstein-Uhlenbeck / AR(1)) path with stationary std ``sd``.

    Engineered features are mean-reverting, as a quant would build them: a random walk would
    leave the test years outside the range the scaler and the model saw in the train years.
    """
    phi = 0.5 ** (1 / half_life)
    eps = rng.normal(0, sd * np.sqrt(1 - phi**2), n)
    x = np.empty(n)
    x[0] = mean + rng.normal(0, sd)
    for i in range(1, n):
        x[i] = mean + phi * (x[i - 1] - mean) + eps[i]
    return np.clip(x, lo, hi)


def _macro(rng: np.random.Generator, dates: pd.DatetimeIndex, mkt_ret: np.ndarray,
           mkt_sigma: np.ndarray) -> pd.DataFrame:
    t = len(dates)

    def monthly(x: np.ndarray) -> np.ndarray:
        s = pd.Series(x, index=dates)
        return s.groupby([dates.year, dates.month]).transform("first").to_numpy()

    r3 = _ou(rng, t, 2.0, 1.2, 250, 0.0, 8.0)
    r10 = np.maximum(r3 + _ou(rng, t, 1.2, 0.6, 120), 0.2)
    m20 = pd.Series(mkt_ret).rolling(20, min_periods=1).sum().to_numpy()

    def ret20(step: float) -> np.ndarray:
        return pd.Series(rng.normal(0, step, t)).rolling(20, min_periods=1).sum().to_numpy()

    return pd.DataFrame({
        "macro_rate_3m": r3,
        "macro_rate_10y": r10,
        "macro_term_spread": r10 - r3,
        "macro_credit_spread": np.clip(1.5 + 40 * (mkt_sigma - mkt_sigma.mean())
                                       + _ou(rng, t, 0.0, 0.3, 60), 0.3, 8),
        "macro_vix": 100 * np.sqrt(252) * mkt_sigma + rng.normal(0, 1.0, t),
        "macro_usd_index_ret_20": ret20(0.004),
        "macro_oil_ret_20": ret20(0.02) + 0.5 * m20,
        "macro_gold_ret_20": ret20(0.01) - 0.1 * m20,
        "macro_cpi_yoy": monthly(_ou(rng, t, 2.5, 1.0, 250, -1, 9)),
        "macro_unemployment": monthly(_ou(rng, t, 5.5, 1.2, 375, 3, 12)),
        "macro_market_ret_20": m20,
    })


def _fundamentals(rng: np.random.Generator, close: np.ndarray) -> pd.DataFrame:
    t = len(close)
    q = np.arange(t) // 63  # quarter index: values change once a quarter, carried forward
    nq = q[-1] + 1
    q_close = close[np.minimum(np.arange(nq) * 63, t - 1)][q]  # price when the quarter began

    def quarterly(mean: float, sd: float, lo: float, hi: float) -> np.ndarray:
        return _ou(rng, nq, mean, sd, 4, lo, hi)[q]  # half-life one year

    # per-share fundamentals follow the business (and so, over years, the price); valuation
    # ratios then move with the price within a quarter and revert across quarters
    eps = q_close / quarterly(rng.uniform(12, 30), 4, 5, 80)
    book = q_close / quarterly(rng.uniform(1.5, 6), 0.8, 0.3, 20)
    sales = q_close / quarterly(rng.uniform(1, 5), 0.6, 0.2, 20)
    fcf = eps * quarterly(1.0, 0.2, 0.2, 2.0)
    div = eps * quarterly(0.35, 0.1, 0.0, 0.9)
    return pd.DataFrame({
        "fund_pe": close / eps,
        "fund_pb": close / book,
        "fund_ps": close / sales,
        "fund_ev_ebitda": 0.6 * close / eps + quarterly(2.0, 0.8, 0, 8),
        "fund_dividend_yield": div / close,
        "fund_fcf_yield": fcf / close,
        "fund_eps_growth": quarterly(0.08, 0.1, -0.6, 0.8),
        "fund_revenue_growth": quarterly(0.06, 0.07, -0.4, 0.6),
        "fund_gross_margin": quarterly(0.4, 0.05, 0.05, 0.9),
        "fund_net_margin": quarterly(0.1, 0.04, -0.3, 0.5),
        "fund_roe": quarterly(0.14, 0.05, -0.5, 0.6),
        "fund_roa": quarterly(0.06, 0.02, -0.3, 0.3),
        "fund_debt_to_equity": quarterly(0.8, 0.3, 0.0, 4.0),
        "fund_current_ratio": quarterly(1.5, 0.3, 0.3, 4.0),
    })


def _apply_defects(rng: np.random.Generator, df: pd.DataFrame, kinds: list[str]) -> pd.DataFrame:
    feats = [c for c in df.columns if c.startswith(("tech_", "fund_", "macro_"))]
    df = df.copy()
    n = len(df)
    if "nan_runs" in kinds:
        for col in rng.choice(feats, 3, replace=False):
            start = int(rng.integers(300, n - 20))
            df.loc[df.index[start:start + int(rng.integers(3, 12))], col] = np.nan
    if "inf_values" in kinds:
        for _ in range(5):
            df.iloc[int(rng.integers(300, n)), df.columns.get_loc(str(rng.choice(feats)))] = np.inf
    if "junk_strings" in kinds:
        col = str(rng.choice(feats))
        vals = df[col].map(lambda x: f"{x:.7g}").astype(object)
        for i in rng.choice(np.arange(300, n), 8, replace=False):
            vals.iloc[int(i)] = str(rng.choice(["#N/A", "n/a", "--", "error", "null?"]))
        df[col] = vals
    if "duplicate_dates" in kinds:
        dup = df.iloc[np.sort(rng.choice(np.arange(300, n), 5, replace=False))]
        df = pd.concat([df, dup])
    if "unsorted_dates" in kinds:
        start = int(rng.integers(300, n - 40))
        block = np.arange(start, start + 25)
        order = np.arange(len(df))
        order[block] = rng.permutation(block)
        df = df.iloc[order]
    return df


def _write_raw(path: Path, df: pd.DataFrame, fmt: str) -> None:
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            table = pa.Table.from_pandas(df, preserve_index=False)
            pacsv.write_csv(table, tmp)


def generate(out_dir: Path, spec: DemoSpec,
             progress: Callable[[int], object] | None = None) -> dict[str, object]:
    """Write one raw file per symbol into ``out_dir`` and the ground truth beside it.

    ``weak`` mode writes the spec with ``signal_strength`` = :data:`WEAK_SIGNAL_STRENGTH` into
    the manifest (the strength it plants)."""
    if spec.mode not in MODES:
        raise ValueError(f"unknown demo mode {spec.mode!r}: the modes are "
                         f"{', '.join(repr(m) for m in MODES)}")
    if spec.mode == "weak":
        spec = replace(spec, signal_strength=WEAK_SIGNAL_STRENGTH)
    names = spec.names or demo_symbols(spec.symbols)
    # independent streams: the shared (market, flow, macro) one and one per symbol. Seeding a
    # symbol with [seed, j] would not do: SeedSequence([seed, 0]) equals SeedSequence(seed), so
    # the first symbol's "noise" replayed the market shocks and leaked the next day's return
    # into its opening gap (the null check caught it).
    shared_seq, *symbol_seqs = np.random.SeedSequence(spec.seed).spawn(len(names) + 1)
    rng = np.random.default_rng(shared_seq)
    k, t = len(names), spec.years * 252
    dates = pd.bdate_range(end=END_DATE, periods=t)

    mkt_eps, mkt_sig = _garch(rng, t, 1, np.array([0.010]))
    idio_eps, idio_sig = _garch(rng, t, k, rng.uniform(0.009, 0.018, k))
    beta = rng.uniform(0.6, 1.4, k)
    sigma = np.sqrt((beta * mkt_sig) ** 2 + idio_sig**2)  # conditional std of day t's return
    flow = rng.standard_normal((t, k)).astype(np.float64)
    # s[t]: unit-variance sum of the order flow ``signal_lags`` days before day t
    s = sum(pd.DataFrame(flow).shift(lag).to_numpy() for lag in spec.signal_lags)
    s = np.nan_to_num(s / np.sqrt(len(spec.signal_lags)))
    strength = 0.0 if spec.mode == "null" else spec.signal_strength
    drift = 0.06 / 252
    mu = np.full((t, k), drift)
    mu[1:] += strength * sigma[1:] * s[:-1]  # return of day t+1 depends on flow up to day t
    ret = mu + beta * mkt_eps + idio_eps
    macro = _macro(rng, dates, mkt_eps[:, 0], mkt_sig[:, 0])

    truth_dir = out_dir.parent / "demo_truth"
    out_dir.mkdir(parents=True, exist_ok=True)
    n_defect = int(round(spec.defect_share * k))
    defect_syms = set(rng.choice(k, n_defect, replace=False).tolist()) if n_defect else set()
    manifest: dict[str, object] = {"spec": asdict(spec), "symbols": {}, "truth": "conditional "
                                   "mean and std of the next day's close-to-close log return"}
    for j, sym in enumerate(names):
        srng = np.random.default_rng(symbol_seqs[j])
        close = 20 * np.exp(srng.uniform(0, 2)) * np.exp(np.cumsum(ret[:, j]))
        gap = srng.normal(0, 0.3, t) * sigma[:, j]
        open_ = np.r_[close[0], close[:-1]] * np.exp(gap)
        hi = np.maximum(open_, close) * np.exp(np.abs(srng.normal(0, 0.5, t)) * sigma[:, j])
        lo = np.minimum(open_, close) * np.exp(-np.abs(srng.normal(0, 0.5, t)) * sigma[:, j])
        vol = np.round(1e6 * np.exp(srng.normal(0, 0.3, t) + 2 * np.abs(ret[:, j]) / sigma[:, j]
                                    * 0.2))
        ohlcv = pd.DataFrame({"open": open_, "high": hi, "low": lo, "close": close,
                              "volume": vol})
        df = pd.concat([
            pd.DataFrame({"date": dates.strftime("%Y-%m-%d")}),
            ohlcv,
            technical_features(ohlcv),
            _fundamentals(srng, close),
            macro,
            pd.DataFrame({"micro_order_flow": flow[:, j]}),
        ], axis=1)
        float_cols = [c for c in df.columns if c not in ("date", "volume")]
        df[float_cols] = df[float_cols].astype("float32")
        kinds: list[str] = []
        if j in defect_syms:
            kinds = sorted(srng.choice(DEFECT_KINDS, int(srng.integers(2, 5)), replace=False))
            df = _apply_defects(srng, df, kinds)
        ext = ".parquet" if spec.fmt == "parquet" else ".csv"
        _write_raw(out_dir / f"{sym}{ext}", df, spec.fmt)
        truth = pd.DataFrame({
            "date": dates,
            # forward (day t -> t+1) return: conditional mean and std known at day t
            "fwd_mean": np.r_[mu[1:, j], np.nan],
            "fwd_std": np.r_[sigma[1:, j], np.nan],
        })
        write_parquet(truth_dir / f"{sym}.parquet", truth)
        manifest["symbols"][sym] = {"beta": float(beta[j]), "defects": kinds}  # type: ignore[index]
        if progress:
            progress(1)
    write_json(truth_dir / "manifest.json", manifest)
    log.info("wrote %d demo files to %s (%s mode)", k, out_dir, spec.mode)
    return manifest
