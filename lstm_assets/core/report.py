"""Render evaluation reports (Markdown + PNG + JSON) and the cross-symbol leaderboard."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lstm_assets.core.settings import CLASSES  # noqa: E402
from lstm_assets.core.storage import (  # noqa: E402
    Warehouse,
    read_json,
    write_bytes,
    write_json,
    write_parquet,
    write_text,
)

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss")


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def _ci(ci: list[float] | None) -> str:
    return "" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def plot_png(rep: dict[str, Any], history: list[dict[str, float]]) -> bytes:
    fig, ax = plt.subplots(2, 3, figsize=(13, 6.5), dpi=72)
    if history:
        ep = [h["epoch"] for h in history]
        ax[0, 0].plot(ep, [h["train_loss"] for h in history], label="train")
        ax[0, 0].plot(ep, [h["val_loss"] for h in history], label="validation")
        best = rep.get("training", {}).get("best_epoch")
        if best:
            ax[0, 0].axvline(best, color="grey", ls=":", label=f"best epoch {best}")
        ax[0, 0].legend()
    ax[0, 0].set(title="loss", xlabel="epoch")
    cm = np.asarray(rep["model"]["confusion_matrix"])
    ax[0, 1].imshow(cm, cmap="Blues")
    for i in range(3):
        for j in range(3):
            ax[0, 1].text(j, i, int(cm[i, j]), ha="center", va="center")
    ax[0, 1].set(title="confusion (test)", xlabel="predicted", ylabel="true",
                 xticks=range(3), yticks=range(3), xticklabels=CLASSES, yticklabels=CLASSES)
    tr = rep["trading"]
    ax[1, 0].plot(tr["strategy"]["equity"], label="model long/short/flat")
    ax[1, 0].plot(tr["buy_and_hold"]["equity"], label="buy and hold")
    ax[1, 0].set(title=f"equity, test period ({tr['strategy']['cost_bps']:g} bps cost)",
                 xlabel="test day", yscale="log")
    ax[1, 0].legend()
    bins = rep["reliability"]["bins"]
    ax[1, 1].plot([0, 1], [0, 1], color="grey", ls=":")
    ax[1, 1].plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-")
    ax[1, 1].set(title=f"reliability (ECE {rep['reliability']['ece']:.3f})",
                 xlabel="predicted confidence", ylabel="observed accuracy", xlim=(0, 1),
                 ylim=(0, 1))
    _threshold_plot(ax[0, 2], rep.get("threshold"))
    ax[1, 2].axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _threshold_plot(ax: Any, th: dict[str, Any] | None) -> None:
    """Coverage and kept accuracy against the ABSTAIN threshold (validation), the chosen point
    and the test split's figures there."""
    ax.set(title="ABSTAIN threshold (validation)", xlabel="threshold", ylim=(0, 1))
    if not th:
        return
    pts = [p for p in th["curve"] if p["accuracy"] is not None]
    x = [p["threshold"] for p in pts]
    ax.plot(x, [p["coverage"] for p in pts], label="coverage")
    ax.plot(x, [p["accuracy"] for p in pts], label="accuracy of kept")
    ax.fill_between(x, [p["accuracy_ci"][0] for p in pts], [p["accuracy_ci"][1] for p in pts],
                    alpha=0.2)
    ax.axvline(th["threshold"], color="grey", ls=":", label=f"chosen {th['threshold']:.2f}")
    test = th.get("test") or {}
    if test.get("accuracy") is not None:
        ax.plot([th["threshold"]], [test["accuracy"]], "k^", label="test accuracy there")
    ax.legend(fontsize=8)


