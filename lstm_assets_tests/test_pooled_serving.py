"""A pooled family fit for serving (``core/research/serving.py``): save/load without pickle,
bit-identical probabilities after a round trip, the validation block cut after the training
dates with the horizon's gap, an edge over the majority class on planted-signal demo data, and
clear refusals.

Every test runs with one OpenMP/BLAS thread (the machine is shared; see
``test_research_compare.py``).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open
from threadpoolctl import threadpool_limits

from lstm_assets.core.demo import DemoSpec, generate
from lstm_assets.core.model import predict_proba
from lstm_assets.core.research import serving
from lstm_assets.core.research.panel import build_panel, pooled_set, read_frames
from lstm_assets.core.research.serving import (
    CONFIG_KEYS,
    KIND,
    PooledModel,
    fit_pooled,
    pooled_settings,
    serving_fold,
)
from lstm_assets.core.settings import Settings

SETTINGS = Settings(device="cpu", num_threads=1)
TINY: dict[str, Any] = {"hidden_size": 8, "lookback": 10, "max_epochs": 8,
                        "early_stop_patience": 3}
"""The pooled network made small (the other knobs are the comparison's pooled defaults)."""


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """6 planted-signal demo symbols x 3 years (no defects), read by the pipeline's code."""
    root = tmp_path_factory.mktemp("pooled_serving")
    generate(root / "raw", DemoSpec(symbols=6, years=3, seed=5, mode="signal",
                                    defect_share=0.0))
    return read_frames(root / "raw", SETTINGS)


@pytest.fixture(scope="module")
def lstm(frames: dict[str, pd.DataFrame]) -> PooledModel:
    return fit_pooled(frames, SETTINGS, "lstm", overrides=TINY)


def _round_trip(model: PooledModel, path: Path) -> PooledModel:
    version = model.save(path)
    loaded = PooledModel.load(path)
    assert loaded.version == version == model.version
    assert loaded.config == model.config
    return loaded


def test_pooled_save_load_gives_identical_probabilities(
        lstm: PooledModel, frames: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    loaded = _round_trip(lstm, tmp_path / "pooled.safetensors")
    assert lstm.symbols == loaded.symbols == sorted(frames)
    for sym, frame in frames.items():
        p = lstm.predict_latest(sym, frame)
        assert p.shape == (3,) and abs(p.sum() - 1) < 1e-5
        assert np.array_equal(p, loaded.predict_latest(sym, frame))
        # the latest window alone or inside the whole frame: the same window
        assert np.allclose(p, lstm.predict_rows(sym, frame, np.array([len(frame) - 1]))[0],
                           atol=1e-6)
    assert loaded.family == "lstm" and loaded.lookback == 10
    assert loaded.config["architecture"]["embedding"] == 8
    assert loaded.config["settings"]["hidden_size"] == 8
    # the comparison's pooled defaults, where the overrides leave them
    assert loaded.config["settings"]["dropout"] == pooled_settings(SETTINGS).dropout


@pytest.mark.parametrize("family", ["gru", "alstm", "linear"])
def test_pooled_other_families_round_trip(family: str, frames: dict[str, pd.DataFrame],
                                          tmp_path: Path) -> None:
    model = fit_pooled(frames, SETTINGS, family, overrides={**TINY, "max_epochs": 1})
    loaded = _round_trip(model, tmp_path / f"{family}.safetensors")
    assert loaded.family == family
    for sym, frame in frames.items():
        assert np.array_equal(model.predict_latest(sym, frame),
                              loaded.predict_latest(sym, frame))
    if family == "linear":  # a multinomial logistic regression: well above the majority
        v = loaded.config["validation"]
        assert v["accuracy"] > v["majority_accuracy"] + 0.1


def test_pooled_file_has_no_pickle(lstm: PooledModel, tmp_path: Path) -> None:
    path = tmp_path / "pooled.safetensors"
    lstm.save(path)
    blob = path.read_bytes()
    assert not blob.startswith((b"\x80", b"PK"))  # neither a pickle nor torch.save's zip
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])  # the whole header is plain JSON
    config = json.loads(header["__metadata__"]["config"])
    assert set(config) == set(CONFIG_KEYS) and config["kind"] == KIND
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    assert tensors and all(set(v) == {"dtype", "shape", "data_offsets"}
                           for v in tensors.values())
    assert set(tensors) == set(lstm.net.state_dict())
    with safe_open(str(path), framework="pt") as fh:
        assert set(fh.keys()) == set(tensors)
    source = inspect.getsource(serving)
    assert "torch.load" not in source and "import pickle" not in source
    scalers = config["scalers"]
    assert set(scalers) == set(config["symbols"]) == set(lstm.symbols)
    assert all(len(s["mean"]) == len(s["scale"]) == len(config["features"])
               for s in scalers.values())
    assert sorted(config["symbols"].values()) == list(range(len(lstm.symbols)))


