"""Orchestration with Dagster's test APIs: the new-file sensor, the nightly schedule, warm starts,
range runs that fail per symbol, the data-quality checks, latest_signals, the instance template.

Select a point with ``-k sensor``, ``-k schedule``, ``-k warm``, ``-k range``, ``-k signals``,
``-k instance``. Tiny settings and 3-4 small demo symbols: seconds each.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from lstm_assets.core import stages
from lstm_assets.core.demo import DemoSpec, generate
from lstm_assets.core.model import read_model_config
from lstm_assets.core.settings import Settings
from lstm_assets.core.signals import ABSTAIN, latest_signals
from lstm_assets.defs import assets, automation
from lstm_assets.defs.resources import LstmSettings, PathsResource
from lstm_assets.instance import GPU_POOL, ensure_dagster_home, gpu_pool_limit, sync_partitions

TINY_CFG = {"lookback": 10, "hidden_size": 8, "num_layers": 1, "max_epochs": 2,
            "batch_size": 64, "bootstrap_samples": 50, "device": "cpu", "num_threads": 1}
CHAIN = assets.SYMBOL_ASSETS


@pytest.fixture(scope="module")
def demo4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 clean demo symbols x 4 years (the fixture is copied per test that changes files)."""
    root = tmp_path_factory.mktemp("orch")
    generate(root / "raw", DemoSpec(symbols=4, years=4, seed=5, defect_share=0.0))
    return root / "raw"


def _copy_raw(src: Path, dst_root: Path) -> Path:
    raw = dst_root / "raw"
    shutil.copytree(src, raw)
    shutil.copytree(src.parent / "demo_truth", dst_root / "demo_truth")
    return raw


def _resources(raw: Path, wh: Path, **settings: object) -> dict[str, object]:
    return {"settings": LstmSettings(**{**TINY_CFG, **settings}),
            "paths": PathsResource(raw_dir=str(raw), warehouse_dir=str(wh),
                                   truth_dir=str(raw.parent / "demo_truth"))}


def _mats(instance: dg.DagsterInstance, asset: str) -> set[str]:
    return set(instance.get_materialized_partitions(dg.AssetKey(asset)))


# ---- definitions -------------------------------------------------------------------------------

def test_orchestration_definitions_are_complete() -> None:
    from lstm_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(CHAIN) | {"leaderboard", "latest_signals"} <= keys
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert {("raw_features", "raw_file_fresh"), ("clean_frames", "clean_frame_quality"),
            ("sequence_tensors", "sequence_tensors_quality"),
            ("evaluation_report", "beats_majority_baseline")} <= checks
    data, model = defs.resolve_assets_def("clean_frames"), defs.resolve_assets_def("lstm_model")
    # different backfill policies: a failed symbol's data never shares a run with good models
    assert data.backfill_policy != model.backfill_policy
    assert model.node_def.pool == "gpu"
    for key in ("clean_frames", "sequence_tensors"):
        spec = next(s for s in data.check_specs if s.asset_key.to_user_string() == key)
        assert spec.blocking and spec.partitions_def == assets.symbols_partitions
    assert defs.resolve_sensor_def("raw_files_sensor").job_name == "symbol_chain_job"
    assert defs.resolve_schedule_def("nightly_retrain_schedule").job_name == "symbol_chain_job"
    assert defs.resolve_sensor_def("cross_symbol_automation_sensor") is not None
    assert defs.resolve_job_def("symbol_chain_job").executor_def.name == "in_process"


# ---- new-file sensor ---------------------------------------------------------------------------

def _tick(instance: dg.DagsterInstance, raw: Path,
          cursor: str | None) -> tuple[dg.SensorResult | dg.SkipReason, str | None]:
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor,
                                  resources={"paths": PathsResource(raw_dir=str(raw))})
    result = automation.raw_files_sensor(ctx)
    if isinstance(result, dg.SensorResult):
        for req in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        return result, result.cursor
    return result, ctx.cursor


def _requested(result: object) -> dict[str, str]:
    assert isinstance(result, dg.SensorResult), result
    return {r.partition_key: r.tags[automation.TRIGGER_TAG] for r in result.run_requests or []}


