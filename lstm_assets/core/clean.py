"""Raw frame -> clean frame: one row per trading day, numeric, no NaN/inf, with labels.

Cleaning policy, in order (every count lands in the returned info and in the asset metadata;
``docs/real_data.md`` shows each rule on an example):

1. Rows whose date did not parse are dropped; rows dated after today are dropped (a typo'd year
   must not become "the latest day"). When no row is left, that is an error.
2. Rows are sorted by date. Exact duplicate rows are dropped. Rows that share a date but differ
   keep the **last** one in file order (a later line is taken as a correction).
3. inf and junk strings are already missing (see ``ingest``). Rows with no usable close
   (missing or <= 0) are dropped: they cannot be labelled. Fewer such rows than
   :func:`lstm_assets.core.splits.min_rows` (lookback + horizon + three splits of at least
   ``MIN_SPLIT_SAMPLES`` samples) is an error that says how many rows are needed.
3a. Splits and reverse splits (:mod:`lstm_assets.core.corporate_actions`): a one-day move whose
   price ratio is a split ratio (2:1, 3:2, 7:1, 1:5, ... within ``split_tolerance``) is taken for
   a split; every row before it has its prices divided by the ratio and its volume multiplied
   by it (several splits compound), so features and labels see a continuous series. Each is
   recorded in ``corporate_actions`` (date, kind, ratio, whether the volume confirmed it). A
   file with an adjusted close already uses it (see ``ingest``): it has no such move.
4. Missing open/high/low are filled from that row's close (and the previous close for open);
   missing volume is left missing (volume features then drop out by rule 6).
5. Technical features (``tech_*``) that the file does not have are derived from OHLCV with
   :func:`lstm_assets.core.features.technical_features` (the demo generator uses the same code).
6. Feature columns missing on more than ``max_missing_share`` of rows (all-NaN included) are
   dropped. Interior gaps of up to ``max_ffill_days`` are forward-filled (past values only).
   Rows that still miss a value are dropped: at the start these are indicator warm-up rows.
7. Short histories: when the warm-up of the longest-window features would leave fewer rows than
   needed, those features are dropped (longest warm-up first) until the history is long enough;
   if even the shortest-window features leave too few rows, it is an error.
8. Labels: see :func:`label_frame`, which also applies ``jump_policy`` to the price jumps that
   are no split (recorded in ``price_jumps``).

A feature constant over the train rows is kept; the scaler gives it scale 1 (see ``sequences``).
The frame keeps the raw OHLCV (not model inputs: price levels are not stationary) and the label
helpers ``vol_est``, ``fwd_return``, ``band``, ``label`` (0 DOWN, 1 FLAT, 2 UP, -1 for the last
``horizon`` rows whose future is not known yet, which feed next-day signals; -2 for the rows a
price jump excludes). The records of rules 3a and 8 are stored with the frame (the parquet
file's :data:`DATA_ADJUSTMENTS_KEY` metadata, see :func:`data_adjustments`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from lstm_assets.core.corporate_actions import adjust_splits, excluded_rows, jump_mask
from lstm_assets.core.features import OHLCV, TECH_NAMES, technical_features
from lstm_assets.core.settings import Settings
from lstm_assets.core.splits import min_rows, split_bounds
from lstm_assets.core.storage import InputError

LABEL_COLS = ("vol_est", "fwd_return", "band", "label")
NON_FEATURES = ("date", *OHLCV, *LABEL_COLS)
JUMP_POLICIES = ("exclude", "keep", "fail")
EXCLUDED_LABEL = -2
"""The label of a row a price jump spoils (``jump_policy=exclude``): never a sample, and left
out of the scaler's fit (its features hold the jump). -1 is a row with no label at all."""

DATA_ADJUSTMENTS_KEY = "lstm_assets.data_adjustments"
RAW_FILE_KEY = "lstm_assets.raw_file"
"""The clean frame's metadata key for the raw file it was made from (name, content hash)."""
"""Key of the clean parquet file's metadata that holds :func:`data_adjustments` (JSON)."""


