"""Chronological train/val/test split of sample end-days, with an embargo.

A sample ending on row t uses feature rows ``t-lookback+1 .. t`` and its label looks at the close
of row ``t+horizon``. So sample end rows run from ``lookback-1`` to ``n-1-horizon``. They are cut
in time order into train/val/test by fraction, and the first ``gap = max(embargo, horizon)``
samples of val and of test are dropped: the last training label (row ``a-1`` looking at
``a-1+h``) then ends before the first validation label begins, and likewise val before test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lstm_assets.core.settings import Settings

MIN_SPLIT_SAMPLES = 20


@dataclass(frozen=True)
class Bounds:
    """Half-open ranges ``[start, end)`` of sample end rows for each split."""

    train_start: int
    train_end: int
    val_start: int
    val_end: int
    test_start: int
    test_end: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def as_list(self) -> list[int]:
        return list(asdict(self).values())

    def range(self, split: str) -> range:
        return range(getattr(self, f"{split}_start"), getattr(self, f"{split}_end"))

    def sizes(self) -> dict[str, int]:
        return {s: len(self.range(s)) for s in ("train", "val", "test")}


def min_rows(settings: Settings) -> int:
    """Fewest clean rows that still give every split ``MIN_SPLIT_SAMPLES`` samples."""
    gap = settings.effective_gap()
    test_frac = 1 - settings.train_frac - settings.val_frac
    smallest = min(settings.train_frac, settings.val_frac, test_frac)
    samples = int(MIN_SPLIT_SAMPLES / smallest) + 2 * gap + 3
    return samples + settings.lookback - 1 + settings.horizon


def split_bounds(n_rows: int, settings: Settings) -> Bounds | None:
    """Bounds for a frame of ``n_rows`` clean rows, or None when it is too short."""
    lb, h, gap = settings.lookback, settings.horizon, settings.effective_gap()
    first, stop = lb - 1, n_rows - h
    m = stop - first
    if m <= 0:
        return None
    a = first + int(m * settings.train_frac)
    b = a + int(m * settings.val_frac)
    bounds = Bounds(first, a, a + gap, b, b + gap, stop)
    if min(bounds.sizes().values()) < MIN_SPLIT_SAMPLES:
        return None
    return bounds
