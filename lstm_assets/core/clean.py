"""Raw frame -> clean frame: one row per trading day, numeric, no NaN/inf, with labels.

Cleaning policy, in order (every count lands in the returned info and in the asset metadata):

1. Rows whose date did not parse are dropped; rows dated after today are dropped.
2. Rows are sorted by date. Exact duplicate rows are dropped. Rows that share a date but differ
   keep the **last** one in file order (a later line is taken as a correction).
3. inf and junk strings are already missing (see ``ingest``). Rows with no usable close
   (missing or <= 0) are dropped: they cannot be labelled.
4. Missing open/high/low are filled from that row's close (and the previous close for open);
   missing volume is left missing.
5. Technical features (``tech_*``) that the file does not have are derived from OHLCV with
   :func:`lstm_assets.core.features.technical_features`.
6. Feature columns missing on more than ``max_missing_share`` of rows (all-NaN included) are
   dropped. Interior gaps of up to ``max_ffill_days`` are forward-filled (past values only).
   Rows that still miss a value are dropped: at the start these are indicator warm-up rows.
7. Labels: see :func:`label_frame`.

The frame keeps the raw OHLCV (not model inputs: price levels are not stationary) and the label
helpers ``vol_est``, ``fwd_return``, ``band``, ``label`` (0 DOWN, 1 FLAT, 2 UP, -1 for the last
``horizon`` rows whose future is not known yet; those rows feed next-day signals).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lstm_assets.core.features import OHLCV, technical_features
from lstm_assets.core.settings import Settings
from lstm_assets.core.splits import min_rows, split_bounds
from lstm_assets.core.storage import InputError

LABEL_COLS = ("vol_est", "fwd_return", "band", "label")
NON_FEATURES = ("date", *OHLCV, *LABEL_COLS)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in NON_FEATURES]


def clean_frame(raw: pd.DataFrame, settings: Settings, path: str = "",
                today: pd.Timestamp | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Apply the cleaning policy and label the rows. Raises InputError when unusable."""
    info: dict[str, Any] = {"rows_in": len(raw)}
    df = raw.copy()
    today = (today or pd.Timestamp.today()).normalize()

    bad_date = df["date"].isna()
    future = df["date"] > today
    info["rows_bad_date"] = int(bad_date.sum())
    info["rows_future_date"] = int(future.sum())
    df = df[~bad_date & ~future]

    info["was_unsorted"] = bool(not df["date"].is_monotonic_increasing)
    df = df.reset_index(drop=True).reset_index(names="_order")
    df = df.sort_values(["date", "_order"], kind="stable")
    exact = df.drop(columns="_order").duplicated(keep="first")
    info["rows_exact_duplicate"] = int(exact.sum())
    df = df[~exact]
    conflict = df["date"].duplicated(keep="last")
    info["rows_conflicting_duplicate"] = int(conflict.sum())
    df = df[~conflict].drop(columns="_order").reset_index(drop=True)

    close = df["close"].where(df["close"] > 0)
    info["rows_no_close"] = int(close.isna().sum())
    df = df[close.notna()].reset_index(drop=True)
    if len(df) == 0:
        raise InputError(path, "no row has a usable close price (all missing or <= 0)",
                         "fill the close column with positive prices")

    filled = {}
    for col in ("open", "high", "low"):
        if col not in df.columns:
            df[col] = np.nan
        filled[col] = int(df[col].isna().sum())
    df["open"] = df["open"].fillna(df["close"].shift()).fillna(df["close"])
    df["high"] = df["high"].fillna(df[["open", "close"]].max(axis=1))
    df["low"] = df["low"].fillna(df[["open", "close"]].min(axis=1))
    info["ohlc_cells_filled_from_close"] = filled
    if "volume" not in df.columns:
        df["volume"] = np.nan
        info["volume_missing"] = True

    tech = technical_features(df[list(OHLCV)])
    derived = [c for c in tech.columns if c not in df.columns]
    if derived:
        df = pd.concat([df, tech[derived]], axis=1)
    info["columns_derived"] = derived

    feats = feature_columns(df)
    missing_share = df[feats].isna().mean()
    drop = missing_share[missing_share > settings.max_missing_share].index.tolist()
    info["columns_dropped"] = {c: f"missing on {missing_share[c]:.0%} of rows" for c in drop}
    df = df.drop(columns=drop)
    feats = [c for c in feats if c not in drop]
    if not feats:
        raise InputError(path, "no usable feature column is left after cleaning",
                         "provide OHLCV columns or numeric feature columns")
    df[feats] = df[feats].ffill(limit=settings.max_ffill_days)
    still = df[feats].isna().any(axis=1)
    info["rows_dropped_missing"] = int(still.sum())
    df = df[~still].reset_index(drop=True)

    need = min_rows(settings)
    if len(df) < need:
        raise InputError(
            path,
            f"history too short: {len(df)} usable rows after cleaning, {need} needed for "
            f"lookback {settings.lookback} + horizon {settings.horizon} + train/val/test splits",
            "supply a longer history (or lower lookback in the config)",
        )
    df[feats] = df[feats].astype("float32")
    df = label_frame(df, settings, info)
    info["rows_out"] = len(df)
    info["features"] = len(feats)
    info["date_first"] = str(df["date"].iloc[0].date())
    info["date_last"] = str(df["date"].iloc[-1].date())
    return df, info