def data_adjustments(info: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The corporate actions and price jumps of a :func:`clean_frame` info dict: what is stored
    with the clean frame and shown in the symbol's report."""
    return {"corporate_actions": list(info.get("corporate_actions", [])),
            "price_jumps": list(info.get("price_jumps", []))}


def feature_columns(columns: pd.DataFrame | Iterable[str]) -> list[str]:
    """The feature columns of a frame (or of a list of column names), in their order."""
    return [c for c in columns if c not in NON_FEATURES]


def _need_text(settings: Settings) -> str:
    return (f"lookback {settings.lookback} + horizon {settings.horizon} + train/val/test splits "
            "of at least 20 samples each")


def _ffill(F: np.ndarray, limit: int | None) -> np.ndarray:
    """``DataFrame.ffill(limit=limit)`` of each column of ``F`` (2-D float), vectorized.

    A missing value takes the column's last value before it when at most ``limit`` values in a
    row are missing up to it (the first ``limit`` of a longer gap are filled, as pandas does);
    values before a column's first value stay missing. Returns a new array.
    """
    if limit is None or limit < 1:  # pandas' own rules (no limit; a limit < 1 is an error)
        return pd.DataFrame(F).ffill(limit=limit).to_numpy()
    out = F.copy()
    valid = ~np.isnan(F)
    # only columns with a gap after their first value have anything to fill
    gaps = np.flatnonzero(valid.sum(axis=0) < F.shape[0] - _first_valid(valid))
    if len(gaps) == 0:
        return out
    valid = valid[:, gaps]
    rows = np.arange(F.shape[0])[:, None]
    last = np.maximum.accumulate(np.where(valid, rows, -1), axis=0)  # last valid row, or -1
    fill = ~valid & (last >= 0) & (rows - last <= limit)
    r, c = np.nonzero(fill)
    out[r, gaps[c]] = F[last[r, c], gaps[c]]
    return out


def _first_valid(valid: np.ndarray) -> np.ndarray:
    """Per column: rows before the first value (an indicator's warm-up); all rows when none."""
    return np.where(valid.any(axis=0), valid.argmax(axis=0), valid.shape[0])


def _duplicate_rows(raw: pd.DataFrame, pos: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """``raw.take(pos).duplicated(keep="first")`` (``dates`` = the dates of ``pos``), comparing
    whole rows only where a date repeats: a row with a unique date cannot repeat another."""
    out = np.zeros(len(pos), dtype=bool)
    repeated = pd.Series(dates).duplicated(keep=False).to_numpy()
    if repeated.any():
        out[repeated] = raw.take(pos[repeated]).duplicated(keep="first").to_numpy()
    return out


def _dated_rows(raw: pd.DataFrame, today: pd.Timestamp, path: str,
                info: dict[str, Any]) -> np.ndarray:
    """Rule 1: positions of the rows with a parsed date that is not after ``today``."""
    date = raw["date"]
    bad_date = date.isna().to_numpy()
    future = (date > today).to_numpy()
    info["rows_bad_date"] = int(bad_date.sum())
    info["rows_future_date"] = int(future.sum())
    pos = np.flatnonzero(~bad_date & ~future)
    if len(pos) == 0:
        raise InputError(path, f"no row has a usable date: {info['rows_bad_date']} unparseable, "
                         f"{info['rows_future_date']} after today ({today.date()})",
                         "write past trading dates as YYYY-MM-DD")
    return pos


def _sorted_unique_rows(raw: pd.DataFrame, pos: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """Rule 2: ``pos`` sorted by date, without exact duplicates, the last row of a date kept."""
    date = raw["date"]
    d = date.to_numpy()[pos]
    info["was_unsorted"] = bool(not pd.Series(d).is_monotonic_increasing)
    order = np.argsort(d, kind="stable")  # by date, ties in file order
    pos, d = pos[order], d[order]
    exact = _duplicate_rows(raw, pos, d)
    info["rows_exact_duplicate"] = int(exact.sum())
    pos = pos[~exact]
    dates = date.take(pos)
    conflict = dates.duplicated(keep="last").to_numpy()
    info["rows_conflicting_duplicate"] = int(conflict.sum())
    if conflict.any():
        info["conflicting_dates"] = [str(x.date()) for x in dates[conflict].unique()[:5]]
    return pos[~conflict]


def _rows_with_close(raw: pd.DataFrame, pos: np.ndarray, settings: Settings, path: str,
                     info: dict[str, Any]) -> np.ndarray:
    """Rule 3: the rows of ``pos`` with a close > 0; fewer than ``min_rows`` is an error."""
    has_close = (raw["close"].take(pos) > 0).to_numpy()
    info["rows_no_close"] = int((~has_close).sum())
    pos = pos[has_close]
    if len(pos) == 0:
        raise InputError(path, "no row has a usable close price (all missing or <= 0)",
                         "fill the close column with positive prices")
    need = min_rows(settings)
    if len(pos) < need:
        raise InputError(
            path,
            f"history too short: {len(pos)} trading day(s) with a date and a close "
            f"(file rows: {len(raw)}), {need} needed for {_need_text(settings)}",
            f"supply at least {need} trading days (about {need / 21:.0f} months), or lower "
            "lookback in the config",
        )
    return pos


def _fill_ohlc(df: pd.DataFrame, info: dict[str, Any]) -> None:
    """Rule 4, in place: missing open/high/low from the close; a missing volume column is added
    as all-missing."""
    filled = {}
    for col in ("open", "high", "low"):
        if col not in df.columns:
            df[col] = np.nan
        filled[col] = int(df[col].isna().sum())
    if any(filled.values()):
        df["open"] = df["open"].fillna(df["close"].shift()).fillna(df["close"])
        df["high"] = df["high"].fillna(df[["open", "close"]].max(axis=1))
        df["low"] = df["low"].fillna(df[["open", "close"]].min(axis=1))
    info["ohlc_cells_filled_from_close"] = filled
    if "volume" not in df.columns:
        df["volume"] = np.nan
        info["volume_missing"] = True


def _with_technical_features(df: pd.DataFrame, info: dict[str, Any]) -> pd.DataFrame:
    """Rule 5: the ``tech_*`` features the frame lacks, derived from OHLCV and appended."""
    if all(c in df.columns for c in TECH_NAMES):
        derived: list[str] = []  # the file has every technical feature: nothing to derive
    else:
        tech = technical_features(df[list(OHLCV)])
        derived = [c for c in tech.columns if c not in df.columns]
        if derived:
            df = pd.concat([df, tech[derived]], axis=1)
    info["columns_derived"] = derived
    return df


def _dense_features(df: pd.DataFrame, settings: Settings,
                    path: str) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """Rule 6 up to the row drop: the feature columns missing on at most ``max_missing_share``
    of rows, their values (float64, gaps forward-filled) and {dropped column: reason}."""
    feats = feature_columns(df)
    # float64 holds every float32 (derived) and float64 (file) value exactly
    F = df[feats].to_numpy(dtype=np.float64)
    missing_share = pd.Series(np.isnan(F).mean(axis=0), index=feats)
    drop = missing_share[missing_share > settings.max_missing_share].index.tolist()
    dropped = {c: ("no values" if missing_share[c] == 1 else
                   f"missing on {missing_share[c]:.0%} of rows") for c in drop}
    kept = ~missing_share.index.isin(drop)
    feats = [c for c in feats if c not in drop]
    if not feats:
        raise InputError(path, "no usable feature column is left after cleaning",
                         "provide OHLCV columns or numeric feature columns")
    return feats, _ffill(F[:, kept], settings.max_ffill_days), dropped


def _short_history_features(valid: np.ndarray, feats: list[str], need: int,
                            dropped: dict[str, str]) -> np.ndarray:
    """Rule 7: which features to use (bool per column of ``valid``). While fewer than ``need``
    rows have every used feature, the features with the longest warm-up are dropped (reasons
    added to ``dropped``), as long as warm-ups differ."""
    warm = _first_valid(valid)
    use = np.ones(len(feats), dtype=bool)
    while use.sum() > 1 and int(valid[:, use].all(axis=1).sum()) < need:
        longest, shortest = warm[use].max(), warm[use].min()
        if longest == shortest:
            break
        for j in np.flatnonzero(use & (warm == longest)):
            dropped[feats[j]] = (f"warm-up of {longest} rows is too long for a "
                                 f"{valid.shape[0]}-row history")
        use &= warm != longest
    return use


def _complete_rows(valid: np.ndarray, raw_rows: int, settings: Settings, path: str,
                   info: dict[str, Any]) -> np.ndarray:
    """Rule 6's row drop: positions of the rows with every feature (all of ``valid`` true);
    fewer than ``min_rows`` is an error."""
    complete = valid.all(axis=1)
    info["rows_dropped_missing"] = int((~complete).sum())
    need = min_rows(settings)
    if int(complete.sum()) < need:
        raise InputError(
            path,
            f"history too short: {int(complete.sum())} usable rows after cleaning and "
            f"indicator warm-up (file rows: {raw_rows}), {need} needed for "
            f"{_need_text(settings)}",
            f"supply a longer history (at least {need} trading days plus ~20 for indicator "
            "warm-up), or lower lookback in the config",
        )
    return np.flatnonzero(complete)


def _assemble(df: pd.DataFrame, rows: np.ndarray, feats: list[str], values: np.ndarray,
              dropped: dict[str, str]) -> pd.DataFrame:
    """``df``'s ``rows`` with the ``dropped`` columns removed and ``feats`` taken from
    ``values`` (float32), columns in ``df``'s order."""
    block = pd.DataFrame(values.astype(np.float32), columns=feats)
    rest = df.drop(columns=[c for c in df.columns if c in dropped or c in feats])
    rest = rest.take(rows).reset_index(drop=True)
    order = [c for c in df.columns if c not in dropped]
    return pd.concat([rest, block], axis=1)[order]


def clean_frame(raw: pd.DataFrame, settings: Settings, path: str = "",
                today: pd.Timestamp | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Apply the cleaning policy (module docstring) and label the rows.

    Returns the clean frame and an info dict of counts, ``columns_derived`` (tech features
    computed here), ``columns_dropped`` ({column: reason}), ``feature_columns``,
    ``corporate_actions`` (the splits adjusted, rule 3a) and ``price_jumps`` (rule 8). Raises
    :class:`InputError` naming ``path``, the problem and the fix when the data is unusable.
    ``raw`` is not modified.

    The row rules (1-3) pick row positions from the date and close columns and copy the frame
    once; the feature rules (6-7) run on one 2-D array. Same result as applying each rule to the
    frame in turn, at a fraction of the pandas calls (~100 columns, called per symbol).
    """
    info: dict[str, Any] = {"rows_in": len(raw)}
    today = (today or pd.Timestamp.today()).normalize()
    pos = _dated_rows(raw, today, path, info)
    pos = _sorted_unique_rows(raw, pos, info)
    pos = _rows_with_close(raw, pos, settings, path, info)
    df = raw.take(pos).reset_index(drop=True)
    info["corporate_actions"] = adjust_splits(df, settings)  # rule 3a, in place
    _fill_ohlc(df, info)
    df = _with_technical_features(df, info)

    feats, F, dropped = _dense_features(df, settings, path)
    valid = ~np.isnan(F)
    # a short history cannot afford the warm-up of the longest indicators: drop those first
    use = _short_history_features(valid, feats, min_rows(settings), dropped)
    feats = [c for c, u in zip(feats, use, strict=True) if u]
    info["columns_dropped"] = dropped
    rows = _complete_rows(valid[:, use], len(raw), settings, path, info)
    df = _assemble(df, rows, feats, F[np.ix_(rows, np.flatnonzero(use))], dropped)

    df = label_frame(df, settings, info, path)
    info["rows_out"] = len(df)
    info["features"] = len(feats)
    info["feature_columns"] = feats
    info["date_first"] = str(df["date"].iloc[0].date())
    info["date_last"] = str(df["date"].iloc[-1].date())
    return df, info


def _price_jumps(df: pd.DataFrame, r1: np.ndarray, settings: Settings, path: str,
                 info: dict[str, Any]) -> np.ndarray:
    """Row positions of the price jumps that are no split (splits are adjusted by now), noted in
    ``info["price_jumps"]``; under ``jump_policy=fail`` the first one is an :class:`InputError`."""
    if settings.jump_policy not in JUMP_POLICIES:
        raise ValueError(f"unknown jump_policy {settings.jump_policy!r}; "
                         f"known: {', '.join(JUMP_POLICIES)}")
    jumps = np.flatnonzero(jump_mask(r1, settings))
    info["price_jumps"] = []
    if len(jumps) == 0:
        return jumps
    dates = df["date"].iloc[jumps].dt.strftime("%Y-%m-%d").tolist()
    info["price_jumps"] = [{"date": d, "log_return": round(float(r1[j]), 4),
                            "policy": settings.jump_policy}
                           for d, j in zip(dates, jumps, strict=True)]
    if settings.jump_policy == "fail":
        j, close = int(jumps[0]), df["close"].to_numpy()
        more = f" (and {len(jumps) - 1} more)" if len(jumps) > 1 else ""
        raise InputError(
            path,
            f"price jump on {dates[0]}{more}: close {close[j - 1]:.4g} -> {close[j]:.4g}, a "
            f"one-day log return of {r1[j]:+.3f} ({np.expm1(r1[j]):+.1%}; a jump is |log "
            f"return| >= jump_log_return {settings.jump_log_return:g} or >= jump_sigmas "
            f"{settings.jump_sigmas:g} robust std) that matches no split ratio",
            "set jump_policy=exclude (leave the days it touches out of training and scoring) or "
            "keep (use them as they are), or fix the file",
        )
    return jumps


def label_frame(df: pd.DataFrame, settings: Settings, info: dict[str, Any],
                path: str = "") -> pd.DataFrame:
    """UP / DOWN / FLAT of the log return from close[t] to close[t+h].

    FLAT when ``|fwd_return| <= band[t]``. The band depends on ``flat_rule``:

    - ``vol_quantile`` (default): ``band[t] = k * vol_est[t]`` where ``vol_est`` is the EWMA
      volatility of daily log returns up to day t (half-life ``vol_halflife``) times sqrt(h), and
      ``k`` is fit on the **train split only** so that ``flat_share`` of train labels are FLAT.
      A calm day's small move and a wild day's small move are judged against their own regime,
      and FLAT is a real class (a fixed tiny band makes FLAT so rare that it is never predicted).
    - ``vol_fixed``: the same with a fixed ``k = flat_k``.
    - ``abs_fixed``: ``band = flat_abs``, one absolute band for every day.

    Splits are back-adjusted before this (clean rule 3a), so a split day is an ordinary day.
    A **price jump** that is no split (a day j with ``|log return| >= jump_log_return`` or
    ``>= jump_sigmas`` robust std, see :mod:`lstm_assets.core.corporate_actions`) is noted in
    ``info["price_jumps"]`` (date, log return, policy) and handled by ``jump_policy``:

    - ``exclude`` (default): rows ``j - h .. j - 1`` (their forward return crosses the jump) and
      ``j .. j + lookback - 1`` (their window holds the jump's return) get ``label =
      EXCLUDED_LABEL`` (-2) and ``fwd_return = NaN``: no training, validation or test sample
      ends there (``SequenceSet.end_rows``), the train-split fit of ``k`` and of the feature
      scaler skip them, and code that relabels from ``fwd_return`` skips them too. ``vol_est``
      is computed with the jump day's return left out, so the FLAT band is not inflated for
      weeks after it.
    - ``keep``: the rows are labelled as any other (and the jump is still noted).
    - ``fail``: an :class:`InputError` naming ``path``, the date and the move.
    """
    h = settings.horizon
    df = df.copy()  # de-fragment before adding columns
    logc = np.log(df["close"].astype("float64"))
    r1 = logc.diff()
    jumps = _price_jumps(df, r1.to_numpy(), settings, path, info)
    fwd = logc.shift(-h) - logc
    spoiled = np.zeros(len(df), dtype=bool)
    if settings.jump_policy == "exclude" and len(jumps):
        r1.iloc[jumps] = np.nan  # the EWMA skips the jump's return
        spoiled = excluded_rows(jumps, len(df), h, settings.lookback)
        fwd[spoiled] = np.nan
    # past returns only; the first rows have no estimate yet and stay unlabelled (-1)
    vol = r1.ewm(halflife=settings.vol_halflife, min_periods=2).std() * np.sqrt(h)
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
    label[spoiled] = EXCLUDED_LABEL
    df = df.assign(vol_est=vol.astype("float64"), fwd_return=fwd, band=band.astype("float64"),
                   label=label)
    info["label_rule"] = {"flat_rule": settings.flat_rule, "k": k, "horizon": h,
                          "vol_halflife": settings.vol_halflife}
    known = label[label >= 0]
    info["label_share"] = {name: float(np.mean(known == i))
                           for i, name in enumerate(("DOWN", "FLAT", "UP"))}
    return df