def test_sensor_new_changed_touched_removed_files(demo4: Path, tmp_path: Path) -> None:
    raw = _copy_raw(demo4, tmp_path)
    (raw / "SYN004.csv").unlink()
    with dg.instance_for_test() as instance:
        res, cur = _tick(instance, raw, None)
        assert _requested(res) == {f"SYN00{i}": "new_file" for i in (1, 2, 3)}
        assert set(instance.get_dynamic_partitions("symbols")) == {"SYN001", "SYN002", "SYN003"}
        # the sensor gives the gpu pool its limit (a hand-started `dagster dev` gets it too)
        slots = instance.event_log_storage.get_concurrency_info(GPU_POOL).slot_count
        assert slots == gpu_pool_limit() >= 1  # 1 on a GPU, one per core on a CPU
        run_keys = {r.run_key for r in res.run_requests}

        res, cur = _tick(instance, raw, cur)  # nothing changed: no run, never retriggered
        assert isinstance(res, dg.SkipReason)

        os.utime(raw / "SYN001.csv")  # touched, same content: no run
        res, cur = _tick(instance, raw, cur)
        assert isinstance(res, dg.SkipReason)

        text = (raw / "SYN002.csv").read_text()
        (raw / "SYN002.csv").write_text(text + text.splitlines()[-1] + "\n")  # changed content
        shutil.copy(demo4 / "SYN004.csv", raw / "SYN004.csv")  # a new symbol
        res, cur = _tick(instance, raw, cur)
        assert _requested(res) == {"SYN002": "changed_file", "SYN004": "new_file"}
        assert not run_keys & {r.run_key for r in res.run_requests}
        assert "SYN004" in instance.get_dynamic_partitions("symbols")

        (raw / "SYN003.csv").unlink()  # removed: reported in the cursor, no crash, no run
        res, cur = _tick(instance, raw, cur)
        assert isinstance(res, dg.SkipReason) and "1 removed" in str(res.skip_message)
        assert '"removed": ["SYN003"]' in (cur or "")
        assert "SYN003" in instance.get_dynamic_partitions("symbols")  # history is kept


def test_sensor_first_tick_skips_files_already_materialized(demo4: Path, tmp_path: Path) -> None:
    raw = _copy_raw(demo4, tmp_path)
    with dg.instance_for_test() as instance:
        sync_partitions(instance, ["SYN001", "SYN002"])
        h = stages.file_hash(raw / "SYN001.csv")
        instance.report_runless_asset_event(dg.AssetMaterialization(
            "raw_features", partition="SYN001", metadata={"content_hash": h}))
        res, _ = _tick(instance, raw, None)  # e.g. the sensor started after `lstm-assets run`
        assert set(_requested(res)) == {"SYN002", "SYN003", "SYN004"}


# ---- nightly schedule --------------------------------------------------------------------------

def test_schedule_nightly_retrain_one_run_per_symbol(demo4: Path, tmp_path: Path) -> None:
    raw = _copy_raw(demo4, tmp_path)
    (raw / "SYN004.csv").unlink()
    from lstm_assets.definitions import defs

    sched = automation.nightly_retrain_schedule
    assert sched.cron_schedule == "0 2 * * *" and sched.execution_timezone == "UTC"
    repo = defs.get_repository_def()
    with dg.instance_for_test() as instance:
        sync_partitions(instance, ["SYN001", "SYN002", "SYN003", "SYN004"])  # SYN004: no file
        ctx = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 3, 4, 2, tzinfo=UTC),
            resources={"paths": PathsResource(raw_dir=str(raw))}, repository_def=repo)
        data = sched.evaluate_tick(ctx)
        reqs = data.run_requests or []
        assert [r.partition_key for r in reqs] == ["SYN001", "SYN002", "SYN003"]
        assert [r.run_key for r in reqs][0] == "nightly-2026-03-04-SYN001"
        assert all(r.tags["lstm/trigger"] == "nightly_retrain" for r in reqs)

        # the requests are valid runs of symbol_chain_job: run one of them in process
        res = defs.resolve_job_def("symbol_chain_job").execute_in_process(
            instance=instance, partition_key=reqs[0].partition_key, tags=reqs[0].tags,
            resources=_resources(raw, tmp_path / "wh"))
        assert res.success
        ctx = dg.build_schedule_context(instance=instance, repository_def=repo,
                                        resources={"paths": PathsResource(raw_dir=str(tmp_path))})
        assert sched.evaluate_tick(ctx).skip_message  # no raw files at all: a reason, no runs