def label_frame(df: pd.DataFrame, settings: Settings, info: dict[str, Any]) -> pd.DataFrame:
    """UP / DOWN / FLAT of the log return from close[t] to close[t+h].

    FLAT when ``|fwd_return| <= band[t]``. The band depends on ``flat_rule``:

    - ``vol_quantile`` (default): ``band[t] = k * vol_est[t]`` where ``vol_est`` is the EWMA
      volatility of daily log returns up to day t (half-life ``vol_halflife``) times sqrt(h), and
      ``k`` is fit on the **train split only** so that ``flat_share`` of train labels are FLAT.
      A calm day's small move and a wild day's small move are judged against their own regime,
      and FLAT is a real class (the old fixed tiny band made FLAT ~7% and it was never predicted).
    - ``vol_fixed``: the same with a fixed ``k = flat_k``.
    - ``abs_fixed``: ``band = flat_abs`` (the old script's rule).
    """
    h = settings.horizon
    df = df.copy()  # de-fragment before adding columns
    logc = np.log(df["close"].astype("float64"))
    r1 = logc.diff()
    # past returns only; the first rows have no estimate yet and stay unlabelled (-1)
    vol = r1.ewm(halflife=settings.vol_halflife, min_periods=2).std() * np.sqrt(h)
    fwd = logc.shift(-h) - logc
    z = (fwd / vol).to_numpy()
    if settings.flat_rule == "vol_quantile":
        bounds = split_bounds(len(df), settings)
        assert bounds is not None  # min_rows() was checked by the caller
        train_z = np.abs(z[bounds.train_start:bounds.train_end])
        k = float(np.quantile(train_z[np.isfinite(train_z)], settings.flat_share))
        band = k * vol
    elif settings.flat_rule == "vol_fixed":
        k = settings.flat_k
        band = k * vol
    elif settings.flat_rule == "abs_fixed":
        k = float("nan")
        band = pd.Series(settings.flat_abs, index=df.index)
    else:
        raise ValueError(f"unknown flat_rule {settings.flat_rule!r}")
    label = np.where(fwd > band, 2, np.where(fwd < -band, 0, 1)).astype("int8")
    label[(fwd.isna() | band.isna()).to_numpy()] = -1
    df = df.assign(vol_est=vol.astype("float64"), fwd_return=fwd, band=band.astype("float64"),
                   label=label)
    info["label_rule"] = {"flat_rule": settings.flat_rule, "k": k, "horizon": h,
                          "vol_halflife": settings.vol_halflife}
    known = label[label >= 0]
    info["label_share"] = {name: float(np.mean(known == i))
                           for i, name in enumerate(("DOWN", "FLAT", "UP"))}
    return df
