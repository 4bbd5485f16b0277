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

from lstm_assets.core.research.tuning import bonferroni  # noqa: E402


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


def _p(p: float) -> str:
    return "—" if not math.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def verdict(run: dict[str, Any], n_tried: int) -> str:
    """One plain sentence on what the run shows, from its own figures. An edge needs a t of 2
    or more, an interval above the best factor's IC, the SPA test (p < 0.05) and the IC's
    p-value corrected for the ``n_tried`` configurations (Bonferroni, p < 0.05)."""
    models = [r for r in run["families"] if r["kind"] == "model"]
    if not models:
        return "No model family ran."
    best = max(models, key=lambda r: r["ic"]["mean"])
    ic = best["ic"]
    spa = run.get("spa") or {}
    beats = best["vs_best_factor"]["low"] > 0
    p_adj = bonferroni(ic["p"], n_tried)
    p_text = (f"IC p {_p(ic['p'])}, {_p(p_adj)} corrected for {n_tried} configurations "
              f"(Bonferroni)")
    if ic["t"] >= 2 and beats and spa.get("p", 1) < 0.05 and p_adj < 0.05:
        return (f"`{best['family']}` has a mean daily rank IC of {ic['mean']:+.4f} (t "
                f"{ic['t']:.1f}), above the best factor (`{run['best_factor']}`) and significant "
                f"after choosing the best of {n_tried} configurations (SPA p {spa['p']:.3f}; "
                f"{p_text}).")
    spa_text = f", SPA p {spa['p']:.3f} over {spa['n_models']} models" if spa else ""
    return (f"No family shows a usable edge: the best, `{best['family']}`, has a mean daily rank "
            f"IC of {ic['mean']:+.4f} (t {ic['t']:.1f}; {p_text}); against the best factor "
            f"(`{run['best_factor']}`) the difference is {best['vs_best_factor']['mean']:+.4f} "
            f"[{best['vs_best_factor']['low']:+.4f}, {best['vs_best_factor']['high']:+.4f}]"
            f"{spa_text}. "
            f"This design detects a true mean IC of {ic['min_detectable']:.4f} or more with 80% "
            f"power: a larger edge is ruled out.")


TUNING_HEADER = ("| family | trial | hidden | lookback | dropout | group lasso | learning rate | "
                 "val IC (t) | val log loss | epochs | |")


def tuning_lines(result: dict[str, Any], run: dict[str, Any]) -> list[str]:
    """The run's search (``run["tuning"]``) as a table of trials, the chosen one marked."""
    searches = run.get("tuning")
    if not searches:
        return []
    n = result["configurations_tried"]
    fold = next(iter(searches.values()))["fold"]
    val = next((f["val"] for f in run["folds"] if f["fold"] == fold), "")
    lines = ["", "### Tuning", "",
             f"{n} configurations were tried on validation dates only; p-values are corrected "
             f"for them. Each pooled family's trials (trial 0: the default settings) were fit "
             f"on fold {fold}'s training dates and scored on its validation dates ({val}), "
             f"which precede every test date, by the mean daily rank IC of P(UP) - P(DOWN) "
             f"(ties: the lower log loss); the best was then refit on every fold. Hansen's SPA "
             f"test covers the choice among the families on test dates; the trials enter the "
             f"Bonferroni / Sidak correction of the best family's IC p-value.", "",
             TUNING_HEADER, "|" + "---|" * (TUNING_HEADER.count("|") - 1)]
    for family, s in searches.items():
        for t in s["trials"]:
            k = t["settings"]
            mark = "**chosen**" if t["trial"] == s["chosen"] else ""
            lines.append(
                f"| `{family}` | {t['trial']} | {k['hidden_size']} | {k['lookback']} | "
                f"{k['dropout']:g} | {k['input_group_lasso']:g} | {k['learning_rate']:g} | "
                f"{_num(t['val_ic'], '+.4f')} ({_num(t['val_ic_t'], '+.1f')}) | "
                f"{_num(t['val_log_loss'], '.4f')} | {t['epochs']} | {mark} |")
    return lines


def significance_line(run: dict[str, Any]) -> list[str]:
    sig = run.get("significance")
    if not sig:
        return []
    return ["", f"Best family `{sig['family']}`: IC p {_p(sig['p_raw'])} raw; corrected for "
                f"{sig['configurations']} configurations tried, {_p(sig['p_bonferroni'])} "
                f"(Bonferroni), {_p(sig['p_sidak'])} (Sidak)."]


def markdown(result: dict[str, Any], images: dict[str, bytes] | None = None) -> str:
    """The comparison's tables and verdicts; ``images`` (run key -> PNG) are embedded."""
    spec = result["spec"]
    search = result.get("tuning")
    tuned = (f", each of {', '.join(search['families'])} once per trial of its settings "
             f"search: {search['n_trials']} trials" if search else "")
    lines = [f"# Model comparison — {result['symbols']} symbols, {spec['folds']} walk-forward "
             f"folds", "",
             f"{result['configurations_tried']} configurations compared (families x horizons x "
             f"targets{tuned}); factor baselines in every table. Intervals: 95%, from a "
             f"bootstrap over blocks of {spec['block']} dates ({spec['n_resamples']} "
             f"resamples); IC t-statistics use Newey-West standard errors; long/short: top "
             f"minus bottom "
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
        lines += significance_line(run)
        lines += tuning_lines(result, run)
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
