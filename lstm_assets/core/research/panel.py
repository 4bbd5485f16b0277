"""A universe of symbols as one panel: labels for any horizon and target, walk-forward folds
over dates, and per-fold pooled training sets.

**Labels.** For horizon ``h`` the forward return of day t is ``log close[t+h] - log close[t]``
(the clean frames' split-adjusted close). With ``target="excess"`` the universe's mean forward
return of that date (over the symbols that have one) is subtracted first: what is left is the
part of a move a cross-sectional strategy can trade. A forward return that crosses a row the
clean stage excluded for a price jump (label -2) is no sample. UP / DOWN / FLAT use the project's
``vol_quantile`` rule: band = k x the clean frame's trailing volatility x sqrt(h), with k fit on
each symbol's training rows of the fold so that ``flat_share`` of them are FLAT.

**Folds.** The universe's dates after the first ``train_frac`` share are cut into ``folds``
consecutive test blocks (rolling origin, expanding window): fold j trains on every date before
its test block, the last ``val_frac / (train_frac + val_frac)`` share of them being the
early-stopping validation dates, with ``gap = max(embargo, h)`` dates dropped before validation
and before test, so no training label looks into validation or test. Every symbol uses the same
dates, so one date's predictions across symbols are comparable (cross-sectional IC).

**Pooled training sets.** Per fold, each symbol's features are scaled by a scaler fit on its own
training rows (rows a jump excluded left out), clipped like the per-symbol stage, and the symbols'
matrices are stacked; a last column holds the symbol's index (for an optional embedding). A
window never crosses two symbols: a sample's end row is at least ``lookback - 1`` rows into its
symbol. :class:`PanelSet` is a :class:`~lstm_assets.core.sequences.SequenceSet` with explicit
end rows per split, so the project's one training loop trains pooled networks unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lstm_assets.core.clean import EXCLUDED_LABEL, feature_columns
from lstm_assets.core.sequences import CLIP, SequenceSet
from lstm_assets.core.settings import Settings
from lstm_assets.core.splits import Bounds

TARGETS = ("raw", "excess")
SPLITS = ("train", "val", "test")
SYMBOL_COLUMN = "symbol_id"


@dataclass(frozen=True)
class Fold:
    """Date ranges (inclusive) of one walk-forward fold."""

    index: int
    train: tuple[np.datetime64, np.datetime64]
    val: tuple[np.datetime64, np.datetime64]
    test: tuple[np.datetime64, np.datetime64]

    def split_of(self, dates: np.ndarray) -> np.ndarray:
        """Per date: 0 train, 1 val, 2 test, -1 none (a gap, before or after the fold)."""
        out = np.full(len(dates), -1, dtype=np.int8)
        for code, (lo, hi) in enumerate((self.train, self.val, self.test)):
            out[(dates >= lo) & (dates <= hi)] = code
        return out

    def describe(self) -> dict[str, str]:
        return {s: f"{lo} .. {hi}" for s, (lo, hi) in zip(SPLITS, (self.train, self.val,
                                                                    self.test), strict=True)}


@dataclass
class Panel:
    """The universe's clean frames, aligned: per symbol its dates, features, close and the
    forward returns and labels of one horizon and target (labels are per fold, see
    :meth:`labels`)."""

    symbols: list[str]
    features: list[str]
    dates: list[np.ndarray]  # per symbol, datetime64[D]
    X: list[np.ndarray]  # per symbol, (rows, features) float64, unscaled
    close: list[np.ndarray]
    fwd: list[np.ndarray]  # per symbol: the horizon's forward (raw or excess) log return
    vol: list[np.ndarray]  # per symbol: trailing volatility scaled to the horizon
    usable: list[np.ndarray]  # per symbol: rows not excluded for a price jump
    horizon: int
    target: str
    _factors: list[dict[str, np.ndarray]] | None = field(default=None, repr=False)

    def factors(self) -> list[dict[str, np.ndarray]]:
        """Per symbol, its price factors (``families.factor_scores``), computed once."""
        if self._factors is None:
            from lstm_assets.core.research.families import factor_scores

            self._factors = [factor_scores(c) for c in self.close]
        return self._factors

    @property
    def all_dates(self) -> np.ndarray:
        return np.unique(np.concatenate(self.dates))

    def labels(self, j: int, fold: Fold, flat_share: float) -> np.ndarray:
        """Symbol j's labels under ``fold``: the band's k fit on its training rows."""
        z = np.abs(self.fwd[j] / self.vol[j])
        train = (fold.split_of(self.dates[j]) == 0) & np.isfinite(z) & self.usable[j]
        k = float(np.quantile(z[train], flat_share)) if train.any() else float("nan")
        band = k * self.vol[j]
        fwd = self.fwd[j]
        y = np.where(fwd > band, 2, np.where(fwd < -band, 0, 1)).astype(np.int8)
        y[~np.isfinite(fwd) | ~np.isfinite(band)] = -1
        y[~self.usable[j]] = EXCLUDED_LABEL
        return y


def build_panel(frames: dict[str, pd.DataFrame], settings: Settings, horizon: int = 1,
                target: str = "raw") -> Panel:
    """The panel of ``frames`` (symbol -> clean frame) for one horizon and target, on the
    feature columns every frame has (a column the clean stage dropped for one symbol, e.g. for
    missing values, is left out for all)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, not {horizon}")
    symbols = sorted(frames)
    if not symbols:
        raise ValueError("no symbols to build a panel from")
    common = set.intersection(*(set(feature_columns(frames[s])) for s in symbols))
    features = [f for f in feature_columns(frames[symbols[0]]) if f in common]
    if not features:
        raise ValueError("the symbols' clean frames share no feature column")
    p = Panel(symbols, features, [], [], [], [], [], [], horizon, target)
    for sym in symbols:
        df = frames[sym]
        logc = np.log(df["close"].to_numpy(dtype=np.float64))
        n = len(df)
        fwd = np.full(n, np.nan)
        fwd[: n - horizon] = logc[horizon:] - logc[: n - horizon]
        excluded = df["label"].to_numpy() == EXCLUDED_LABEL
        # the forward return of row t spans rows t..t+h: it is dropped when any of them is a
        # row the clean stage excluded around a price jump (that stage marks the rows for its
        # own horizon only)
        crossed = np.convolve(excluded.astype(int),
                              np.ones(horizon + 1, dtype=int))[horizon:horizon + n] > 0
        fwd[crossed] = np.nan
        vol1 = df["vol_est"].to_numpy(dtype=np.float64) / np.sqrt(settings.horizon)
        p.dates.append(df["date"].to_numpy().astype("datetime64[D]"))
        p.X.append(df[features].to_numpy(dtype=np.float64))
        p.close.append(np.exp(logc))
        p.fwd.append(fwd)
        p.vol.append(vol1 * np.sqrt(horizon))
        p.usable.append(~excluded)
    if target == "excess":
        _to_excess(p)
    return p


