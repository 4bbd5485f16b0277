"""Model shapes, training, and a saved model that reloads (no pickle) and predicts the same."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lstm_assets.core.model import LoadedModel, LSTMClassifier, predict_proba, save_model
from lstm_assets.core.settings import Settings
from lstm_assets.core.stages import Layout, reload_and_predict, run_symbol


def test_model_shapes() -> None:
    net = LSTMClassifier(n_features=95, hidden_size=128, num_layers=2, dropout=0.2)
    out = net(torch.zeros(4, 30, 95))
    assert out.shape == (4, 3)
    assert net.lstm.num_layers == 2 and net.lstm.hidden_size == 128


def test_chain_core_reload_reproduces_test_predictions(demo_raw: Path, tmp_path: Path,
                                                       tiny: Settings) -> None:
    layout = Layout.from_dirs(demo_raw, tmp_path / "wh", demo_raw.parent / "demo_truth")
    out = run_symbol(layout, "SYN001", tiny)
    assert out["model"]["epochs_run"] == tiny.max_epochs
    import pandas as pd

    preds = pd.read_parquet(layout.warehouse.report("SYN001", ".predictions.parquet"))
    again = reload_and_predict(layout, "SYN001")
    np.testing.assert_allclose(again, preds[["p_down", "p_flat", "p_up"]].to_numpy(), atol=1e-6)
    # the file is safetensors: loading it never unpickles
    with open(layout.warehouse.model("SYN001"), "rb") as fh, pytest.raises(
            pickle.UnpicklingError):
        pickle.load(fh)


def test_same_seed_same_weights(demo_raw: Path, tmp_path: Path, tiny: Settings) -> None:
    a = Layout.from_dirs(demo_raw, tmp_path / "a")
    b = Layout.from_dirs(demo_raw, tmp_path / "b")
    ra = run_symbol(a, "SYN002", tiny)
    rb = run_symbol(b, "SYN002", tiny)
    assert ra["report"]["model"]["accuracy"] == rb["report"]["model"]["accuracy"]
    ma = LoadedModel.load(a.warehouse.model("SYN002"))
    mb = LoadedModel.load(b.warehouse.model("SYN002"))
    for (ka, va), (_, vb) in zip(ma.net.state_dict().items(), mb.net.state_dict().items(),
                                 strict=True):
        assert torch.equal(va, vb), ka


def test_save_and_load_roundtrip(tmp_path: Path) -> None:
    net = LSTMClassifier(5, 8, 1, 0.0)
    cfg = {"features": list("abcde"), "architecture": {"hidden_size": 8, "num_layers": 1,
                                                      "dropout": 0.0},
           "lookback": 4, "scaler": {"mean": [0.0] * 5, "scale": [1.0] * 5}}
    save_model(tmp_path / "m.safetensors", net.state_dict(), cfg)
    m = LoadedModel.load(tmp_path / "m.safetensors")
    X = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    rows = np.arange(3, 20)
    np.testing.assert_allclose(m.predict_proba(X, rows), predict_proba(net, X, rows, 4),
                               atol=1e-6)



def test_artifacts_get_the_umask_mode_not_owner_only(tmp_path: Path) -> None:
    """Atomic writes go through mkstemp (0600); the final file must have the mode a plain open()
    gives, so other users, pods under another uid and shared folders can read models."""
    from lstm_assets.core import storage

    storage.write_json(tmp_path / "a.json", {"x": 1})
    with open(tmp_path / "b.json", "w") as fh:  # what a plain open() gives under this umask
        fh.write("{}")
    assert ((tmp_path / "a.json").stat().st_mode & 0o777
            == (tmp_path / "b.json").stat().st_mode & 0o777)
