"""The live scorecard: signals scored against prices that arrive later, kept per as-of date; and
the freshness and drift checks in the asset graph."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from lstm_assets.core import stages
from lstm_assets.core.demo import DemoSpec, generate
from lstm_assets.core.lifecycle.outcomes import join_outcomes, scorecard, scorecard_markdown
from lstm_assets.core.settings import Settings
from lstm_assets.core.stages.layout import read_sequences
from lstm_assets.core.stages.training import input_fingerprint
from lstm_assets.defs import assets, automation
from lstm_assets.defs.resources import LstmSettings, PathsResource
from lstm_assets.instance import sync_partitions

TINY = {"lookback": 10, "hidden_size": 8, "num_layers": 1, "max_epochs": 2, "batch_size": 64,
        "bootstrap_samples": 50, "device": "cpu", "num_threads": 1}
HELD_BACK = 3  # days of the file that arrive one at a time


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("outcomes")
    generate(root / "raw", DemoSpec(symbols=2, years=4, seed=9, defect_share=0.0))
    return root / "raw"


def test_outcomes_join_scores_pending_and_pnl() -> None:
    hist = pd.DataFrame({
        "symbol": ["A", "A", "A", "B"], "as_of": ["2024-01-02", "2024-01-03", "2024-01-04",
                                                 "2024-01-02"],
        "signal": ["UP", "ABSTAIN", "DOWN", "UP"], "predicted": ["UP", "FLAT", "DOWN", "UP"],
        "model_test_accuracy": [0.6, 0.6, 0.6, 0.5]})
    frame = pd.DataFrame({"date": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"]),
                          "label": [2, 0, -1], "fwd_return": [0.01, -0.02, np.nan]})
    out = join_outcomes(hist, {"A": frame}, cost_bps=5.0)
    assert out["status"].tolist() == ["scored", "scored", "pending", "no data"]
    assert out["realised"].tolist()[:2] == ["UP", "DOWN"]
    assert out["correct"].tolist()[:2] == [1.0, 0.0]
    # long UP over a +1% log move, less a 10 bps round trip; an ABSTAIN holds nothing
    assert out["pnl"].iloc[0] == pytest.approx(np.expm1(0.01) - 0.001)
    assert out["pnl"].iloc[1] == 0.0 and np.isnan(out["pnl"].iloc[2])
    card = scorecard(out)
    a = card["symbols"]["A"]
    assert (a["scored"], a["pending"], a["acted"]) == (2, 1, 1)
    assert a["live_accuracy"] == 0.5 and a["hit_rate"] == 1.0
    assert a["live_accuracy_ci"][0] < 0.5 < a["live_accuracy_ci"][1]
    assert a["p_below_promise"] is None  # too few to test
    assert "| A | 2 | 1 |" in scorecard_markdown(card)


def test_outcomes_below_promise_flags_a_decayed_symbol() -> None:
    rng = np.random.default_rng(1)
    n = 300
    rows = []
    for sym, acc in (("GOOD", 0.6), ("BAD", 0.3)):
        correct = rng.random(n) < acc
        rows.append(pd.DataFrame({"symbol": sym, "status": "scored", "signal": "UP",
                                  "correct": correct.astype(float), "pnl": 0.0,
                                  "model_test_accuracy": 0.6}))
    card = scorecard(pd.concat(rows, ignore_index=True))
    assert card["symbols_below_promise"] == ["BAD"]
    assert card["overall_below_promise"]


def _resources(raw: Path, wh: Path) -> dict[str, object]:
    return {"settings": LstmSettings(**TINY),
            "paths": PathsResource(raw_dir=str(raw), warehouse_dir=str(wh),
                                   truth_dir=str(raw.parent / "demo_truth"))}


def _materialize(instance: dg.DagsterInstance, res: dict[str, object], syms: list[str]) -> None:
    for sym in syms:
        assert dg.materialize([assets.symbol_data, assets.symbol_model], instance=instance,
                              partition_key=sym, resources=res).success


def test_outcomes_scored_as_prices_arrive_and_reruns_do_not_double_count(
        demo: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(demo, raw)
    full = {s: pd.read_csv(demo / f"{s}.csv") for s in ("SYN001", "SYN002")}
    for sym, df in full.items():
        df.iloc[:-HELD_BACK].to_csv(raw / f"{sym}.csv", index=False)
    wh = tmp_path / "wh"
    res = _resources(raw, wh)
    syms = ["SYN001", "SYN002"]
    with dg.instance_for_test() as instance:
        sync_partitions(instance, syms)
        _materialize(instance, res, syms)
        first = dg.materialize([assets.latest_signals, assets.signal_outcomes],
                               instance=instance, resources=res)
        assert first.success
        md = {e.asset_key.to_user_string(): e.materialization.metadata
              for e in first.get_asset_materialization_events()}["signal_outcomes"]
        assert md["signals"].value == 2 and md["scored"].value == 0
        assert md["pending"].value == 2  # tomorrow's prices are not in yet

        # one more day arrives for SYN001: the sensor asks for its chain, signals follow
        full["SYN001"].iloc[:-HELD_BACK + 1].to_csv(raw / "SYN001.csv", index=False)
        ctx = dg.build_sensor_context(instance=instance, cursor=None,
                                      resources={"paths": res["paths"]})
        result = automation.raw_files_sensor(ctx)
        assert isinstance(result, dg.SensorResult)
        asked = {r.partition_key for r in result.run_requests or []}
        assert "SYN001" in asked
        _materialize(instance, res, ["SYN001"])
        for _ in range(2):  # a rerun of the same day replaces its row: nothing counted twice
            again = dg.materialize([assets.latest_signals, assets.signal_outcomes],
                                   instance=instance, resources=res)
            assert again.success
        md = {e.asset_key.to_user_string(): e.materialization.metadata
              for e in again.get_asset_materialization_events()}["signal_outcomes"]
        assert md["signals"].value == 3  # SYN001: 2 days; SYN002: 1 day
        assert md["scored"].value == 1 and md["pending"].value == 2
        assert "| SYN001 | 1 | 1 |" in md["scorecard"].value
        checks = again.get_asset_check_evaluations()
        assert [c.check_name for c in checks] == ["live_accuracy_vs_test"]
        assert checks[0].passed  # one scored signal: nothing to warn about
    hist = pd.read_parquet(wh / "signal_history.parquet")
    assert len(hist) == 3 and not hist.duplicated(["symbol", "as_of"]).any()
    out = pd.read_parquet(wh / "signal_outcomes.parquet")
    day = full["SYN001"].iloc[-HELD_BACK - 1]
    scored = out[out["status"] == "scored"].iloc[0]
    assert scored["as_of"] == pd.Timestamp(day["date"]).date().isoformat()
    nxt = full["SYN001"].iloc[-HELD_BACK]["close"] / day["close"]
    assert scored["fwd_return"] == pytest.approx(np.log(nxt), rel=1e-6)


def test_freshness_and_drift_checks_in_the_asset_graph(demo: Path, tmp_path: Path) -> None:
    layout = stages.Layout.from_dirs(demo, tmp_path / "wh", demo.parent / "demo_truth")
    s = Settings(**TINY)
    stages.run_clean(layout, "SYN001", s)
    stages.run_sequences(layout, "SYN001", s)
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    stages.run_train(layout, "SYN001", s, now=t0)
    fresh = stages.check_model_freshness(layout, "SYN001", s, now=t0 + timedelta(days=2))
    assert fresh["passed"] and fresh["metadata"]["model_age_days"] == 2.0
    stale = stages.check_model_freshness(layout, "SYN001", s, now=t0 + timedelta(days=30))
    assert not stale["passed"] and "30.0 days ago" in stale["description"]
    drift = stages.check_drift(layout, "SYN001", s)
    assert set(drift["metadata"]) >= {"drifted_features", "max_psi", "label_mix_psi"}

    with dg.instance_for_test() as instance:
        sync_partitions(instance, ["SYN002"])
        r = dg.materialize([assets.symbol_data, assets.symbol_model], instance=instance,
                           partition_key="SYN002",
                           resources=_resources(demo, tmp_path / "wh2"))
        assert r.success
        names = {c.check_name: c for c in r.get_asset_check_evaluations()}
        assert {"input_drift", "model_fresh"} <= set(names)
        assert names["model_fresh"].passed  # just trained
        assert "max_psi" in names["input_drift"].metadata


def test_drift_triggers_a_cold_retrain_when_set(demo: Path, tmp_path: Path) -> None:
    """Demo fundamentals, rates and volatility wander in regimes: the last 60 days of a demo
    symbol sit outside what its train windows show, so its inputs have drifted."""
    layout = stages.Layout.from_dirs(demo, tmp_path / "wh", demo.parent / "demo_truth")
    s = Settings(**TINY).replace(warm_epochs=2, retrain_unchanged=True)  # plan, never skip
    stages.run_clean(layout, "SYN001", s)
    stages.run_sequences(layout, "SYN001", s)
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    stages.run_train(layout, "SYN001", s, now=t0)
    drift = stages.check_drift(layout, "SYN001", s)
    assert not drift["passed"] and drift["metadata"]["drifted_count"] > 0
    assert "features drifted" in drift["description"]
    seq = read_sequences(layout, "SYN001")
    fp = input_fingerprint(layout, "SYN001", s, seq)
    day = t0 + timedelta(days=1)
    assert stages.plan_training(layout, "SYN001", s, seq, fp, day).init == "warm"
    cold = stages.plan_training(layout, "SYN001", s.replace(cold_on_drift=True), seq, fp, day)
    assert cold.init == "cold" and "drifted" in cold.reason
    # a threshold nothing reaches: no drift, the warm start stands
    calm = s.replace(cold_on_drift=True, drift_threshold=1e9)
    assert stages.check_drift(layout, "SYN001", calm)["passed"]
    assert stages.plan_training(layout, "SYN001", calm, seq, fp, day).init == "warm"
