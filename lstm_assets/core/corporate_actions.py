"""Splits, reverse splits and price jumps in a daily price series (pure numpy, no pandas rules).

Price files are sometimes not adjusted for splits: after a 7:1 split the close drops to 1/7
from one day on while the volume rises about 7-fold. Trained as it is, that day is a -86% DOWN
label, it inflates the scaler and the volatility that sets the FLAT band, and it sits in every
window that contains it. The rules (settings in brackets, see :class:`~.settings.Settings`):

- A **price jump** is a day whose close-to-close log return ``r`` has
  ``|r| >= jump_log_return`` (0.3: a 26% fall or a 35% rise, more than any ordinary day of a
  listed stock) or ``|r| >= jump_sigmas`` (20) x the robust std of the series' daily log
  returns (``1.4826 x`` their median absolute deviation, which the jumps themselves barely
  move). A rule whose threshold is <= 0 is off; so is the sigma rule when the median absolute
  deviation is 0 (a price that moves on fewer than half of the days).
- A jump is a **split** (or a reverse split) when the price ratio ``close[t-1] / close[t]``
  is within ``split_tolerance`` (relative) of a ratio in :data:`SPLIT_RATIOS` or of its
  inverse, and, where day t has an open, the open is on the split's side of the gap
  (``log(close[t-1] / open[t])`` nearer ``log(ratio)`` than 0): a split shows at the open,
  an intraday crash of the same size does not. The smallest split ratio, 3:2, is a log return
  of 0.405, above ``jump_log_return``, so every split is also a jump.
- A split's new price level lasts: a candidate is no split when another jump within
  :data:`REVERT_DAYS` days takes the price back to where it was before the pair, up to an
  ordinary (non-jump) move. Such a pair is a bad print (a close x1.5 for a day, then back), or
  at least no lasting level shift to adjust for; both days stay price jumps.
- The volume **confirms** a split when the median volume of the :data:`VOLUME_DAYS` days from
  the split day on, over the median of the :data:`VOLUME_DAYS` days before it, is about the
  ratio: between ``sqrt(ratio)`` and ``ratio**2`` (nearer the ratio than 1 in log terms, and
  not the many-fold volume of a crash day). An unconfirmed split is adjusted all the same:
  volume data are often missing or already adjusted. Whether it confirmed is recorded.
- **Back-adjustment**: every row before a split day has its open, high, low and close divided
  by the ratio and its volume multiplied by it; several splits compound. Other columns are
  left as they are.

The clean stage (``core.clean``) adjusts splits before it derives features, then applies the
jump policy to the remaining jumps when it labels the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lstm_assets.core.settings import Settings

SPLIT_RATIOS: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 8.0, 10.0, 20.0)
"""Split ratios (new shares per old share); a reverse split's ratio is the inverse."""
RATIOS = np.array(sorted({*SPLIT_RATIOS, *(1.0 / r for r in SPLIT_RATIOS)}))
"""Every ratio ``close[t-1] / close[t]`` a split or reverse split produces, ascending."""
VOLUME_DAYS = 5
"""Days of volume on each side of a split compared to confirm it."""
REVERT_DAYS = 5
"""A jump that another jump within this many days undoes is no split (module docstring)."""
MAD_TO_STD = 1.4826
"""Median absolute deviation -> standard deviation of a normal distribution."""


@dataclass(frozen=True)
class Split:
    """A split found at row ``pos``: ``close[pos-1] / close[pos]`` is about ``ratio``."""

    pos: int
    ratio: float
    volume_confirmed: bool

    def record(self, dates: pd.Series) -> dict[str, Any]:
        """The entry of the clean stage's ``corporate_actions`` list."""
        return {"date": pd.Timestamp(dates.iloc[self.pos]).strftime("%Y-%m-%d"),
                "kind": "split" if self.ratio > 1 else "reverse split",
                "ratio": float(self.ratio), "volume_confirmed": bool(self.volume_confirmed)}


def log_returns(close: np.ndarray) -> np.ndarray:
    """Daily log returns of a positive price series; the first is NaN."""
    r = np.empty(len(close), dtype=np.float64)
    r[:1] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        np.subtract(np.log(close[1:]), np.log(close[:-1]), out=r[1:])
    return r


def robust_std(r: np.ndarray) -> float:
    """``1.4826 x`` the median absolute deviation of the finite values of ``r`` (0 if none)."""
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return 0.0
    return float(MAD_TO_STD * np.median(np.abs(r - np.median(r))))


def jump_threshold(r: np.ndarray, settings: Settings) -> float:
    """The smallest |log return| that is a price jump in the series of log returns ``r``
    (module docstring); inf when both rules are off."""
    out = settings.jump_log_return if settings.jump_log_return > 0 else np.inf
    if settings.jump_sigmas > 0:
        sd = robust_std(r)
        if sd > 0:
            out = min(out, settings.jump_sigmas * sd)
    return float(out)


def jump_mask(r: np.ndarray, settings: Settings) -> np.ndarray:
    """Which days of the log returns ``r`` are price jumps (module docstring); NaN never is."""
    return np.abs(np.nan_to_num(r, nan=0.0)) >= jump_threshold(r, settings)