def test_schedule_cron_and_timezone_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSTM_RETRAIN_CRON", "30 3 * * 1-5")
    monkeypatch.setenv("LSTM_RETRAIN_TZ", "America/New_York")
    monkeypatch.setenv("LSTM_AUTOMATION", "off")
    try:
        mod = importlib.reload(automation)
        assert mod.nightly_retrain_schedule.cron_schedule == "30 3 * * 1-5"
        assert mod.nightly_retrain_schedule.execution_timezone == "America/New_York"
        assert mod.nightly_retrain_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
        assert mod.raw_files_sensor.default_status == dg.DefaultSensorStatus.STOPPED
    finally:
        monkeypatch.undo()
        importlib.reload(automation)


# ---- warm start / skip -------------------------------------------------------------------------

def _data(layout: stages.Layout, sym: str, s: Settings) -> None:
    stages.run_clean(layout, sym, s)
    stages.run_sequences(layout, sym, s)


def test_warm_start_skip_and_cold_reasons(demo4: Path, tmp_path: Path) -> None:
    raw = _copy_raw(demo4, tmp_path)
    full = pd.read_csv(demo4 / "SYN001.csv")
    full.iloc[:-40].to_csv(raw / "SYN001.csv", index=False)  # yesterday's file: 40 rows fewer
    layout = stages.Layout.from_dirs(raw, tmp_path / "wh", tmp_path / "demo_truth")
    s = Settings(**TINY_CFG).replace(max_epochs=4, warm_epochs=2, full_retrain_every_days=7)
    t0 = datetime(2026, 3, 1, 2, tzinfo=UTC)

    _data(layout, "SYN001", s)
    cold = stages.run_train(layout, "SYN001", s, now=t0)
    assert cold["init"] == "cold" and cold["init_reason"] == "no previous model"
    model = layout.warehouse.model("SYN001")
    mtime = model.stat().st_mtime_ns

    # unchanged inputs and settings: no training at all, the model file is untouched
    again = stages.run_train(layout, "SYN001", s, now=t0 + timedelta(hours=1))
    assert again["init"] == "skipped" and again["epochs_run"] == 0
    assert model.stat().st_mtime_ns == mtime

    # new data, same schema and settings, last full fit 1 day ago: warm start, few epochs
    full.to_csv(raw / "SYN001.csv", index=False)
    _data(layout, "SYN001", s)
    warm = stages.run_train(layout, "SYN001", s, now=t0 + timedelta(days=1))
    assert warm["init"] == "warm", warm["init_reason"]
    assert "last full fit 1.0 days ago" in warm["init_reason"]
    assert warm["epochs_run"] <= s.warm_epochs
    cfg = read_model_config(model)
    assert cfg["training"]["init"] == "warm"
    assert cfg["retrain"]["last_cold_at"] == t0.isoformat()  # the lineage's last full fit
    comp = cfg["retrain"]["comparison"]  # previous vs new model on the same new windows
    assert set(comp["previous"]) == set(comp["new"]) >= {"test_accuracy", "val_log_loss"}
    rep = stages.run_evaluate(layout, "SYN001", s)
    assert rep["retrain"]["init"] == "warm" and rep["training"]["init"] == "warm"

    # a full fit every N days: the lineage's last cold fit is 8 days old
    full.iloc[:-1].to_csv(raw / "SYN001.csv", index=False)
    _data(layout, "SYN001", s)
    old = stages.run_train(layout, "SYN001", s, now=t0 + timedelta(days=8))
    assert old["init"] == "cold" and "full retrain every 7 days" in old["init_reason"]

    # settings or architecture changed: cold
    lr = stages.run_train(layout, "SYN001", s.replace(learning_rate=0.01),
                            now=t0 + timedelta(days=9))
    assert lr["init"] == "cold" and "learning_rate" in lr["init_reason"]
    arch = stages.run_train(layout, "SYN001", s.replace(learning_rate=0.01, hidden_size=6),
                              now=t0 + timedelta(days=9))
    assert arch["init"] == "cold" and "hidden_size" in arch["init_reason"]

    # feature schema changed (a column dropped from the file): cold
    full.drop(columns=[c for c in full.columns if c.startswith("macro_")][:1]).to_csv(
        raw / "SYN001.csv", index=False)
    s2 = s.replace(learning_rate=0.01, hidden_size=6)
    _data(layout, "SYN001", s2)
    schema = stages.run_train(layout, "SYN001", s2, now=t0 + timedelta(days=9))
    assert schema["init"] == "cold" and "feature schema changed" in schema["init_reason"]


