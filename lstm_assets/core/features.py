"""Technical features derived from daily OHLCV, used by both the demo generator and ingest.

Every feature at day t uses data up to and including day t only (rolling and EWM windows look
backwards; nothing is shifted forward). Outputs are scale-free (returns, ratios, z-scores) so a
scaler fit on the train years still makes sense on the test years. All names start ``tech_``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

OHLCV = ("open", "high", "low", "close", "volume")


def _rsi(close: pd.Series, n: int) -> pd.Series:
    d = close.diff()
    up = d.clip(lower=0).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    dn = (-d.clip(upper=0)).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    return 100 - 100 / (1 + up / dn.replace(0, np.nan))


def technical_features(ohlcv: pd.DataFrame) -> pd.DataFrame:
    """~65 technical features from columns open/high/low/close/volume (same index as input)."""
    o, h, lo, c = (ohlcv[k].astype("float64") for k in ("open", "high", "low", "close"))
    v = ohlcv["volume"].astype("float64")
    logc = np.log(c)
    r1 = logc.diff()
    f: dict[str, pd.Series] = {}

    for n in (1, 2, 3, 5, 10, 20, 60, 120):
        f[f"tech_ret_{n}"] = logc.diff(n)
    for n in (5, 10, 20, 50, 100, 200):
        f[f"tech_sma_ratio_{n}"] = c / c.rolling(n, min_periods=n).mean() - 1
    for n in (12, 26, 50):
        f[f"tech_ema_ratio_{n}"] = c / c.ewm(span=n, adjust=False, min_periods=n).mean() - 1
    for n in (5, 10, 20, 60):
        f[f"tech_vol_{n}"] = r1.rolling(n, min_periods=n).std()
    f["tech_vol_ratio_5_60"] = f["tech_vol_5"] / f["tech_vol_60"]
    f["tech_vol_ratio_20_60"] = f["tech_vol_20"] / f["tech_vol_60"]
    for n in (7, 14, 21):
        f[f"tech_rsi_{n}"] = _rsi(c, n)
    ema12 = c.ewm(span=12, adjust=False).mean()
    ema26 = c.ewm(span=26, adjust=False).mean()
    macd = (ema12 - ema26) / c
    f["tech_macd"] = macd
    f["tech_macd_signal"] = macd.ewm(span=9, adjust=False).mean()
    f["tech_macd_hist"] = macd - f["tech_macd_signal"]
    for n in (10, 20):
        m = c.rolling(n, min_periods=n).mean()
        s = c.rolling(n, min_periods=n).std()
        f[f"tech_bb_pctb_{n}"] = (c - (m - 2 * s)) / (4 * s)
        f[f"tech_bb_width_{n}"] = 4 * s / m
    for n in (14, 28):
        hh = h.rolling(n, min_periods=n).max()
        ll = lo.rolling(n, min_periods=n).min()
        k = (c - ll) / (hh - ll).replace(0, np.nan)
        f[f"tech_stoch_k_{n}"] = k
        f[f"tech_stoch_d_{n}"] = k.rolling(3, min_periods=3).mean()
        f[f"tech_williams_r_{n}"] = k - 1
    tr = pd.concat([h - lo, (h - c.shift()).abs(), (lo - c.shift()).abs()], axis=1).max(axis=1)
    for n in (14, 28):
        f[f"tech_atr_{n}"] = tr.ewm(alpha=1 / n, adjust=False, min_periods=n).mean() / c
    tp = (h + lo + c) / 3
    tpm = tp.rolling(20, min_periods=20).mean()
    tpd = (tp - tpm).abs().rolling(20, min_periods=20).mean()
    f["tech_cci_20"] = (tp - tpm) / (0.015 * tpd.replace(0, np.nan))
    f["tech_range"] = (h - lo) / c
    f["tech_body"] = (c - o) / c
    f["tech_gap"] = np.log(o / c.shift())
    f["tech_upper_shadow"] = (h - np.maximum(o, c)) / c
    f["tech_lower_shadow"] = (np.minimum(o, c) - lo) / c
    f["tech_close_loc"] = (c - lo) / (h - lo).replace(0, np.nan)
    logv = np.log1p(v.clip(lower=0))
    for n in (5, 20, 60):
        mv = logv.rolling(n, min_periods=n).mean()
        sv = logv.rolling(n, min_periods=n).std()
        f[f"tech_volume_z_{n}"] = (logv - mv) / sv.replace(0, np.nan)
    f["tech_volume_chg_1"] = logv.diff()
    obv = (np.sign(r1).fillna(0) * v).cumsum()
    f["tech_obv_slope_20"] = obv.diff(20) / v.rolling(20, min_periods=20).sum().replace(0, np.nan)
    for n in (20, 60):
        f[f"tech_skew_{n}"] = r1.rolling(n, min_periods=n).skew()
        f[f"tech_kurt_{n}"] = r1.rolling(n, min_periods=n).kurt()
    for n in (20, 60, 252):
        f[f"tech_dist_high_{n}"] = c / h.rolling(n, min_periods=n).max() - 1
        f[f"tech_dist_low_{n}"] = c / lo.rolling(n, min_periods=n).min() - 1
    f["tech_mom_12_1"] = logc.shift(21) - logc.shift(252)
    for n in (5, 20):
        f[f"tech_autocorr_{n}"] = r1.rolling(n * 3, min_periods=n * 3).corr(r1.shift())
        f[f"tech_updays_{n}"] = (r1 > 0).astype("float64").rolling(n, min_periods=n).mean()
    illiq = r1.abs() / (c * v).replace(0, np.nan)
    f["tech_amihud_20"] = illiq.rolling(20, min_periods=20).mean() * 1e9
    out = pd.DataFrame(f, index=ohlcv.index)
    return out.replace([np.inf, -np.inf], np.nan).astype("float32")


TECH_NAMES: tuple[str, ...] = tuple(
    technical_features(
        pd.DataFrame({k: np.ones(3) for k in OHLCV})
    ).columns
)
