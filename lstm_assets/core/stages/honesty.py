"""Does the pipeline learn what is there, and only that? Oracle and null checks on demo data.

``signal`` demo data plants a pattern whose best achievable accuracy is known exactly: the model
should come close to it and clearly beat the baselines. ``null`` demo data has no pattern: a
model that beats the majority baseline there beyond noise has found a leak.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from lstm_assets.core.demo import DemoSpec, generate
from lstm_assets.core.settings import Settings
from lstm_assets.core.stages import Layout, run_symbol

log = logging.getLogger(__name__)


def check_demo(workdir: Path, mode: str, settings: Settings, symbols: int = 8, years: int = 20,
               seed: int = 7) -> dict[str, Any]:
    """Generate demo data, run every symbol through the core chain, summarise the accuracies."""
    raw = workdir / mode / "raw"
    generate(raw, DemoSpec(symbols=symbols, years=years, seed=seed, mode=mode))
    layout = Layout.from_dirs(raw, workdir / mode / "warehouse", raw.parent / "demo_truth")
    rows = []
    for sym in layout.symbols():
        rep = run_symbol(layout, sym, settings)["report"]
        b = rep["baselines"]
        rows.append({
            "symbol": sym,
            "model": rep["model"]["accuracy"],
            "majority": b["majority"]["accuracy"],
            "prior": b["prior"]["accuracy"],
            "logreg_last": b["logreg_last"]["accuracy"],
            "oracle": (rep.get("oracle") or {}).get("expected_accuracy"),
            "significant_edge": rep["significant_edge"],
        })
        log.info("%s %s: %s", mode, sym, rows[-1])
    mean = {k: float(np.mean([r[k] for r in rows if r[k] is not None]))
            for k in ("model", "majority", "prior", "logreg_last", "oracle")}
    return {"mode": mode, "symbols": rows, "mean": mean}


def format_summary(res: dict[str, Any]) -> str:
    m = res["mean"]
    lines = [f"{res['mode']} demo data, {len(res['symbols'])} symbols — mean test accuracy:",
             "  " + "  ".join(f"{k} {100 * v:.1f}%" for k, v in m.items())]
    if res["mode"] == "signal":
        gap = 100 * (m["oracle"] - m["model"])
        best = max(m["majority"], m["prior"], m["logreg_last"])
        lines.append(f"  model is {gap:.1f} points below the oracle (target: within 3) and "
                     f"{100 * (m['model'] - best):+.1f} points above the best baseline")
    elif res["mode"] == "weak":
        lines.append(f"  model minus majority: {100 * (m['model'] - m['majority']):+.1f} points, "
                     f"oracle minus majority: {100 * (m['oracle'] - m['majority']):+.1f} (a "
                     "pattern this weak is for pooled models: lstm-assets compare)")
    else:
        lines.append(f"  model minus majority: {100 * (m['model'] - m['majority']):+.1f} points "
                     "(must not exceed +2: more would mean a leak)")
    return "\n".join(lines)
