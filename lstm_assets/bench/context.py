"""``Bench``: the state of one benchmark run, which every section reads and fills.

A section is a function ``section(bench)`` (in its own module): it runs its measurements,
puts flat figures into ``bench.figures`` (the JSON), larger per-item results into
``bench.details``, and table lines through ``bench.add``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lstm_assets.bench.config import BenchSize
from lstm_assets.bench.demo import demo_layout, make_demo
from lstm_assets.bench.report import Row
from lstm_assets.core import stages
from lstm_assets.core.settings import Settings


@dataclass
class Bench:
    """One benchmark run: the sections fill ``figures`` (flat, JSON) and ``rows`` (the table)."""

    size: BenchSize
    work: Path
    say: Callable[[str], None] = print
    workers: int = 1
    figures: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.size.settings

    def add(self, section: str, figure: str, value: str, target: str = "",
            met: bool | None = None) -> None:
        """A line of the table."""
        self.rows.append(Row(section, figure, value, target, met))

    def main_data(self) -> tuple[stages.Layout, list[str]]:
        """The data-stage set (N symbols x Y years, with defects) and its warehouse, shared by
        the data, signals, scaling and GPU sections (made by the first that needs it)."""
        root = self.work / f"main_{self.size.data_symbols}x{self.size.data_years}"
        if "main" not in self.details:
            t0 = time.perf_counter()
            make_demo(root, self.size.data_symbols, self.size.data_years)
            self.details["main"] = {"generate_seconds": time.perf_counter() - t0}
        layout = demo_layout(root / "raw", root / "wh")
        return layout, layout.symbols()