def _reverted(logc: np.ndarray, jumps: np.ndarray, t: int, threshold: float) -> bool:
    """Another jump ``s`` within ``REVERT_DAYS`` of the jump ``t`` brings the log close back
    to its level before the pair, up to less than ``threshold``."""
    near = jumps[(jumps != t) & (np.abs(jumps - t) <= REVERT_DAYS)]
    for s in near:
        first, last = min(s, t), max(s, t)
        if abs(logc[last] - logc[first - 1]) < threshold:
            return True
    return False


def nearest_ratio(observed: np.ndarray, tolerance: float) -> np.ndarray:
    """The split ratio within ``tolerance`` (relative) of each observed price ratio, else NaN."""
    observed = np.asarray(observed, dtype=np.float64)
    rel = observed[:, None] / RATIOS[None, :] - 1.0
    best = np.argmin(np.abs(np.nan_to_num(rel, nan=np.inf)), axis=1)
    ratio = RATIOS[best]
    ok = np.abs(rel[np.arange(len(observed)), best]) <= tolerance
    return np.where(ok, ratio, np.nan)


def _volume_confirms(volume: np.ndarray | None, pos: int, ratio: float) -> bool:
    """Median volume from ``pos`` on over the median before it is about ``ratio``: between
    ``sqrt(ratio)`` and ``ratio**2`` (for a reverse split, between ``ratio**2`` and
    ``sqrt(ratio)``)."""
    if volume is None:
        return False
    before = volume[max(pos - VOLUME_DAYS, 0):pos]
    after = volume[pos:pos + VOLUME_DAYS]
    before, after = before[np.isfinite(before)], after[np.isfinite(after)]
    if len(before) == 0 or len(after) == 0:
        return False
    pre, post = float(np.median(before)), float(np.median(after))
    if pre <= 0 or post <= 0:
        return False
    return bool(0.5 < np.log(post / pre) / np.log(ratio) < 2.0)


def find_splits(close: np.ndarray, open_: np.ndarray | None, volume: np.ndarray | None,
                settings: Settings) -> list[Split]:
    """The splits of a date-sorted series of positive closes (module docstring), in order.

    ``open_`` and ``volume`` (same length, NaN where missing) are optional cross-checks."""
    r = log_returns(close)
    threshold = jump_threshold(r, settings)
    jumps = np.flatnonzero(np.abs(np.nan_to_num(r)) >= threshold)  # r[0] is NaN: all >= 1
    if len(jumps) == 0:
        return []
    prev = close[jumps - 1]
    ratio = nearest_ratio(prev / close[jumps], settings.split_tolerance)
    ok = np.isfinite(ratio)
    if open_ is not None and ok.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            gap = np.log(prev / open_[jumps])
            on_split_side = np.abs(gap - np.log(ratio)) < np.abs(gap)
        ok &= ~np.isfinite(gap) | on_split_side  # no usable open: the close decides
    logc = np.log(close)
    return [Split(int(p), float(q), _volume_confirms(volume, int(p), float(q)))
            for p, q in zip(jumps[ok], ratio[ok], strict=True)
            if not _reverted(logc, jumps, int(p), threshold)]


def adjustment_factors(n: int, splits: list[Split]) -> np.ndarray:
    """Per row: the product of the ratios of the splits after it (1 from the last split on)."""
    f = np.ones(n, dtype=np.float64)
    for s in splits:
        f[s.pos - 1] *= s.ratio
    return np.cumprod(f[::-1])[::-1]


def adjust_splits(df: pd.DataFrame, settings: Settings) -> list[dict[str, Any]]:
    """Find the splits in ``df`` (date-sorted rows with a positive ``close``; ``open``,
    ``high``, ``low``, ``volume`` optional) and back-adjust the rows before each, in place.

    Returns the records (``date``, ``kind``, ``ratio``, ``volume_confirmed``), in date order.
    """
    def column(name: str) -> np.ndarray | None:
        return df[name].to_numpy(dtype=np.float64) if name in df.columns else None

    close = df["close"].to_numpy(dtype=np.float64)
    splits = find_splits(close, column("open"), column("volume"), settings)
    if not splits:
        return []
    factor = adjustment_factors(len(df), splits)
    for col in ("open", "high", "low", "close"):
        if col in df.columns:
            df[col] = df[col].to_numpy(dtype=np.float64) / factor
    if "volume" in df.columns:
        df["volume"] = df["volume"].to_numpy(dtype=np.float64) * factor
    return [s.record(df["date"]) for s in splits]


def excluded_rows(jumps: np.ndarray, n: int, horizon: int, lookback: int) -> np.ndarray:
    """Rows a jump at each of ``jumps`` spoils: ``t`` in ``[j - horizon, j + lookback - 1]``.

    Rows ``j - horizon .. j - 1`` have a forward return that crosses the jump; rows
    ``j .. j + lookback - 1`` end a window that contains the jump day's return."""
    delta = np.zeros(n + 1, dtype=np.int64)
    np.add.at(delta, np.clip(jumps - horizon, 0, n), 1)
    np.add.at(delta, np.clip(jumps + lookback, 0, n), -1)
    return np.cumsum(delta[:n]) > 0
