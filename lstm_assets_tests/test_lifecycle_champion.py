"""Champion / challenger: a retrained model serves only when it is not significantly worse than
the serving one on recent windows neither trained on; every version is kept and can be
promoted back, byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lstm_assets.core import stages
from lstm_assets.core.demo import DemoSpec, generate
from lstm_assets.core.lifecycle import versions
from lstm_assets.core.lifecycle.versions import challenger_decision
from lstm_assets.core.model import LoadedModel
from lstm_assets.core.settings import Settings
from lstm_assets.core.signals import latest_signals

T0 = datetime(2026, 3, 1, 2, tzinfo=UTC)
S = Settings(lookback=10, hidden_size=8, num_layers=1, max_epochs=3, batch_size=64,
             bootstrap_samples=50, device="cpu", num_threads=1)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("champion")
    generate(root / "raw", DemoSpec(symbols=1, years=4, seed=3, defect_share=0.0))
    return root / "raw"


def _layout(raw: Path, tmp_path: Path) -> stages.Layout:
    layout = stages.Layout.from_dirs(raw, tmp_path / "wh", raw.parent / "demo_truth")
    stages.run_clean(layout, "SYN001", S)
    stages.run_sequences(layout, "SYN001", S)
    return layout


def _sabotaged(layout: stages.Layout) -> dict[str, torch.Tensor]:
    """The serving model's weights made confidently wrong: always DOWN at ~100%."""
    state = {k: v.clone() for k, v in
             LoadedModel.load(layout.warehouse.model("SYN001")).net.state_dict().items()}
    state["head.bias"] = torch.tensor([12.0, -12.0, -12.0])
    return state


def _train_from(layout: stages.Layout, state: dict[str, torch.Tensor], when: datetime) -> dict:
    """One near-zero-step epoch from ``state``: a model with (almost) those weights."""
    return stages.run_train(layout, "SYN001", S.replace(learning_rate=1e-7), init_state=state,
                            max_epochs=1, now=when)


def test_champion_decision_is_a_one_sided_paired_test() -> None:
    rng = np.random.default_rng(0)
    champ = rng.gamma(2.0, 0.5, 400)
    ok = np.ones(400)
    same = challenger_decision(champ, champ + rng.normal(0, 0.01, 400), ok, ok, 0.05)
    assert same["promote"] and same["windows"] == 400
    better = challenger_decision(champ, champ - 0.2, ok, ok, 0.05)
    assert better["promote"] and better["p_worse"] > 0.5
    worse = challenger_decision(champ, champ + 0.2, ok, ok, 0.05)
    assert not worse["promote"] and worse["p_worse"] < 0.05
    assert "significantly worse" in worse["reason"]
    assert challenger_decision(champ, champ + 0.2, ok, ok, 0.0)["promote"]  # test off


def test_champion_worse_challenger_kept_out_better_promoted_rollback(raw: Path,
                                                                     tmp_path: Path) -> None:
    layout = _layout(raw, tmp_path)
    wh = layout.warehouse
    serving = wh.model("SYN001")

    first = stages.run_train(layout, "SYN001", S, now=T0)  # nothing to compare with: serves
    assert first["promoted"] and first["version"] == versions.serving_version(wh, "SYN001")
    good_version, good_bytes = first["version"], serving.read_bytes()

    # a worse challenger: kept out, the serving files are not rewritten
    mtime = serving.stat().st_mtime_ns
    worse = _train_from(layout, _sabotaged(layout), T0 + timedelta(days=1))
    assert not worse["promoted"], worse["promotion_reason"]
    assert "significantly worse" in worse["promotion_reason"]
    assert worse["challenger_log_loss"] > worse["champion_log_loss"]
    assert serving.stat().st_mtime_ns == mtime and serving.read_bytes() == good_bytes
    bad_version = worse["version"]

    # every version is kept with its record; the same inputs and settings again: skipped
    listed = {r["version"]: r for r in versions.list_versions(wh, "SYN001")}
    assert set(listed) == {good_version, bad_version}
    assert listed[good_version]["serving"] and not listed[bad_version]["serving"]
    rec = listed[bad_version]
    assert rec["decision"]["promote"] is False and rec["decision"]["windows"] > 50
    assert rec["trained_on"]["raw_file_hash"] and rec["code_version"] and rec["settings"]
    again = stages.run_train(layout, "SYN001", S.replace(learning_rate=1e-7),
                             now=T0 + timedelta(days=2))
    assert again["init"] == "skipped" and "not promoted" in again["init_reason"]

    # roll back to the poor model: byte for byte, and the signals use it
    versions.promote(wh, "SYN001", bad_version, reason="rollback test")
    assert serving.read_bytes() == (wh.base / "model_versions" / "SYN001" /
                                    f"{bad_version}.safetensors").read_bytes()
    stages.run_evaluate(layout, "SYN001", S)
    assert latest_signals(wh, S).frame["model_version"].tolist() == [bad_version]

    # a better challenger (a normal fit against the poor champion) is promoted
    better = stages.run_train(layout, "SYN001", S.replace(seed=5), now=T0 + timedelta(days=3))
    assert better["promoted"], better["promotion_reason"]
    assert better["challenger_log_loss"] < better["champion_log_loss"]
    assert versions.serving_version(wh, "SYN001") == better["version"]

    # and forward (back) to the first model, byte for byte
    versions.promote(wh, "SYN001", good_version, reason="roll forward")
    assert serving.read_bytes() == good_bytes
    stages.run_evaluate(layout, "SYN001", S)
    assert latest_signals(wh, S).frame["model_version"].tolist() == [good_version]
    with pytest.raises(FileNotFoundError, match="no model version"):
        versions.promote(wh, "SYN001", "0" * 16, reason="typo")