def test_pooled_beats_majority_on_planted_signal(lstm: PooledModel) -> None:
    v = lstm.config["validation"]
    # measured: 53.7% against a majority of 33.8%, IC +0.45 (t 12.7) over 109 dates, 654 rows
    assert v["accuracy"] > v["majority_accuracy"] + 0.10
    assert v["rank_ic"] > 0.1 and v["rank_ic_t"] > 3
    assert v["dates"] >= 100 and v["rows"] == sum(r["rows"] for r in
                                                  v["per_symbol"].values())
    assert v["ic_dates"] == v["dates"]  # 6 symbols on every validation date
    training = lstm.config["training"]
    assert training["device"] == "cpu" and 1 <= training["best_epoch"] <= 8


def test_pooled_predictions_follow_the_training_scaling(
        lstm: PooledModel, frames: dict[str, pd.DataFrame]) -> None:
    """The stored scalers reproduce the training matrix exactly, and predicting a symbol's
    validation windows from its clean frame gives the validation figures recorded."""
    settings = pooled_settings(SETTINGS, TINY)
    panel = build_panel(frames, SETTINGS, 1, "raw")
    fold = serving_fold(panel.all_dates, settings, 1)
    pset = pooled_set(panel, fold, settings)
    va = pset.end_rows("val")
    expected = predict_proba(lstm.net, pset.X, va, pset.lookback)
    hits = 0
    for j, sym in enumerate(panel.symbols):
        assert np.array_equal(lstm.scale(sym, frames[sym]), pset.X[pset.symbol_of_row == j])
        mine = pset.symbol_of_row[va] == j
        proba = lstm.predict_rows(sym, frames[sym], pset.source_row[va[mine]])
        assert np.allclose(proba, expected[mine], atol=1e-6)
        hits += int((proba.argmax(axis=1) == pset.y[va[mine]]).sum())
    assert hits / len(va) == pytest.approx(lstm.config["validation"]["accuracy"], abs=2e-3)


def test_pooled_validation_dates_follow_training_with_a_gap(
        lstm: PooledModel, frames: dict[str, pd.DataFrame]) -> None:
    # the fitted model's dates: gap (h = 1) dates dropped between training and validation
    days = np.unique(np.concatenate([f["date"].to_numpy().astype("datetime64[D]")
                                     for f in frames.values()]))
    pos = {str(d): i for i, d in enumerate(days)}
    cut = lstm.config["dates"]
    tr, va = [pos[d] for d in cut["train"]], [pos[d] for d in cut["val"]]
    assert cut["gap"] == 1 and va[0] - tr[1] - 1 == 1
    assert tr[0] == lstm.lookback - 1 and va[1] == len(days) - 2  # the last date: no label
    assert va[1] - va[0] + 1 == lstm.config["validation"]["dates"]
    # any horizon and embargo: no training row's label reaches a validation date
    for h, embargo, val_days in ((1, 0, None), (5, 0, None), (5, 8, 60)):
        settings = pooled_settings(SETTINGS, TINY).replace(embargo=embargo)
        panel = build_panel(frames, SETTINGS, h, "raw")
        fold = serving_fold(panel.all_dates, settings, h, val_days)
        pset = pooled_set(panel, fold, settings)
        tr_rows, va_rows = pset.end_rows("train"), pset.end_rows("val")
        assert len(pset.end_rows("test")) == 0
        assert pset.dates[tr_rows].max() == fold.train[1] < fold.val[0]
        assert pset.dates[va_rows].min() >= fold.val[0]
        d = {x: i for i, x in enumerate(np.unique(panel.all_dates))}
        gap = max(embargo, h)
        assert d[fold.val[0]] - d[fold.train[1]] - 1 == gap  # dropped dates between them
        assert d[fold.train[1]] + h < d[fold.val[0]]  # the last training label ends before
        assert d[fold.val[1]] == len(d) - 1 - h
        if val_days is not None:
            assert len(np.unique(pset.dates[va_rows])) == val_days
    with pytest.raises(ValueError, match="validation dates"):
        serving_fold(panel.all_dates, settings, 1, val_days=5)