def test_warm_start_metadata_in_dagster(demo4: Path, tmp_path: Path) -> None:
    raw = _copy_raw(demo4, tmp_path)
    res = _resources(raw, tmp_path / "wh")
    with dg.instance_for_test() as instance:
        sync_partitions(instance, ["SYN001"])
        inits = []
        for _ in range(2):
            r = dg.materialize([assets.symbol_data, assets.symbol_model], instance=instance,
                               partition_key="SYN001", resources=res)
            assert r.success
            md = {m.asset_key.to_user_string(): m.materialization.metadata
                  for m in r.get_asset_materialization_events()}
            inits.append(md["lstm_model"]["init"].value)
            assert md["evaluation_report"]["model_init"].value in ("cold", "warm")
        assert inits == ["cold", "skipped"]  # the second run changed nothing: no training


def test_model_step_training_together_resumes_after_a_kill(
        demo4: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_train_many killed mid-training keeps its group's checkpoint in the warehouse; the
    rerun resumes after the last saved epoch, saves the models and removes the checkpoint."""
    from lstm_assets.core import train

    monkeypatch.setattr(train, "CHECKPOINT_EVERY_S", 0.0)  # save after every epoch
    layout = stages.Layout.from_dirs(demo4, tmp_path / "wh", tmp_path / "demo_truth")
    s = Settings(**TINY_CFG).replace(max_epochs=4, early_stop_patience=10, stack_symbols=3)
    syms = ["SYN001", "SYN002", "SYN003"]
    for sym in syms:
        _data(layout, sym, s)

    class Killed(BaseException):  # like the process dying: no error handler may catch it
        pass

    def kill(row: dict[str, float]) -> None:
        if row["epoch"] == 2:
            raise Killed

    with pytest.raises(Killed):
        stages.run_train_many(layout, syms, s, on_epoch=kill)
    ckdir = layout.warehouse.base / "checkpoints"
    assert [p.name.startswith("group-") for p in ckdir.iterdir()] == [True]
    assert not any(layout.warehouse.model(sym).exists() for sym in syms)
    epochs: list[float] = []
    done = stages.run_train_many(layout, syms, s, on_epoch=lambda r: epochs.append(r["epoch"]))
    assert epochs == [3.0, 4.0]
    assert {m["epochs_run"] for m in done.values()} == {4}
    assert all(layout.warehouse.model(sym).exists() for sym in syms)
    assert not list(ckdir.iterdir())


def test_warm_start_and_skip_when_symbols_train_together(demo4: Path, tmp_path: Path) -> None:
    """run_train_many (a GPU step's path) plans, skips and warm-starts exactly as run_train."""
    raw = _copy_raw(demo4, tmp_path)
    full = pd.read_csv(demo4 / "SYN001.csv")
    full.iloc[:-40].to_csv(raw / "SYN001.csv", index=False)
    layout = stages.Layout.from_dirs(raw, tmp_path / "wh", tmp_path / "demo_truth")
    s = Settings(**TINY_CFG).replace(max_epochs=4, warm_epochs=2, stack_symbols=3)
    syms = ["SYN001", "SYN002", "SYN003"]
    for sym in syms:
        _data(layout, sym, s)
    t0 = datetime(2026, 3, 1, 2, tzinfo=UTC)
    assert stages.stacks_symbols(s, 3) and not stages.stacks_symbols(s, 1)
    assert not stages.stacks_symbols(s.replace(stack_symbols=0), 3)  # auto: not on a CPU

    first = stages.run_train_many(layout, syms, s, now=t0)
    assert {m["init"] for m in first.values()} == {"cold"}
    assert {m["trained_together"] for m in first.values()} == {3}
    for sym in syms:  # each model saved with its config, and it evaluates
        assert read_model_config(layout.warehouse.model(sym))["retrain"]["init"] == "cold"
        assert stages.run_evaluate(layout, sym, s)["model"]["accuracy"] > 0

    again = stages.run_train_many(layout, syms, s, now=t0 + timedelta(hours=1))
    assert {m["init"] for m in again.values()} == {"skipped"}

    full.to_csv(raw / "SYN001.csv", index=False)  # one new day (40 here) for SYN001 only
    _data(layout, "SYN001", s)
    layout.warehouse.sequences("SYN003").unlink()  # and SYN003's input is gone
    nxt = stages.run_train_many(layout, syms, s, now=t0 + timedelta(days=1))
    assert nxt["SYN001"]["init"] == "warm" and nxt["SYN001"]["epochs_run"] <= s.warm_epochs
    assert nxt["SYN002"]["init"] == "skipped"
    assert isinstance(nxt["SYN003"], Exception) and "sequence_tensors" in str(nxt["SYN003"])


# ---- range runs: one symbol fails alone --------------------------------------------------------

def test_range_run_bad_symbol_fails_alone(demo4: Path, tmp_path: Path) -> None:
    raw = _copy_raw(demo4, tmp_path)
    (raw / "BAD.csv").write_text("date,close\n2020-01-01,1\n")  # too short for any split
    res = _resources(raw, tmp_path / "wh")
    with dg.instance_for_test() as instance:
        sync_partitions(instance, ["SYN001", "BAD", "SYN002", "SYN003", "SYN004"])
        tags = {ASSET_PARTITION_RANGE_START_TAG: "SYN001", ASSET_PARTITION_RANGE_END_TAG: "SYN003"}
        data = dg.materialize([assets.symbol_data], instance=instance, resources=res,
                              tags=tags, raise_on_error=False)
        assert not data.success
        failure = next(e for e in data.all_events if e.is_step_failure)
        desc = failure.step_failure_data.user_failure_data.description
        assert desc.startswith("1 of 4 symbols failed") and "[BAD]" in desc
        good = {"SYN001", "SYN002", "SYN003"}
        assert _mats(instance, "sequence_tensors") == good
        assert _mats(instance, "raw_features") == good | {"BAD"}  # its raw file did read
        assert "BAD" not in _mats(instance, "clean_frames")
        # per-partition check results were recorded for the good symbols
        check = dg.AssetCheckKey(dg.AssetKey("clean_frames"), "clean_frame_quality")
        evals = instance.event_log_storage.get_asset_check_execution_history(check, limit=10)
        done = {e.partition for e in evals if e.status.value == "SUCCEEDED"}
        assert done == good  # BAD's check stays planned in the failed run, never evaluated

        # the model step on the good range (a separate run, as the backfill daemon does it)
        tags = {ASSET_PARTITION_RANGE_START_TAG: "SYN002", ASSET_PARTITION_RANGE_END_TAG: "SYN003"}
        model = dg.materialize([assets.symbol_model], instance=instance, resources=res,
                               tags=tags, selection=["lstm_model", "evaluation_report"])
        assert model.success
        assert _mats(instance, "evaluation_report") == {"SYN002", "SYN003"}
        # every symbol keeps its own metadata (not one range-wide value)
        ev = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("lstm_model"), asset_partitions=["SYN003"]), limit=1).records
        assert ev[0].asset_materialization.metadata["init"].value == "cold"