def _to_excess(p: Panel) -> None:
    """Subtract each date's mean forward return over the symbols that have one."""
    days = np.concatenate(p.dates)
    fwd = np.concatenate(p.fwd)
    ok = np.isfinite(fwd)
    uniq, inv = np.unique(days, return_inverse=True)
    sums = np.bincount(inv[ok], weights=fwd[ok], minlength=len(uniq))
    counts = np.bincount(inv[ok], minlength=len(uniq))
    mean = np.divide(sums, counts, out=np.full(len(uniq), np.nan), where=counts > 0)
    start = 0
    for j, d in enumerate(p.dates):
        p.fwd[j] = p.fwd[j] - mean[inv[start:start + len(d)]]
        start += len(d)


def walk_forward_folds(dates: np.ndarray, settings: Settings, folds: int,
                       horizon: int = 1) -> list[Fold]:
    """``folds`` rolling-origin folds over the sorted unique ``dates`` (see the module doc)."""
    if folds < 1:
        raise ValueError(f"folds must be >= 1, not {folds}")
    d = np.unique(dates)
    gap = max(settings.embargo, horizon)
    first = settings.lookback - 1
    stop = len(d) - horizon
    start = first + int((stop - first) * settings.train_frac)
    edges = np.linspace(start, stop, folds + 1).astype(int)
    out = []
    val_share = settings.val_frac / (settings.train_frac + settings.val_frac)
    for j in range(folds):
        test_lo, test_hi = int(edges[j]) + gap, int(edges[j + 1]) - 1
        fit_end = int(edges[j])  # dates before the test block's gap
        n_val = int((fit_end - first) * val_share)
        train_hi = fit_end - n_val - gap - 1
        val_lo = fit_end - n_val
        if min(train_hi - first, fit_end - 1 - val_lo, test_hi - test_lo) < 20:
            raise ValueError(f"fold {j + 1} of {folds}: fewer than 20 dates in a split "
                             f"({len(d)} dates in all); use fewer folds or more history")
        out.append(Fold(j + 1, (d[first], d[train_hi]), (d[val_lo], d[fit_end - 1]),
                        (d[test_lo], d[test_hi])))
    return out