def test_pooled_refuses_unknown_symbol_missing_feature_and_short_frame(
        lstm: PooledModel, frames: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    frame = frames["SYN001"]
    with pytest.raises(ValueError, match="NOPE: not in the pooled lstm model"):
        lstm.predict_latest("NOPE", frame)
    feature = lstm.features[3]
    with pytest.raises(ValueError, match=f"SYN001: .*lacks 1 feature.*{feature}"):
        lstm.predict_latest("SYN001", frame.drop(columns=[feature]))
    with pytest.raises(ValueError, match="SYN001: 5 clean rows < lookback 10"):
        lstm.predict_latest("SYN001", frame.iloc[:5])
    with pytest.raises(ValueError, match="SYN001: window end rows"):
        lstm.predict_rows("SYN001", frame, np.array([3]))
    with pytest.raises(ValueError, match="unknown pooled family 'lgbm'"):
        fit_pooled(frames, SETTINGS, "lgbm")
    # a file that is no pooled model (here: a per-symbol model's config) is refused
    from lstm_assets.core.model import save_model

    other = tmp_path / "per_symbol.safetensors"
    save_model(other, {"w": lstm.net.state_dict()[lstm.net.input_weight_key]},
               {"features": lstm.features})
    with pytest.raises(ValueError, match="not a pooled model file"):
        PooledModel.load(other)


def test_pooled_leaves_out_a_symbol_without_training_rows(
        frames: dict[str, pd.DataFrame]) -> None:
    """A symbol whose history starts after the training dates gets no scaler and is not
    served; with fewer than 5 symbols a date has no rank IC, and the IC is None."""
    late = frames["SYN001"].iloc[-100:].reset_index(drop=True)
    model = fit_pooled({**frames, "LATE": late}, SETTINGS, "linear", overrides=TINY)
    assert model.config["left_out"] == ["LATE"] and "LATE" not in model.symbols
    assert model.config["architecture"]["n_symbols"] == 7
    with pytest.raises(ValueError, match="LATE: not in the pooled linear model"):
        model.predict_latest("LATE", late)
    four = {s: frames[s] for s in sorted(frames)[:4]}
    v = fit_pooled(four, SETTINGS, "linear", overrides=TINY).config["validation"]
    assert v["rank_ic"] is None and v["ic_dates"] == 0 and v["rows"] > 0


def test_pooled_model_asset_serves_latest_signals(tmp_path: Path) -> None:
    """``pooled_model`` materialized in Dagster; with ``signal_source=pooled`` the signals (and
    their history) come from it, for every symbol it was trained on."""
    import dagster as dg

    from lstm_assets.core import stages
    from lstm_assets.defs import assets
    from lstm_assets.defs.resources import LstmSettings, PathsResource

    generate(tmp_path / "raw", DemoSpec(symbols=5, years=3, seed=2, defect_share=0.0))
    layout = stages.Layout.from_dirs(tmp_path / "raw", tmp_path / "wh")
    for sym in layout.symbols():
        stages.run_clean(layout, sym, SETTINGS)
    paths = PathsResource(raw_dir=str(tmp_path / "raw"), warehouse_dir=str(tmp_path / "wh"))
    pooled = {"settings": LstmSettings(device="cpu", num_threads=1, signal_source="pooled"),
              "paths": paths}
    knobs = [f"{k}={v}" for k, v in {**TINY, "max_epochs": 2}.items()]
    with dg.instance_for_test() as instance:
        r = dg.materialize([assets.pooled_model], instance=instance, resources=pooled,
                           run_config={"ops": {"pooled_model": {"config": {"set": knobs}}}})
        assert r.success
        md = r.get_asset_materialization_events()[0].materialization.metadata
        assert md["family"].value == "lstm" and md["symbols"].value == 5
        assert md["validation_accuracy"].value.endswith("%")
        r = dg.materialize([assets.latest_signals, assets.signal_outcomes], instance=instance,
                           resources=pooled)
        assert r.success
    table = pd.read_parquet(tmp_path / "wh" / "latest_signals.parquet")
    assert list(table["symbol"]) == layout.symbols()
    assert set(table["source"]) == {"pooled:lstm"}
    assert set(table["promise_split"]) == {"validation"}
    model = PooledModel.load(tmp_path / "wh" / "pooled_model" / "lstm.safetensors")
    assert set(table["model_version"]) == {model.version}
    # without a pooled model of that family: a clear error, not a silent fallback
    from lstm_assets.core.signals import latest_signals
    from lstm_assets.core.storage import Warehouse

    with pytest.raises(FileNotFoundError, match="materialize pooled_model"):
        latest_signals(Warehouse(tmp_path / "wh"),
                       SETTINGS.replace(signal_source="pooled", pooled_family="gru"))
