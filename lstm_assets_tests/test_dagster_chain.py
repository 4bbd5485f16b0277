"""Definitions load; the full chain materialized in-process for two symbols with a tiny config."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import numpy as np

from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.storage import read_json
from lstm_assets.definitions import defs
from lstm_assets.defs import assets
from lstm_assets.defs.resources import LstmSettings, PathsResource
from lstm_assets.instance import sync_partitions

CHAIN = ["raw_features", "clean_frames", "sequence_tensors", "lstm_model", "evaluation_report"]


def test_definitions_load_with_six_assets() -> None:
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert set(CHAIN) | {"leaderboard"} <= keys
    assert defs.resolve_job_def("symbol_chain_job") is not None
    assert defs.resolve_assets_def("lstm_model").node_def.pool == "gpu"


def tiny_resources(raw: Path, wh: Path) -> dict[str, object]:
    return {
        "settings": LstmSettings(lookback=10, hidden_size=8, num_layers=1, max_epochs=2,
                                 bootstrap_samples=50, device="cpu"),
        "paths": PathsResource(raw_dir=str(raw), warehouse_dir=str(wh),
                               truth_dir=str(raw.parent / "demo_truth")),
    }


def test_chain_two_symbols_in_process(demo_raw: Path, tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    res = tiny_resources(demo_raw, wh)
    all_assets = [assets.raw_features, assets.clean_frames, assets.sequence_tensors,
                  assets.lstm_model, assets.evaluation_report, assets.leaderboard]
    with dg.instance_for_test() as instance:
        sync_partitions(instance, ["SYN001", "SYN002", "SYN003"])
        assert set(instance.get_dynamic_partitions("symbols")) == {
            p.stem for p in demo_raw.glob("*.csv")}
        for sym in ("SYN001", "SYN002"):
            result = dg.materialize(all_assets[:-1], partition_key=sym, instance=instance,
                                    resources=res,
                                    selection=CHAIN)
            assert result.success
            mats = {m.asset_key.to_user_string(): m for m in
                    result.get_asset_materialization_events()}
            assert set(mats) == set(CHAIN)
            md = {k: v.materialization.metadata for k, v in mats.items()}
            assert md["raw_features"]["rows"].value > 900
            assert md["clean_frames"]["rows_out"].value > 500
            assert md["sequence_tensors"]["file_to_matrix_ratio"].value <= 1.5
            assert md["lstm_model"]["epochs_run"].value == 2
            assert md["lstm_model"]["parameters"].value > 0
            assert md["lstm_model"]["sequences_per_second"].value > 0
            # the UI's figures read as percentages with their 95% interval: "33.6% [23.1, 40.9]"
            acc = re.fullmatch(r"(\d+\.\d)% \[(\d+\.\d), (\d+\.\d)\]",
                               md["evaluation_report"]["accuracy"].value)
            assert acc and all(0 <= float(x) <= 100 for x in acc.groups())
            assert md["evaluation_report"]["edge_vs_best_baseline"].value.endswith("]")
            assert md["evaluation_report"]["log_loss"].value == round(
                md["evaluation_report"]["log_loss"].value, 4)
            assert "majority" in md["evaluation_report"]["report"].value
            assert "data:image/png;base64," in md["evaluation_report"]["report"].value
            assert (wh / "lstm_model" / f"{sym}.safetensors").exists()
            assert (wh / "evaluation_report" / f"{sym}.png").exists()
            seq = SequenceSet.load(wh / "sequence_tensors" / f"{sym}.npz")
            assert seq.X.dtype == np.float32 and seq.X.ndim == 2
        lb = dg.materialize([assets.leaderboard], instance=instance, resources=res)
        assert lb.success
    board = read_json(wh / "leaderboard.json")
    assert [r["symbol"] for r in board["rows"]] == ["SYN001", "SYN002"]
    assert "model_accuracy" in board["mean"]
    assert (wh / "leaderboard.md").read_text().count("| SYN00") == 2


def test_bad_symbol_fails_its_partition_with_file_problem_fix(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "EMPTY.csv").write_text("")
    with dg.instance_for_test() as instance:
        sync_partitions(instance, ["EMPTY"])
        result = dg.materialize([assets.raw_features], partition_key="EMPTY", instance=instance,
                                resources=tiny_resources(raw, tmp_path / "wh"),
                                raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    desc = failure.step_failure_data.user_failure_data.description
    assert "EMPTY.csv" in desc and "empty" in desc and "Fix:" in desc