def test_champion_prune_keeps_newest_and_serving(raw: Path, tmp_path: Path) -> None:
    layout = _layout(raw, tmp_path)
    wh = layout.warehouse
    made = [stages.run_train(layout, "SYN001", S.replace(seed=i, keep_model_versions=0,
                                                          promotion_level=0.0),
                             now=T0 + timedelta(days=i)) for i in range(3)]
    assert len(versions.list_versions(wh, "SYN001")) == 3
    serving = versions.serving_version(wh, "SYN001")
    removed = versions.prune(wh, "SYN001", keep=1)
    left = [r["version"] for r in versions.list_versions(wh, "SYN001")]
    assert serving in left and len(left) == 1 and len(removed) == 2
    assert {m["version"] for m in made} >= set(left)


def test_champion_cli_lists_versions_and_promotes(raw: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from lstm_assets.cli import main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "no_instance"))
    layout = _layout(raw, tmp_path)
    wh = layout.warehouse
    first = stages.run_train(layout, "SYN001", S, now=T0)
    second = _train_from(layout, _sabotaged(layout), T0 + timedelta(days=1))
    assert not second["promoted"]
    stages.run_evaluate(layout, "SYN001", S)
    d = ["--warehouse-dir", str(wh.base)]
    assert main(["models", "syn001", *d]) == 0
    out = capsys.readouterr().out
    assert "2 model version(s)" in out and first["version"] in out and "kept out" in out
    assert main(["promote", "SYN001", second["version"], *d, "--raw-dir", str(raw),
                 "--set", "bootstrap_samples=20"]) == 0
    out = capsys.readouterr().out
    assert f"version {second['version']} now serves" in out and "no Dagster instance" in out
    assert versions.serving_version(wh, "SYN001") == second["version"]
    signals = pd.read_parquet(wh.signals())
    assert signals["model_version"].tolist() == [second["version"]]
    with pytest.raises(SystemExit):
        main(["promote", "SYN001", "not-a-version", *d, "--raw-dir", str(raw)])


def test_champion_warm_start_keeps_its_start_when_training_only_hurts(raw: Path,
                                                                       tmp_path: Path) -> None:
    """A warm start scores its starting weights first (epoch 0): when every epoch is worse on
    validation (here a learning rate that wrecks the weights), it returns its start."""
    from lstm_assets.core.stages.layout import read_sequences
    from lstm_assets.core.train import fit

    layout = _layout(raw, tmp_path)
    seq = read_sequences(layout, "SYN001")
    start = stages.run_train(layout, "SYN001", S, now=T0)
    state = LoadedModel.load(layout.warehouse.model("SYN001")).net.state_dict()
    res = fit(seq, S.replace(learning_rate=5.0, early_stop_patience=2), init_state=state,
              max_epochs=3)
    assert res.best_epoch == 0 and res.epochs_run >= 2
    assert all(torch.equal(res.state[k], state[k]) for k in state)
    assert res.best_val_loss == pytest.approx(start["best_val_loss"], rel=1e-5)
    # a warm start can begin where the previous fit's schedule ended
    slow = fit(seq, S, init_state=state, max_epochs=1, init_lr=1e-5)
    assert slow.history[0]["lr"] == pytest.approx(1e-5)


def test_champion_promote_is_recorded_in_the_dagster_instance(
        raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the project's instance: the promoted model, its full report metadata and the model
    checks are recorded for the UI; `models` shows the hand promotion beside the decision."""
    import dagster as dg

    from lstm_assets.cli import main
    from lstm_assets.instance import ensure_dagster_home

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    ensure_dagster_home()
    layout = _layout(raw, tmp_path)
    wh = layout.warehouse
    stages.run_train(layout, "SYN001", S, now=T0)
    kept_out = _train_from(layout, _sabotaged(layout), T0 + timedelta(days=1))["version"]
    d = ["--warehouse-dir", str(wh.base)]
    assert main(["promote", "SYN001", kept_out.upper(), *d, "--raw-dir", str(raw)]) == 0
    assert "recorded in the Dagster instance" in capsys.readouterr().out
    with dg.DagsterInstance.get() as instance:
        ev = instance.get_latest_materialization_event(dg.AssetKey("evaluation_report"))
        assert ev is not None
        md = ev.asset_materialization.metadata
        assert md["model_version"].value == kept_out and "report" in md
        checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("evaluation_report"), "beats_majority_baseline"),
             dg.AssetCheckKey(dg.AssetKey("lstm_model"), "model_fresh")])
        assert len(checks) == 2
    assert main(["models", "SYN001", *d]) == 0
    out = capsys.readouterr().out
    assert "promoted by hand" in out and "after training: kept out" in out
    rep = stages.run_evaluate(layout, "SYN001", S)
    assert rep["promotions"] and rep["model_version"] == kept_out
    assert "served by hand since" in (wh.base / "evaluation_report" / "SYN001.md").read_text()
