"""The ``scaling`` section: the data stages and one training epoch at several symbol counts
(at the main set's history length) and several history lengths (at a fixed symbol count), per
symbol-year, so a cost that grows faster than the data shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lstm_assets.bench.context import Bench
from lstm_assets.bench.data_stages import stage_totals, time_data_stages
from lstm_assets.bench.demo import demo_layout, make_demo
from lstm_assets.core import stages
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.train import fit


def _epochs(bench: Bench, layout: stages.Layout, symbols: Sequence[str]) -> list[float]:
    """Seconds of one training epoch per symbol (NaN where it has no sequences)."""
    out = []
    for sym in symbols:
        p = layout.warehouse.sequences(sym)
        if not p.exists():
            out.append(float("nan"))
            continue
        out.append(fit(SequenceSet.load(p), bench.settings, max_epochs=1).seconds)
    return out


def _scale_row(kind: str, n: int, years: int, stage_rows: list[dict[str, Any]],
               epochs: list[float]) -> dict[str, Any]:
    tot = stage_totals(stage_rows)
    ep = float(np.nansum(epochs))
    sy = max(n * years, 1)
    return {"sweep": kind, "symbols": n, "years": years, "rows": tot["rows"],
            "data_seconds": tot["seconds"], "data_rows_per_second": tot["rows_per_second"],
            "data_ms_per_symbol_year": tot["seconds"] / sy, "epoch_seconds": ep,
            "epoch_ms_per_symbol_year": ep / sy}


def linearity(table: list[dict[str, Any]]) -> dict[str, float | None]:
    """Cost per symbol-year at the largest size over the smallest, per sweep (1.0 = linear)."""
    out: dict[str, float | None] = {}
    for sweep in ("symbols", "years"):
        rows = [r for r in table if r["sweep"] == sweep]
        for key in ("data", "epoch"):
            k = f"{key}_ms_per_symbol_year"
            ok = rows and rows[0][k] > 0
            out[f"{sweep}_{key}"] = rows[-1][k] / rows[0][k] if ok else None
    return out


class _Sweeps:
    """The main set's stage rows and epochs, reused by both sweeps where they cover a size."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.layout, self.symbols = bench.main_data()
        stage_rows = bench.details.get("data_rows")
        if stage_rows is None:
            stage_rows = time_data_stages(self.layout, self.symbols, bench.settings)
            bench.details["data_rows"] = stage_rows
        self.stage_rows: list[dict[str, Any]] = stage_rows
        self.n_train = min(max(bench.size.scale_symbols), len(self.symbols))
        self.epoch: list[float] = []

    def symbol_rows(self) -> list[dict[str, Any]]:
        """One row per symbol count that the main set has."""
        sz = self.bench.size
        self.epoch = _epochs(self.bench, self.layout, self.symbols[:self.n_train])
        return [_scale_row("symbols", n, sz.data_years, self.stage_rows[:n], self.epoch[:n])
                for n in sz.scale_symbols if n <= len(self.symbols)]

    def year_row(self, years: int) -> dict[str, Any]:
        """``scale_years_symbols`` symbols at ``years``: the main set's where it matches,
        else a set made for it."""
        sz, k = self.bench.size, self.bench.size.scale_years_symbols
        if years == sz.data_years and k <= len(self.symbols):
            ep = (self.epoch[:k] if k <= self.n_train else
                  _epochs(self.bench, self.layout, self.symbols[:k]))
            return _scale_row("years", k, years, self.stage_rows[:k], ep)
        root = self.bench.work / f"years_{k}x{years}"
        lay = demo_layout(make_demo(root, k, years), root / "wh")
        syms = lay.symbols()
        st_rows = time_data_stages(lay, syms, self.bench.settings)
        return _scale_row("years", k, years, st_rows, _epochs(self.bench, lay, syms))


def scaling(bench: Bench) -> None:
    """The ``scaling`` section (see the module's docstring)."""
    sz = bench.size
    sweeps = _Sweeps(bench)
    bench.say(f"scaling: one epoch for each of {sweeps.n_train} symbols; years "
              f"{', '.join(map(str, sz.scale_years))} at {sz.scale_years_symbols} symbols")
    table = sweeps.symbol_rows() + [sweeps.year_row(y) for y in sz.scale_years]
    bench.details["scaling"] = table
    bench.figures["scaling"] = table
    for r in table:
        bench.add("scaling", f"{r['symbols']:>3} symbols x {r['years']:>2} y",
                  f"data {r['data_seconds']:.2f}s ({1000 * r['data_ms_per_symbol_year']:.1f} "
                  f"ms/symbol-year), epoch {r['epoch_seconds']:.2f}s "
                  f"({1000 * r['epoch_ms_per_symbol_year']:.1f} ms/symbol-year)")
    bench.figures["scaling_linear"] = linearity(table)