def _threshold_lines(th: dict[str, Any] | None) -> list[str]:
    if not th:
        return []
    v, t = th["val"], th.get("test") or {}
    use = ("signals abstain below it" if th.get("used_by_signals")
           else "not used: choose_threshold is off")
    lines = ["", f"ABSTAIN threshold {th['threshold']:.3f}, chosen on the validation split (the "
             f"highest 95% lower bound of the kept signals' accuracy, at least "
             f"{_pct(th['min_coverage'])} kept; {use}):", "",
             "| split | kept | accuracy of kept [95% CI] |", "|---|---|---|",
             f"| validation | {_pct(v['coverage'])} ({v['n_kept']}) | "
             f"{_pct(v['accuracy'])} {_ci(v['accuracy_ci'])} |"]
    if t:
        lines.append(f"| test | {_pct(t['coverage'])} ({t['n_kept']}) | "
                     f"{_pct(t['accuracy'])} {_ci(t['accuracy_ci'])} |")
    return lines


def _pct_big(x: float | None) -> str:
    """A percentage that may run to many digits (compounded returns): thousands separated."""
    return _pct(x) if x is None or not np.isfinite(x) or abs(x) < 10 else f"{100 * x:,.0f}%"


def _oracle_note(rep: dict[str, Any]) -> list[str]:
    """What the oracle row means, and why the model can land above it (demo data only)."""
    o = rep.get("oracle")
    if not o:
        return []
    acc, ci = rep["model"]["accuracy"], rep["model"].get("accuracy_ci")
    diff = 100 * (acc - o["expected_accuracy"])
    within = bool(ci) and ci[0] <= o["expected_accuracy"] <= ci[1]
    return [
        "",
        "Oracle: the rule that knows the demo generator's true probabilities and predicts the "
        f"likeliest class. Expected accuracy {_pct(o['expected_accuracy'])}; on these "
        f"{o.get('days', rep['test_samples'])} test days its predictions scored "
        f"{_pct(o['realized_accuracy'])}"
        + (f" (the {o['test_days'] - o['days']} later test day(s) were added after the demo "
           "was generated: no ground truth)" if o.get("days", 0) < o.get("test_days", 0)
           else "") + ". "
        f"The model is {diff:+.1f} points from the expected figure"
        + ("." if not within else " (inside the model's 95% interval)." if diff <= 0 else
           " (inside the model's 95% interval: a model above the oracle got lucky on a finite "
           "test split; it is not better than the best achievable)."),
        "",
    ]


def _data_adjustments_lines(rep: dict[str, Any]) -> list[str]:
    """The 'Data adjustments' section: the splits back-adjusted and the price jumps found in the
    raw file (``rep["data_adjustments"]``, from the clean frame); nothing for a report without
    that key."""
    if "data_adjustments" not in rep:
        return []
    adj = rep["data_adjustments"]
    if adj is None:
        return ["", "Data adjustments: not recorded with this clean frame (re-run clean_frames "
                "to record them)."]
    actions, jumps = adj.get("corporate_actions") or [], adj.get("price_jumps") or []
    if not actions and not jumps:
        return ["", "Data adjustments: none (no split and no price jump in the file)."]
    lines = ["", "Data adjustments:", ""]
    for a in actions:
        r = float(a["ratio"])
        shares = f"{r:g}:1" if r >= 1 else f"1:{1 / r:g}"
        lines.append(f"- {a['date']}: {a['kind']} {shares}; earlier prices divided by {r:g} and "
                     f"volumes multiplied by it (volume "
                     f"{'confirms' if a['volume_confirmed'] else 'does not confirm'} it).")
    what = {"exclude": "left out of training and scoring with the windows that span it",
            "keep": "kept as it is", "fail": "refused"}
    for j in jumps:
        lines.append(f"- {j['date']}: price jump, one-day log return {j['log_return']:+.3f}, "
                     f"no split ratio; {what.get(j['policy'], j['policy'])}.")
    return lines


def _expected_note(baselines: dict[str, Any]) -> list[str]:
    """What an '(expected)' baseline row means (the prior's figures are expectations)."""
    names = [k for k, d in baselines.items() if d.get("kind") == "expected"]
    if not names:
        return []
    return ["", f"{', '.join(names)} (expected): the expected figures of drawing each day's class "
            "at random from the train class shares, given the test labels; no single draw is "
            "scored, so no luck enters them.", ""]


