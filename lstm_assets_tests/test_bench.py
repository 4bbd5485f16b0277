"""The benchmark runs (tiny size) and writes every required key; the stacked multi-symbol trainer
matches per-symbol ``fit``; the FLOP count matches the issue's figure. No timing is asserted."""

from __future__ import annotations

import json
import numbers
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lstm_assets.core.bench import REQUIRED_KEYS, BenchSize, lstm_flops_per_sequence, run_bench
from lstm_assets.core.pipeline import Layout, run_clean
from lstm_assets.core.sequences import build_sequences
from lstm_assets.core.settings import Settings
from lstm_assets.core.train import fit
from lstm_assets.core.train_many import fit_many


def test_bench_tiny_writes_every_key(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_bench(BenchSize.tiny(), json_path=out, workdir=tmp_path / "work",
                       say=lambda _msg: None)
    data = json.loads(out.read_text())
    for key in REQUIRED_KEYS:
        assert key in data, key
        v = data[key]
        assert v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool)), (key, v)
    assert data["data_stages_symbols"] == 3 and data["data_stages_years"] == 3
    assert data["gpu_train_all_symbols_seconds"] is None or torch.cuda.is_available()
    # everything that the CPU sections measure is measured
    for key in REQUIRED_KEYS:
        if not key.startswith("gpu_"):
            assert data[key] is not None, key
    assert data["unchanged_symbol_train_seconds"] == 0.0  # unchanged inputs: no training
    assert data["meta"]["dagster_imported"] is False or "dagster" in sys.modules
    assert result["table"] and data["table"]


def _three_symbols(demo_raw: Path, tmp_path: Path, s: Settings) -> list:
    layout = Layout.from_dirs(demo_raw, tmp_path / "wh")
    seqs = []
    for sym, cut in zip(layout.symbols(), (0, 150, 300), strict=True):
        run_clean(layout, sym, s)
        frame = pd.read_parquet(layout.warehouse.clean_frame(sym))
        if cut:  # symbols of different lengths: the shorter run out of batches first
            frame = frame.iloc[:-cut].reset_index(drop=True)
        seqs.append(build_sequences(frame, s)[0])
    return seqs


def test_bench_multi_symbol_training_equals_single(demo_raw: Path, tmp_path: Path) -> None:
    s = Settings(lookback=10, hidden_size=8, num_layers=2, dropout=0.0, max_epochs=4,
                 device="cpu", num_threads=1, early_stop_patience=2, lr_patience=0,
                 learning_rate=3e-3)
    seqs = _three_symbols(demo_raw, tmp_path, s)
    many = fit_many(seqs, s, group_size=2)  # two groups: 2 symbols, then 1
    assert [r.trained_together for r in many] == [2, 2, 1]
    for seq, got in zip(seqs, many, strict=True):
        want = fit(seq, s)
        assert got.epochs_run == want.epochs_run
        assert got.best_epoch == want.best_epoch
        assert got.stopped_early == want.stopped_early
        np.testing.assert_allclose([h["val_loss"] for h in got.history],
                                   [h["val_loss"] for h in want.history], rtol=1e-4)
        assert [h["lr"] for h in got.history] == [h["lr"] for h in want.history]
        assert got.state.keys() == want.state.keys()
        for k in want.state:
            np.testing.assert_allclose(got.state[k].numpy(), want.state[k].numpy(), atol=1e-3)


def test_bench_multi_symbol_training_with_dropout_learns(demo_raw: Path, tmp_path: Path) -> None:
    s = Settings(lookback=10, hidden_size=8, num_layers=2, dropout=0.2, max_epochs=3,
                 device="cpu", num_threads=1)
    seqs = _three_symbols(demo_raw, tmp_path, s)
    many = fit_many(seqs, s)
    for r in many:
        assert r.epochs_run == 3 and np.isfinite(r.best_val_loss)
        losses = [h["train_loss"] for h in r.history]
        assert losses[-1] < losses[0]
        assert r.state["lstm.weight_ih_l0"].shape == (4 * 8, seqs[0].X.shape[1])


def test_fit_trains_in_fp32_where_bf16_lstm_is_unsupported(
        demo_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU whose cuDNN has no bf16 RNN (before 9.13) must train in fp32, not fail: with the
    probe saying "unsupported", autocast=True gives exactly the fp32 weights."""
    from lstm_assets.core import train

    s = Settings(lookback=10, hidden_size=8, num_layers=1, dropout=0.0, max_epochs=2,
                 device="cpu", num_threads=1)
    seq = _three_symbols(demo_raw, tmp_path, s)[0]
    monkeypatch.setitem(train._BF16_LSTM, "cpu", False)
    fell_back = fit(seq, s, autocast=True)
    plain = fit(seq, s, autocast=False)
    assert fell_back.precision == plain.precision == "fp32"
    for k in plain.state:
        assert torch.equal(fell_back.state[k], plain.state[k]), k
    monkeypatch.setitem(train._BF16_LSTM, "cpu", True)
    assert fit(seq, s, autocast=True, max_epochs=1).precision == "bf16-autocast"


@pytest.mark.parametrize(("feats", "hidden", "layers", "lookback", "mflop"),
                         [(95, 128, 2, 30, 44.2)])
def test_bench_flops_per_sequence(feats: int, hidden: int, layers: int, lookback: int,
                                  mflop: float) -> None:
    got = lstm_flops_per_sequence(feats, hidden, layers, lookback) / 1e6
    assert got == pytest.approx(mflop, rel=0.01)
