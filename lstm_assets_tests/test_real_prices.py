"""Acceptance on the real files in ``../shared/real_prices`` (164 US stocks, 2012-2017).

These are the only tests that may skip, and only when that folder is absent (a user's machine
does not have it). Kept small: every file is read, a handful are cleaned with the default
settings, and four symbols (AAPL, TDG, AMT, BHF) go through the Dagster chain with tiny settings.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lstm_assets.core.clean import clean_frame
from lstm_assets.core.ingest import invalid_raw_files, list_raw_files, read_raw
from lstm_assets.core.settings import Settings
from lstm_assets.core.storage import InputError, read_json

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real_prices"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is absent")


def test_real_prices_every_file_reads_or_fails_clearly() -> None:
    files = list_raw_files(REAL)
    assert len(files) >= 160 and invalid_raw_files(REAL) == []
    assert files["LMT"].name == "NYSE:LMT.csv"  # exchange prefix dropped from the symbol
    failed = {}
    for sym, path in files.items():
        try:
            df, info = read_raw(path)
        except InputError as e:
            failed[sym] = str(e)
            continue
        assert {"date", "open", "high", "low", "close", "volume"} <= set(df.columns), sym
        assert info.columns_dropped.get("Name") == "text, not numbers", sym
        assert df["date"].notna().all(), sym
    assert list(failed) == ["AMT"]
    assert "AMT.csv" in failed["AMT"] and "header but no data rows" in failed["AMT"]
    assert "Fix: " in failed["AMT"]


def test_real_prices_default_settings_keep_real_histories() -> None:
    s = Settings()  # lookback 30: the defaults must work on 5-year real histories
    for sym in ("AAPL", "TDG", "LMT"):
        df, _ = read_raw(list_raw_files(REAL)[sym])
        frame, cinfo = clean_frame(df, s, sym)
        assert cinfo["rows_out"] >= 1000, (sym, cinfo["rows_out"])
        assert cinfo["features"] >= 60
        assert not cinfo["columns_dropped"], cinfo["columns_dropped"]
    _, tdg = read_raw(REAL / "TDG.csv")
    assert tdg.renamed["Adj Close"] == "close" and tdg.columns_dropped["Close"]
    df, _ = read_raw(REAL / "FTI.csv")  # ~145 rows: long-window indicators give way
    frame, cinfo = clean_frame(df, s, "FTI.csv")
    assert len(frame) >= 135 and any("warm-up" in v for v in cinfo["columns_dropped"].values())
    df, _ = read_raw(REAL / "BHF.csv")
    with pytest.raises(InputError, match=r"BHF\.csv: history too short: 20 trading day.*Fix: "):
        clean_frame(df, s, str(REAL / "BHF.csv"))


def test_real_prices_chain_good_symbols_model_bad_ones_fail_alone(tmp_path: Path) -> None:
    import dagster as dg

    from lstm_assets.defs import assets
    from lstm_assets.defs.resources import LstmSettings, PathsResource

    raw, wh = tmp_path / "raw", tmp_path / "wh"
    raw.mkdir()
    for sym in ("AAPL", "TDG", "AMT", "BHF"):
        shutil.copy(REAL / f"{sym}.csv", raw / f"{sym}.csv")  # a copy: outside links are refused
    resources = {
        "settings": LstmSettings(lookback=10, hidden_size=8, num_layers=1, max_epochs=2,
                                 bootstrap_samples=50, device="cpu"),
        "paths": PathsResource(raw_dir=str(raw), warehouse_dir=str(wh), truth_dir=""),
    }
    from lstm_assets_tests.test_input_catalogue import _unique, failed_stage

    selection = ["raw_features", "clean_frames", "sequence_tensors", "lstm_model",
                 "evaluation_report"]
    chain = _unique([getattr(assets, name) for name in selection])
    expected_failure = {"AMT": ("raw_features", "header but no data rows"),
                        "BHF": ("clean_frames", "history too short")}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", sorted(list_raw_files(raw)))
        for sym in ("AMT", "AAPL", "BHF", "TDG"):
            res = dg.materialize(chain, partition_key=sym, instance=instance,
                                 selection=selection, resources=resources, raise_on_error=False)
            if sym in expected_failure:
                stage, problem = expected_failure[sym]
                assert not res.success
                failure = next(e for e in res.all_events if e.is_step_failure)
                desc = failure.step_failure_data.user_failure_data.description
                assert failed_stage(failure) == stage
                assert f"{sym}.csv" in desc and problem in desc
                assert "Fix: " in desc
            else:
                assert res.success, sym
        assert dg.materialize([assets.leaderboard], instance=instance,
                              resources=resources).success
    board = read_json(wh / "leaderboard.json")
    assert sorted(r["symbol"] for r in board["rows"]) == ["AAPL", "TDG"]
    for sym in ("AAPL", "TDG"):
        assert (wh / "lstm_model" / f"{sym}.safetensors").exists()
        assert (wh / "evaluation_report" / f"{sym}.md").exists()