def _retrain_lines(rep: dict[str, Any]) -> list[str]:
    """How this model came to serve: its retrain, the promotion decision (or a promotion by
    hand), and a newer challenger kept out."""
    lines: list[str] = []
    r = rep.get("retrain") or {}
    if r:
        lines.append(f"Retrain: {r.get('init', 'cold')} start ({r.get('reason', '')}).")
        comp = r.get("comparison") or {}
        if comp:
            p, n, prev = comp["previous"], comp["new"], r.get("previous") or {}
            lines.append(
                f"On this test split the previous model ({prev.get('init', 'cold')}, trained "
                f"{(prev.get('trained_at') or '?')[:10]}) scored {_pct(p.get('test_accuracy'))} "
                f"accuracy, log loss {p.get('test_log_loss', float('nan')):.3f}; this "
                f"{r.get('init', 'cold')} retrain {_pct(n.get('test_accuracy'))}, "
                f"{n.get('test_log_loss', float('nan')):.3f}.")
        promo = r.get("promotion") or {}
        by_hand = rep.get("promotions") or []
        if by_hand:
            last = by_hand[-1]
            lines.append(f"Promotion: served by hand since {str(last['at'])[:19]} "
                         f"({last['reason']}); after training it was "
                         f"{'served' if promo.get('promote') else 'kept out'}: "
                         f"{promo.get('reason', '')}.")
        elif promo:
            lines.append(f"Promotion: {'served' if promo.get('promote') else 'not served'} — "
                         f"{promo.get('reason', '')}.")
    kept_out = rep.get("latest_challenger")
    if kept_out:
        lines.append(f"Latest retrain: challenger {kept_out['version']} ({kept_out.get('init')}, "
                     f"{str(kept_out.get('created_at'))[:19]}) kept out, this model serves on: "
                     f"{kept_out.get('reason')}.")
    return lines


