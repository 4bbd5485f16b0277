"""A model comparison as people read it: one table per horizon and target, the verdict it
supports, and plots (daily IC through time, cumulative long/short after costs, IC per fold).

Written by ``lstm-assets compare`` and the ``model_comparison`` asset: ``comparison.json`` (every
figure), ``comparison.md`` (the tables) and one PNG per horizon and target.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _num(x: float | None, fmt: str) -> str:
    return "—" if x is None or not math.isfinite(float(x)) else format(float(x), fmt)


def _pct(d: dict[str, float] | None) -> str:
    if not d:
        return "—"
    return f"{100 * d['value']:.1f}% [{100 * d['low']:.1f}, {100 * d['high']:.1f}]"


def _row(r: dict[str, Any]) -> str:
    ic, ls = r["ic"], r["long_short"]
    folds = " / ".join(_num(v, "+.3f") for v in r["ic_by_fold"].values())
    cells = [f"`{r['family']}`", r["kind"],
             f"{_num(ic['mean'], '+.4f')} [{_num(ic['ci_low'], '+.4f')}, "
             f"{_num(ic['ci_high'], '+.4f')}]", _num(ic["t"], "+.2f"), _num(ic["icir"], "+.3f"),
             folds, f"{_num(1e4 * ls['mean_net'], '+.1f')} ({_num(ls['t_net'], '+.1f')})"]
    if r["kind"] == "model":
        c = r["classification"]
        ps = r["per_symbol"]
        vs = r["vs_best_factor"]
        cells += [_pct(c["accuracy"]), f"{100 * r['majority_accuracy']:.1f}%",
                  _pct(c["balanced_accuracy"]), _num(c["log_loss"]["value"], ".4f"),
                  f"{ps['significant_bh']} of {ps['symbols']} ({ps['significant_raw']} before)",
                  f"{_num(vs['mean'], '+.4f')} [{_num(vs['low'], '+.4f')}, "
                  f"{_num(vs['high'], '+.4f')}], p {_num(vs['p'], '.3f')}"]
    else:
        cells += ["—"] * 6
    return "| " + " | ".join(cells) + " |"


HEADER = ("| family | kind | mean daily rank IC [95% CI] | t (Newey-West) | ICIR | IC per fold | "
          "long/short net bp/day (t) | accuracy [95% CI] | majority | balanced acc. | log loss | "
          "symbols beating their majority (BH 5%) | IC minus best factor's [95% CI], p |")


def verdict(run: dict[str, Any], n_tried: int) -> str:
    """One plain sentence on what the run shows, from its own figures."""
    models = [r for r in run["families"] if r["kind"] == "model"]
    if not models:
        return "No model family ran."
    best = max(models, key=lambda r: r["ic"]["mean"])
    ic = best["ic"]
    spa = run.get("spa") or {}
    beats = best["vs_best_factor"]["low"] > 0
    if ic["t"] >= 2 and beats and spa.get("p", 1) < 0.05:
        return (f"`{best['family']}` has a mean daily rank IC of {ic['mean']:+.4f} (t "
                f"{ic['t']:.1f}), above the best factor (`{run['best_factor']}`) and significant "
                f"after choosing the best of {n_tried} configurations (SPA p {spa['p']:.3f}).")
    spa_text = f", SPA p {spa['p']:.3f} over {spa['n_models']} models" if spa else ""
    return (f"No family shows a usable edge: the best, `{best['family']}`, has a mean daily rank "
            f"IC of {ic['mean']:+.4f} (t {ic['t']:.1f}); against the best factor "
            f"(`{run['best_factor']}`) the difference is {best['vs_best_factor']['mean']:+.4f} "
            f"[{best['vs_best_factor']['low']:+.4f}, {best['vs_best_factor']['high']:+.4f}]"
            f"{spa_text}. "
            f"This design detects a true mean IC of {ic['min_detectable']:.4f} or more with 80% "
            f"power: a larger edge is ruled out.")


def markdown(result: dict[str, Any], images: dict[str, bytes] | None = None) -> str:
    """The comparison's tables and verdicts; ``images`` (run key -> PNG) are embedded."""
    spec = result["spec"]
    lines = [f"# Model comparison — {result['symbols']} symbols, {spec['folds']} walk-forward "
             f"folds", "",
             f"{result['configurations_tried']} configurations compared (families x horizons x "
             f"targets); factor baselines in every table. Intervals: 95%, from a bootstrap over "
             f"blocks of {spec['block']} dates ({spec['n_resamples']} resamples); IC t-statistics "
             f"use Newey-West standard errors; long/short: top minus bottom "
             f"{100 * spec['quantile']:.0f}% by score, {spec['cost_bps']:g} bps a side."]
    for run in result["runs"]:
        key = run_key(run)
        lines += ["", f"## Horizon {run['horizon']} day(s), {run['target']} return", "",
                  "**Verdict:** " + verdict(run, result["configurations_tried"]), "",
                  "Folds (test dates): " + "; ".join(
                      f"{f['fold']}: {f['test']}" for f in run["folds"]), "", HEADER,
                  "|" + "---|" * (HEADER.count("|") - 1)]
        lines += [_row(r) for r in run["families"]]
        spa = run.get("spa")
        if spa:
            lines += ["", f"Hansen's SPA test, H0 no model beats `{spa['benchmark']}`: p "
                      f"{spa['p']:.3f} (best `{spa['best_model']}`, {spa['n_models']} models, "
                      f"{spa['n_dates']} dates)."]
        if images and key in images:
            b64 = base64.b64encode(images[key]).decode()
            lines += ["", f"![{key}](data:image/png;base64,{b64})"]
    return "\n".join(lines) + "\n"


def run_key(run: dict[str, Any]) -> str:
    return f"h{run['horizon']}_{run['target']}"


def plot_png(run: dict[str, Any], series: dict[str, dict[str, Any]]) -> bytes:
    """IC through time (cumulative), cumulative net long/short, and IC per fold."""
    fig, ax = plt.subplots(1, 3, figsize=(14, 4), dpi=72)
    for name, s in series.items():
        ic: pd.Series = s["ic"]
        style = "-" if any(r["family"] == name and r["kind"] == "model"
                           for r in run["families"]) else ":"
        ax[0].plot(ic.index, ic.cumsum().to_numpy(), style, label=name)
        ls: pd.DataFrame = s["long_short"]
        ax[1].plot(ls.index, ls["cum_net"].to_numpy(), style, label=name)
    ax[0].set(title="cumulative daily rank IC", xlabel="test date")
    ax[1].set(title="cumulative long/short, net of costs", xlabel="test date")
    names = [r["family"] for r in run["families"]]
    folds = sorted({int(f) for r in run["families"] for f in r["ic_by_fold"]})
    width = 0.8 / max(len(names), 1)
    for i, r in enumerate(run["families"]):
        vals = [r["ic_by_fold"].get(f, np.nan) for f in folds]
        ax[2].bar(np.arange(len(folds)) + i * width, vals, width, label=r["family"])
    ax[2].axhline(0, color="grey", lw=0.5)
    ax[2].set(title="mean daily rank IC per fold", xticks=np.arange(len(folds)) + 0.4,
              xticklabels=[str(f) for f in folds], xlabel="fold")
    ax[2].legend(fontsize=7)
    ax[0].legend(fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
