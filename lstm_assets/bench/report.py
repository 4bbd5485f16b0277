"""What a run hands back: table rows, JSON-safe values, and the Markdown table ``bench``
prints (and BENCHMARKS.md quotes)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Row:
    """One line of the printed table: a figure, its value, and the target it is held to."""

    section: str
    figure: str
    value: str
    target: str = ""
    met: bool | None = None


def clean_json(o: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None, paths to strings."""
    if isinstance(o, dict):
        return {str(k): clean_json(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [clean_json(v) for v in o]
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, Path):
        return str(o)
    return o


def met_cell(met: bool | None) -> str:
    """The table's "met" column: empty where no target, "yes", or a bold "no"."""
    return "" if met is None else ("yes" if met else "**no**")


def format_table(result: dict[str, Any]) -> str:
    """The Markdown table of a :func:`~lstm_assets.bench.runner.run_bench` result."""
    meta = result["meta"]
    lines = [f"lstm-assets bench ({meta['size']}): {meta['cpu']}, {meta['cores']} cores, "
             f"torch {meta['torch']} ({meta['torch_threads']} threads)"
             + (f", GPU {meta['cuda']}" if meta.get("cuda") else "")
             + f"; {meta['date']}; load average {meta['load_average_start']} -> "
             f"{meta['load_average_end']}; {meta['seconds']:.0f}s", "",
             "| section | figure | measured | target | met |", "|---|---|---|---|---|"]
    for r in result["table"]:
        lines.append(f"| {r['section']} | {r['figure']} | {r['value']} | {r['target']} | "
                     f"{met_cell(r['met'])} |")
    return "\n".join(lines) + "\n"