@dataclass
class PanelSet(SequenceSet):
    """A pooled :class:`SequenceSet`: the stacked, per-symbol-scaled matrices of a panel for one
    fold, with explicit end rows per split and each row's symbol index and date."""

    rows: dict[str, np.ndarray] = field(default_factory=dict)
    symbol_of_row: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    symbols: list[str] = field(default_factory=list)
    fwd: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Per row: the panel's forward return (raw or excess, its horizon)."""
    source_row: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Per row: its row in its symbol's frame (to look up per-symbol series such as factors)."""

    def end_rows(self, split: str) -> np.ndarray:
        return self.rows[split]


def pooled_set(panel: Panel, fold: Fold, settings: Settings,
               symbol_column: bool = True) -> PanelSet:
    """The panel's pooled training set for ``fold`` (see the module doc). ``symbol_column``:
    append the symbol index as the last input column."""
    lb = settings.lookback
    mats, ys, dates, owners, fwds, src = [], [], [], [], [], []
    rows: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    offset = 0
    for j, raw in enumerate(panel.X):
        split = fold.split_of(panel.dates[j])
        y = panel.labels(j, fold, settings.flat_share)
        fit_rows = (split == 0) & panel.usable[j] & np.all(np.isfinite(raw), axis=1)
        if fit_rows.sum() < 2:
            continue  # the symbol has no training history in this fold
        mean = raw[fit_rows].mean(axis=0)
        scale = raw[fit_rows].std(axis=0)
        scale[~(scale > 0)] = 1.0  # scikit-learn's rule for a constant feature
        X = np.clip((raw - mean) / scale, -CLIP, CLIP)
        X = np.nan_to_num(X, nan=0.0, posinf=CLIP, neginf=-CLIP).astype(np.float32)
        if symbol_column:
            X = np.hstack([X, np.full((len(X), 1), j, dtype=np.float32)])
        idx = np.arange(len(X))
        for code, s in enumerate(SPLITS):
            ok = (split == code) & (y >= 0) & (idx >= lb - 1)
            rows[s].append(offset + idx[ok])
        mats.append(X)
        ys.append(y)
        dates.append(panel.dates[j])
        owners.append(np.full(len(X), j, dtype=np.int32))
        fwds.append(panel.fwd[j])
        src.append(idx)
        offset += len(X)
    if not mats:
        raise ValueError(f"fold {fold.index}: no symbol has training rows")
    X = np.concatenate(mats)
    feats = panel.features + ([SYMBOL_COLUMN] if symbol_column else [])
    return PanelSet(X=X, y=np.concatenate(ys), dates=np.concatenate(dates),
                    bounds=Bounds(0, 0, 0, 0, 0, 0), features=feats,
                    mean=np.zeros(X.shape[1]), scale=np.ones(X.shape[1]), lookback=lb,
                    rows={s: np.concatenate(r).astype(np.int64) for s, r in rows.items()},
                    symbol_of_row=np.concatenate(owners), symbols=list(panel.symbols),
                    fwd=np.concatenate(fwds), source_row=np.concatenate(src).astype(np.int64))


def read_frames(raw_dir: str | Path, settings: Settings, symbols: list[str] | None = None,
                on_file: Callable[[str, str | None], None] | None = None
                ) -> dict[str, pd.DataFrame]:
    """The clean frames of the raw files in ``raw_dir`` (all, or ``symbols``), made by the
    pipeline's own reading and cleaning code. A file that cannot be used is left out:
    ``on_file(symbol, error)`` hears of each file (error None when it was used)."""
    from lstm_assets.core.clean import clean_frame
    from lstm_assets.core.ingest import check_inside, list_raw_files, read_raw
    from lstm_assets.core.storage import InputError

    files = list_raw_files(Path(raw_dir))
    out: dict[str, pd.DataFrame] = {}
    for sym in sorted(files) if symbols is None else symbols:
        if sym not in files:
            raise ValueError(f"no raw file for {sym} in {raw_dir}")
        try:
            check_inside(files[sym], Path(raw_dir))  # never read outside the folder given
            raw, _info = read_raw(files[sym], settings)
            out[sym], _ = clean_frame(raw, settings, str(files[sym]))
        except (InputError, ValueError) as exc:
            if on_file:
                on_file(sym, str(exc))
            continue
        if on_file:
            on_file(sym, None)
    return out
