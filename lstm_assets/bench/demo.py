"""The demo data sets the sections run on: raw files made with :mod:`lstm_assets.core.demo`
into the bench's work folder, and the stage layout over them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lstm_assets.core import stages
from lstm_assets.core.demo import DemoSpec, generate


def make_demo(root: Path, symbols: int, years: int, seed: int = 7,
              defect_share: float = 0.25) -> Path:
    """Demo raw files under ``root/raw`` (made once; reused when already there)."""
    raw = root / "raw"
    if not (raw.exists() and len(list(raw.iterdir())) >= symbols):
        generate(raw, DemoSpec(symbols=symbols, years=years, seed=seed,
                               defect_share=defect_share))
    return raw


def demo_layout(raw: Path, wh: Path) -> stages.Layout:
    """The stages' layout over raw folder ``raw`` and warehouse ``wh``."""
    return stages.Layout.from_dirs(raw, wh)


def drop_last_day(src: Path, dst: Path) -> str:
    """Copy a raw CSV without its latest date's rows: the file as it was a day earlier."""
    df = pd.read_csv(src, dtype={"date": str})
    last = max(df["date"].dropna())
    dst.parent.mkdir(parents=True, exist_ok=True)
    df[df["date"] != last].to_csv(dst, index=False)
    return last