def test_range_run_trains_symbols_together(demo4: Path, tmp_path: Path) -> None:
    """With stack_symbols (auto on a GPU) the model step trains its range together; a symbol
    whose input is missing still fails alone."""
    raw = _copy_raw(demo4, tmp_path)
    res = _resources(raw, tmp_path / "wh", stack_symbols=4)
    with dg.instance_for_test() as instance:
        sync_partitions(instance, ["SYN001", "SYN002", "SYN003"])
        tags = {ASSET_PARTITION_RANGE_START_TAG: "SYN001", ASSET_PARTITION_RANGE_END_TAG: "SYN003"}
        assert dg.materialize([assets.symbol_data], instance=instance, resources=res,
                              tags=tags).success
        PathsResource(raw_dir=str(raw), warehouse_dir=str(tmp_path / "wh")).layout() \
            .warehouse.sequences("SYN002").unlink()
        model = dg.materialize([assets.symbol_model], instance=instance, resources=res,
                               tags=tags, raise_on_error=False)
        assert not model.success
        desc = next(e for e in model.all_events
                    if e.is_step_failure).step_failure_data.user_failure_data.description
        assert desc.startswith("1 of 3 symbols failed") and "[SYN002]" in desc
        assert _mats(instance, "evaluation_report") == {"SYN001", "SYN003"}
        for sym in ("SYN001", "SYN003"):
            ev = instance.fetch_materializations(dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("lstm_model"), asset_partitions=[sym]), limit=1).records
            md = ev[0].asset_materialization.metadata
            assert md["init"].value == "cold" and md["trained_together"].value == 2


