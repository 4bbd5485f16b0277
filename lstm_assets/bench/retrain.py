"""The ``retrain`` section: after one new day of data, the training time of the warm-started
retrain (what ``stages.run_train`` chooses) against a cold retrain, their test accuracies, and
a third call on unchanged inputs, which must not train at all."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from lstm_assets.bench.context import Bench
from lstm_assets.bench.demo import demo_layout, drop_last_day, make_demo
from lstm_assets.core import stages
from lstm_assets.core.lifecycle.versions import version_path
from lstm_assets.core.model import LoadedModel
from lstm_assets.core.sequences import SequenceSet


def model_test_accuracy(model_path: Path, seq: SequenceSet) -> float:
    """Accuracy of a saved model on the test windows of ``seq``."""
    m = LoadedModel.load(model_path)
    rows = seq.end_rows("test")
    proba = m.predict_proba(seq.X, rows)
    return float((proba.argmax(1) == seq.y[rows]).mean())


def _yesterday(bench: Bench) -> tuple[stages.Layout, stages.Layout, list[str]]:
    """Today's raw files, yesterday's (today's without the last day) and yesterday's models
    trained cold in one warehouse, copied to a second one; today's layouts over both."""
    sz, st = bench.size, bench.settings
    root = bench.work / "retrain"
    today = make_demo(root / "today", sz.retrain_symbols, sz.retrain_years, seed=23,
                      defect_share=0.0)
    yesterday = root / "yesterday" / "raw"
    symbols = demo_layout(today, root / "tmp").symbols()
    for sym in symbols:
        drop_last_day(today / f"{sym}.csv", yesterday / f"{sym}.csv")
    wh_a, wh_b = root / "wh_warm", root / "wh_cold"
    prev = demo_layout(yesterday, wh_a)
    bench.say(f"retrain: {len(symbols)} symbol(s) x {sz.retrain_years} years; "
              "yesterday's models first (cold)")
    for sym in symbols:
        stages.run_clean(prev, sym, st)
        stages.run_sequences(prev, sym, st)
        stages.run_train(prev, sym, st)
    shutil.copytree(wh_a, wh_b)
    return demo_layout(today, wh_a), demo_layout(today, wh_b), symbols


def _warm_train(bench: Bench, warm_lay: stages.Layout, sym: str) -> tuple[dict[str, Any], str]:
    """What the pipeline chooses after one new day (previous model, few epochs); where it
    trains cold instead, a warm start from the previous weights, for the figure."""
    st = bench.settings
    prev_state = LoadedModel.load(warm_lay.warehouse.model(sym)).net.state_dict()
    warm = stages.run_train(warm_lay, sym, st)
    if warm.get("init") == "warm":
        return warm, "pipeline"
    warm = stages.run_train(warm_lay, sym, st, init_state=prev_state,
                            max_epochs=int(getattr(st, "warm_epochs", 5)))
    return warm, "init_state"


def _retrain_symbol(bench: Bench, warm_lay: stages.Layout, cold_lay: stages.Layout,
                    sym: str) -> dict[str, Any]:
    """One symbol: today's data stages in both warehouses, a cold retrain (previous model
    removed), the warm one, and a third call on unchanged inputs."""
    st = bench.settings
    for lay in (warm_lay, cold_lay):
        stages.run_clean(lay, sym, st)
        stages.run_sequences(lay, sym, st)
    cold_lay.warehouse.model(sym).unlink()
    cold_lay.warehouse.model(sym).with_suffix(".json").unlink(missing_ok=True)
    cold = stages.run_train(cold_lay, sym, st)
    warm, how = _warm_train(bench, warm_lay, sym)
    t0 = time.perf_counter()
    again = stages.run_train(warm_lay, sym, st)
    wall = time.perf_counter() - t0
    skipped = bool(again.get("skipped")) or again.get("init") == "skipped"
    seq = SequenceSet.load(warm_lay.warehouse.sequences(sym))
    return {
        "symbol": sym, "warm_seconds": float(warm["seconds"]),
        "cold_seconds": float(cold["seconds"]), "warm_epochs": warm["epochs_run"],
        "cold_epochs": cold["epochs_run"], "warm_how": how,
        # the versions trained here, whether or not they were promoted to serve
        "warm_test_accuracy": model_test_accuracy(
            version_path(warm_lay.warehouse, sym, warm["version"]), seq),
        "cold_test_accuracy": model_test_accuracy(
            version_path(cold_lay.warehouse, sym, cold["version"]), seq),
        "warm_promoted": warm.get("promoted"),
        "warm_val_loss": warm.get("best_val_loss"),
        "cold_val_loss": cold.get("best_val_loss"),
        "unchanged_skipped": skipped, "unchanged_wall_seconds": wall,
        "unchanged_train_seconds": 0.0 if skipped else float(again.get("seconds", 0)),
    }


def _say_symbol(bench: Bench, p: dict[str, Any]) -> None:
    bench.say(f"  {p['symbol']}: cold {p['cold_seconds']:.1f}s ({p['cold_epochs']} ep, acc "
              f"{p['cold_test_accuracy']:.3f}), warm {p['warm_seconds']:.1f}s "
              f"({p['warm_epochs']} ep, acc {p['warm_test_accuracy']:.3f}), unchanged: "
              f"{'skipped' if p['unchanged_skipped'] else 'RETRAINED'} "
              f"({p['unchanged_wall_seconds']:.2f}s)")


def _figures_and_rows(bench: Bench, per: list[dict[str, Any]]) -> None:
    f = bench.figures
    warm_s = sum(p["warm_seconds"] for p in per)
    cold_s = sum(p["cold_seconds"] for p in per)
    f["warm_train_seconds"], f["cold_train_seconds"] = warm_s, cold_s
    f["warm_vs_cold_train_time_ratio"] = warm_s / cold_s
    f["warm_minus_cold_test_accuracy"] = float(np.mean(
        [p["warm_test_accuracy"] - p["cold_test_accuracy"] for p in per]))
    f["unchanged_symbol_train_seconds"] = max(p["unchanged_train_seconds"] for p in per)
    f["unchanged_symbol_wall_seconds"] = max(p["unchanged_wall_seconds"] for p in per)
    f["retrain_symbols"] = len(per)
    bench.details["retrain"] = per
    r, d = f["warm_vs_cold_train_time_ratio"], f["warm_minus_cold_test_accuracy"]
    bench.add("retrain", f"warm / cold training time ({len(per)} symbols, +1 day)",
              f"{r:.2f} ({warm_s:.1f}s / {cold_s:.1f}s)", "<= 0.33", r <= 1 / 3)
    bench.add("retrain", "test accuracy, warm - cold", f"{100 * d:+.2f} points",
              ">= -1 point", d >= -0.01)
    u = f["unchanged_symbol_train_seconds"]
    bench.add("retrain", "unchanged symbol: training seconds",
              f"{u:.2f}s (call took {f['unchanged_symbol_wall_seconds']:.2f}s)", "0", u == 0)


def retrain(bench: Bench) -> None:
    """The ``retrain`` section (see the module's docstring)."""
    warm_lay, cold_lay, symbols = _yesterday(bench)
    per: list[dict[str, Any]] = []
    for sym in symbols:
        per.append(_retrain_symbol(bench, warm_lay, cold_lay, sym))
        _say_symbol(bench, per[-1])
    _figures_and_rows(bench, per)