def markdown(rep: dict[str, Any], png: bytes | None = None, png_name: str = "") -> str:
    m, b = rep["model"], rep["baselines"]
    lines = [
        f"## {rep.get('symbol', '')} — test split {rep['test_dates'][0]} .. {rep['test_dates'][1]}"
        f" ({rep['test_samples']} days)",
        "",
        "Every number below is on the test split only, which the model neither trained nor "
        "early-stopped on. Intervals are 95% block-bootstrap intervals.",
        "",
        "| | accuracy | 95% CI | balanced acc. | macro-F1 | 95% CI | log loss |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(name: str, d: dict[str, Any]) -> str:
        return (f"| {name} | {_pct(d['accuracy'])} | {_ci(d.get('accuracy_ci'))} | "
                f"{_pct(d['balanced_accuracy'])} | {_pct(d['macro_f1'])} | "
                f"{_ci(d.get('macro_f1_ci'))} | {d['log_loss']:.3f} |")

    lines.append(row("**LSTM model**", m))
    for k, d in b.items():
        lines.append(row(f"baseline: {k}" + (" (expected)" if d.get("kind") == "expected"
                                             else ""), d))
    if rep.get("oracle"):
        o = rep["oracle"]
        lines.append(f"| oracle (best achievable) | {_pct(o['expected_accuracy'])} | | | | | |")
    e = rep["edge_over_best_baseline"]
    verdict = "**significant**" if rep["significant_edge"] else "not significant"
    lines += [
        "",
        f"Edge over the best baseline ({rep['best_baseline']}): "
        f"{100 * e['accuracy_diff']:+.1f} points, 95% CI {_ci(e['ci'])} — {verdict}.",
        *_expected_note(b),
        *_oracle_note(rep),
        f"Test label shares DOWN/FLAT/UP: "
        f"{' / '.join(_pct(x) for x in rep['label_share_test'])}; the model predicts "
        f"{' / '.join(_pct(x) for x in m['predicted_share'])}.",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for c, d in m["per_class"].items():
        lines.append(f"| {c} | {_pct(d['precision'])} | {_pct(d['recall'])} | "
                     f"{_pct(d['f1'])} | {d['support']} |")
    s, h = rep["trading"]["strategy"], rep["trading"]["buy_and_hold"]
    lines += [
        "",
        f"Trading view (long UP / short DOWN / flat FLAT, {s['cost_bps']:g} bps per unit "
        "turnover)" + (": synthetic demo data, so these returns say nothing about real "
                       "markets." if rep.get("oracle") else ":"),
        "",
        "| | cumulative return | Sharpe (ann.) | hit rate | turnover/day |",
        "|---|---|---|---|---|",
        f"| model signals | {_pct_big(s['cumulative_return'])} | {s['sharpe']:.2f} | "
        f"{_pct(s['hit_rate'])} | {s['turnover']:.2f} |",
        f"| buy and hold | {_pct_big(h['cumulative_return'])} | {h['sharpe']:.2f} | | |",
        "",
        f"Calibration: expected calibration error {rep['reliability']['ece']:.3f}.",
    ]
    wf = rep.get("walk_forward")
    if wf:
        lines += ["", "Walk-forward (expanding window; scaler and FLAT band refit per fold):", "",
                  "| fold | test days | accuracy | majority | macro-F1 |", "|---|---|---|---|---|"]
        for f in wf["folds"]:
            lines.append(f"| {f['fold']} | {f['test_dates'][0]} .. {f['test_dates'][1]} | "
                         f"{_pct(f['accuracy'])} | {_pct(f['majority_accuracy'])} | "
                         f"{_pct(f['macro_f1'])} |")
        p = wf["pooled"]
        lines.append(f"| pooled | | {_pct(p['accuracy'])} | {_pct(p['majority_accuracy'])} | "
                     f"{_pct(p['macro_f1'])} |")
    t = rep.get("training") or {}
    if t:
        lines.append(f"Training: {t.get('epochs_run')} epochs (best {t.get('best_epoch')}, "
                     f"{t.get('init', 'cold')} start) on {t.get('device')}, "
                     f"{(t.get('seconds') or 0):.1f} s.")
        if t.get("top_features"):
            lines.append(f"Input features in use: {t.get('features_used')} of "
                         f"{t.get('features_total') or '?'}; largest weights: "
                         f"{', '.join(t['top_features'])}.")
    lines += _retrain_lines(rep)
    lines += _threshold_lines(rep.get("threshold"))
    lines += _data_adjustments_lines(rep)
    if png is not None:
        lines += ["", f"![plots](data:image/png;base64,{base64.b64encode(png).decode()})"]
    elif png_name:
        lines += ["", f"![plots]({png_name})"]
    return "\n".join(lines) + "\n"


def write_symbol_report(wh: Warehouse, symbol: str, rep: dict[str, Any],
                        history: list[dict[str, float]]) -> None:
    png = plot_png(rep, history)
    write_bytes(wh.report(symbol, ".png"), png)
    write_text(wh.report(symbol, ".md"), markdown(rep, png_name=f"{symbol}.png"))
    slim = {**rep, "trading": {k: {kk: vv for kk, vv in v.items() if kk != "equity"}
                               for k, v in rep["trading"].items()}}
    write_json(wh.report(symbol, ".json"), slim)
    rep["_png"] = png  # for the UI metadata; not saved in the JSON


def _mean_ci(x: np.ndarray) -> tuple[float, float, float]:
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(x.mean())
    half = 1.96 * float(x.std(ddof=1)) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
    return m, m - half, m + half


def write_leaderboard(wh: Warehouse) -> dict[str, Any]:
    rows = []
    for sym in wh.report_symbols():
        r = read_json(wh.report(sym, ".json"))
        row: dict[str, Any] = {"symbol": sym, "test_samples": r["test_samples"]}
        for k in METRICS:
            row[f"model_{k}"] = r["model"][k]
        for name, d in r["baselines"].items():
            row[f"{name}_accuracy"] = d["accuracy"]
            row[f"{name}_macro_f1"] = d["macro_f1"]
        row["oracle_accuracy"] = (r.get("oracle") or {}).get("expected_accuracy")
        row["best_baseline"] = r["best_baseline"]
        row["edge_vs_best"] = r["edge_over_best_baseline"]["accuracy_diff"]
        row["significant_edge"] = r["significant_edge"]
        row["sharpe"] = r["trading"]["strategy"]["sharpe"]
        row["buy_hold_sharpe"] = r["trading"]["buy_and_hold"]["sharpe"]
        rows.append(row)
    df = pd.DataFrame(rows)
    summary: dict[str, Any] = {"symbols": len(df), "rows": rows, "mean": {}}
    if len(df):
        for col in df.columns:
            if col in ("symbol", "best_baseline", "significant_edge"):
                continue
            vals = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
            m, lo, hi = _mean_ci(vals)
            summary["mean"][col] = {"mean": m, "ci": [lo, hi]}
        summary["significant_wins"] = int(df["significant_edge"].sum())
        write_parquet(wh.leaderboard(".parquet"), df)
    write_json(wh.leaderboard(".json"), summary)
    write_text(wh.leaderboard(".md"), leaderboard_markdown(summary))
    return summary


def leaderboard_markdown(summary: dict[str, Any]) -> str:
    rows = summary["rows"]
    if not rows:
        return "No evaluation reports yet.\n"
    mean = summary["mean"]

    def mc(col: str) -> str:
        d = mean.get(col)
        if not d or d["mean"] is None or not np.isfinite(d["mean"]):
            return "n/a"
        lo, hi = d["ci"]
        ci = "" if not np.isfinite(lo) else f" [{100 * lo:.1f}, {100 * hi:.1f}]"
        return f"{100 * d['mean']:.1f}%{ci}"

    lines = [
        f"## Leaderboard — {summary['symbols']} symbols (test splits only)",
        "",
        f"The model significantly beats its best baseline on **{summary['significant_wins']} "
        f"of {summary['symbols']}** symbols.",
        "",
        "| mean over symbols (95% CI) | accuracy | macro-F1 |",
        "|---|---|---|",
        f"| LSTM model | {mc('model_accuracy')} | {mc('model_macro_f1')} |",
    ]
    for name, label in (("majority", "majority"), ("prior", "prior (expected)"),
                        ("logreg_last", "logreg_last")):
        lines.append(f"| {label} | {mc(f'{name}_accuracy')} | {mc(f'{name}_macro_f1')} |")
    with_oracle = [r for r in rows if r.get("oracle_accuracy") is not None]  # demo data
    if with_oracle:
        lines.append(f"| oracle | {mc('oracle_accuracy')} | |")
    lines += ["", "| symbol | model acc. | best baseline | edge | significant | oracle | Sharpe |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        best = r["best_baseline"]
        lines.append(
            f"| {r['symbol']} | {_pct(r['model_accuracy'])} | {best} "
            f"{_pct(r[f'{best}_accuracy'])} | {100 * r['edge_vs_best']:+.1f} | "
            f"{'yes' if r['significant_edge'] else 'no'} | {_pct(r['oracle_accuracy'])} | "
            f"{r['sharpe']:.2f} |")
    if with_oracle:
        above = [r["symbol"] for r in with_oracle if r["model_accuracy"] > r["oracle_accuracy"]]
        note = ("oracle: the expected accuracy of the rule that knows the demo generator's true "
                "probabilities (the best achievable on average).")
        if above:
            note += (f" A model above it ({', '.join(above)}) was lucky on its finite test split "
                     "(each symbol's report gives the model's 95% interval), not better than the "
                     "best achievable.")
        lines += ["", note]
    return "\n".join(lines) + "\n"