def test_cli_run_range_path_trains_together_and_fails_alone(
        demo4: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`lstm-assets run` where symbols train together (a GPU, here stack_symbols on CPU): range
    runs; a bad file between good ones fails alone and splits the model ranges around it."""
    import json

    import lstm_assets.definitions  # noqa: F401 - built before the command sets its folders
    from lstm_assets import cli

    raw = _copy_raw(demo4, tmp_path)
    (raw / "SYN004.csv").unlink()
    (raw / "SYN002X.csv").write_text("date,close\n2020-01-01,1\n")  # sorts between 002 and 003
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LSTM_TRUTH_DIR", str(tmp_path / "demo_truth"))
    monkeypatch.setenv("LSTM_SETTINGS", json.dumps({**TINY_CFG, "stack_symbols": 4}))
    rc = cli.main(["run", "--raw-dir", str(raw), "--warehouse-dir", str(tmp_path / "wh")])
    captured = capsys.readouterr()
    out = captured.out
    assert rc == 1, out  # one symbol failed: exit code 1
    assert "data stages: 3 of 4 symbols ok" in out and "SYN002X: FAILED" in out
    # the console names the bad file once per event, without Dagster's stack trace of the Failure
    assert "SYN002X.csv" in captured.err and "Stack Trace" not in captured.err
    assert "models (trained together): 3 of 3 symbols ok" in out
    with dg.DagsterInstance.get() as instance:
        assert _mats(instance, "evaluation_report") == {"SYN001", "SYN002", "SYN003"}
        together = {}
        for sym in ("SYN001", "SYN002", "SYN003"):
            md = instance.fetch_materializations(dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("lstm_model"), asset_partitions=[sym]),
                limit=1).records[0].asset_materialization.metadata
            together[sym] = md["trained_together"].value  # 1: trained alone (fit)
    assert together == {"SYN001": 2, "SYN002": 2, "SYN003": 1}
    assert (tmp_path / "wh" / "leaderboard.md").exists()


def test_range_run_whole_chain_in_one_job_run(demo4: Path, tmp_path: Path) -> None:
    """A range launched on symbol_chain_job holds both steps: the model step still runs."""
    from lstm_assets.definitions import defs

    raw = _copy_raw(demo4, tmp_path)
    with dg.instance_for_test() as instance:
        sync_partitions(instance, ["SYN001", "SYN002"])
        tags = {ASSET_PARTITION_RANGE_START_TAG: "SYN001", ASSET_PARTITION_RANGE_END_TAG: "SYN002"}
        r = defs.resolve_job_def("symbol_chain_job").execute_in_process(
            instance=instance, tags=tags, resources=_resources(raw, tmp_path / "wh"))
        assert r.success
        for a in CHAIN:
            assert _mats(instance, a) == {"SYN001", "SYN002"}, a


def test_blocking_quality_check_stops_the_symbol(demo4: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _copy_raw(demo4, tmp_path)

    def bad_check(layout: stages.Layout, sym: str, s: Settings) -> dict[str, object]:
        return {"passed": False, "description": f"{sym}: 3 NaN cells", "metadata": {"nan": 3}}

    monkeypatch.setattr(stages, "check_clean_frame", bad_check)
    with dg.instance_for_test() as instance:
        sync_partitions(instance, ["SYN001"])
        r = dg.materialize([assets.symbol_data, assets.symbol_model], instance=instance,
                           partition_key="SYN001", resources=_resources(raw, tmp_path / "wh"),
                           raise_on_error=False)
        assert not r.success
        evals = [e.asset_check_evaluation_data for e in r.all_events
                 if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        failed = [e.check_name for e in evals if not e.passed and e.blocking]
        assert failed == ["clean_frame_quality"]
        assert _mats(instance, "clean_frames") == {"SYN001"}  # materialized, check failed
        assert not _mats(instance, "sequence_tensors")  # blocked downstream
        assert not _mats(instance, "lstm_model")


def test_quality_checks_on_real_artifacts(demo4: Path, tmp_path: Path) -> None:
    raw = _copy_raw(demo4, tmp_path)
    layout = stages.Layout.from_dirs(raw, tmp_path / "wh")
    s = Settings(**TINY_CFG)
    meta = stages.run_raw(layout, "SYN001")
    _data(layout, "SYN001", s)
    fresh = stages.check_raw_freshness(meta, s, now=datetime(2026, 1, 2, tzinfo=UTC))
    assert fresh["passed"] and fresh["metadata"]["data_age_days"] == 2  # demo data ends 12-31
    assert not stages.check_raw_freshness(meta, s, now=datetime(2026, 2, 1, tzinfo=UTC))[
        "passed"]
    clean = stages.check_clean_frame(layout, "SYN001", s)
    assert clean["passed"], clean
    seq = stages.check_sequences(layout, "SYN001")
    assert seq["passed"] and set(seq["metadata"]["class_balance"]) == {"train", "val", "test"}
    too_long = stages.check_clean_frame(layout, "SYN001", s.replace(lookback=5000))
    assert not too_long["passed"] and "rows" in too_long["description"]


# ---- signals -----------------------------------------------------------------------------------

def test_latest_signals_asset_and_threshold(demo4: Path, tmp_path: Path) -> None:
    raw = _copy_raw(demo4, tmp_path)
    wh = tmp_path / "wh"
    res = _resources(raw, wh)
    with dg.instance_for_test() as instance:
        sync_partitions(instance, ["SYN001", "SYN002"])
        for sym in ("SYN001", "SYN002"):
            assert dg.materialize([assets.symbol_data, assets.symbol_model], instance=instance,
                                  partition_key=sym, resources=res).success
        r = dg.materialize([assets.latest_signals], instance=instance, resources=res)
        assert r.success
        md = r.get_asset_materialization_events()[0].materialization.metadata
        assert md["dagster/row_count"].value == 2
        assert "| SYN001 |" in md["signals"].value
    table = pd.read_parquet(wh / "latest_signals.parquet")
    assert list(table["symbol"]) == ["SYN001", "SYN002"]
    assert (table["as_of"] == "2025-12-31").all()
    probs = table[["p_down", "p_flat", "p_up"]].sum(axis=1)
    assert ((probs - 1).abs() < 1e-5).all()
    s = Settings(**TINY_CFG)
    from lstm_assets.core.storage import Warehouse

    # the default: each symbol's threshold chosen on its validation split (its report)
    chosen = {sym: json.loads((wh / "evaluation_report" / f"{sym}.json").read_text())
              ["threshold"]["threshold"] for sym in ("SYN001", "SYN002")}
    assert dict(zip(table["symbol"], table["threshold"], strict=True)) == chosen
    fixed = s.replace(choose_threshold=False)
    every = latest_signals(Warehouse(wh), fixed.replace(signal_min_confidence=0.0)).frame
    assert (every["signal"] == every["predicted"]).all()
    none = latest_signals(Warehouse(wh), fixed.replace(signal_min_confidence=1.0)).frame
    assert (none["signal"] == ABSTAIN).all()
    (wh / "clean_frames" / "SYN002.parquet").unlink()  # one symbol cannot be scored
    partial = latest_signals(Warehouse(wh), s)
    assert list(partial.frame["symbol"]) == ["SYN001"] and "SYN002" in partial.errors


def test_signals_follow_symbol_updates_by_automation_condition() -> None:
    from lstm_assets.definitions import defs

    with dg.instance_for_test() as instance:
        sync_partitions(instance, ["SYN001"])
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        for key in ("clean_frames", "lstm_model", "evaluation_report"):
            instance.report_runless_asset_event(dg.AssetMaterialization(key, partition="SYN001"))
        after = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                                  cursor=first.cursor)
        requested = {r.key.to_user_string() for r in after.results if r.true_subset.size}
        assert requested == {"latest_signals", "leaderboard", "signal_outcomes"}
        again = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                                  cursor=after.cursor)
        assert again.total_requested == 0  # handled once per update


# ---- instance ----------------------------------------------------------------------------------

def test_instance_template_renders_and_loads(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from lstm_assets.instance import machine_run_limit, prepare_instance

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LSTM_MAX_CONCURRENT_RUNS", "3")
    home = ensure_dagster_home()
    text = (home / "dagster.yaml").read_text()
    assert "max_concurrent_runs: 3" in text and machine_run_limit() == 3
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_coordinator.dequeue_interval_seconds == 1  # type: ignore[attr-defined]
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 3
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        prepare_instance(instance)
        slots = instance.event_log_storage.get_concurrency_info(GPU_POOL).slot_count
        assert slots == gpu_pool_limit() >= 1  # 1 on a GPU, one per core on a CPU
