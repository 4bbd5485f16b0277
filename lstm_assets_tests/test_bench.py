"""The benchmark runs (tiny size) and writes every required key; the stacked multi-symbol trainer
matches per-symbol ``fit``; the FLOP count matches the issue's figure. No timing is asserted."""

from __future__ import annotations

import functools
import json
import numbers
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lstm_assets.bench.config import REQUIRED_KEYS, SECTIONS, BenchSize
from lstm_assets.bench.data_stages import bare_read_scale_seconds
from lstm_assets.bench.memory import run_probe
from lstm_assets.bench.runner import SECTION_FUNCTIONS, run_bench
from lstm_assets.bench.yardsticks import lstm_flops_per_sequence
from lstm_assets.core.sequences import build_sequences
from lstm_assets.core.settings import Settings
from lstm_assets.core.stages import Layout, run_clean
from lstm_assets.core.train import fit, fit_many


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
    assert data["bare_read_scale_seconds"] > 0
    assert data["data_stages_vs_bare_read"] == pytest.approx(
        data["data_stages_seconds"] / data["bare_read_scale_seconds"])
    assert any(r["target"] == "<= 3.2x" for r in data["table"])
    assert data["meta"]["dagster_imported"] is False or "dagster" in sys.modules
    assert result["table"] and data["table"]


def test_bench_runs_every_section_by_name() -> None:
    assert tuple(SECTION_FUNCTIONS) == SECTIONS


def test_bare_read_scale_reads_every_demo_file(demo_raw: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The bare baseline reads each raw file once (defective ones too: a column with junk text
    is read as text and left out, not a failed read) and scales a float32 matrix of it."""
    from lstm_assets.bench import data_stages

    shapes: list[tuple[int, ...]] = []
    scale = data_stages._scale

    def spy(X: np.ndarray) -> np.ndarray:
        out = scale(X)
        assert out.dtype == np.float32 and out.shape == X.shape
        shapes.append(X.shape)
        return out

    monkeypatch.setattr(data_stages, "_scale", spy)
    paths = sorted(demo_raw.glob("*.csv"))
    assert bare_read_scale_seconds(paths) > 0
    assert len(shapes) == len(paths) == 3
    assert all(rows > 900 and cols > 50 for rows, cols in shapes)


def test_memory_probe_both_loops(demo_raw: Path, tmp_path: Path) -> None:
    """The probe runs each loop in a fresh process after warming that loop up on a toy set; the
    reference loop's growth holds at least its materialized windows (the project loop has none)."""
    s = BenchSize.tiny().settings
    layout = Layout.from_dirs(demo_raw, tmp_path / "wh")
    sym = layout.symbols()[0]
    run_clean(layout, sym, s)
    clean = layout.warehouse.clean_frame(sym)
    project = run_probe(clean, s, 1, "project")
    reference = run_probe(clean, s, 1, "reference")
    for p in (project, reference):
        assert p["matrix_bytes"] > 0 and p["train_peak_growth"] > 0
        assert 0 <= p["train_file_growth"] <= p["train_peak_growth"] or not p["peak_resettable"]
    assert reference["window_bytes"] > 0
    assert reference["train_peak_growth"] >= reference["window_bytes"]


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
    # the first group's symbols stop at different epochs: the one still training goes on alone
    # (compacted); without compaction the group runs to the end with the other masked out
    assert many[0].epochs_run != many[1].epochs_run
    uncompacted = fit_many(seqs, s, group_size=2, compact=False)
    for got, other in zip(many, uncompacted, strict=True):
        assert [h["val_loss"] for h in got.history] == [h["val_loss"] for h in other.history]
        for k in got.state:
            assert torch.equal(got.state[k], other.state[k]), k
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


def _reference_fused_cell(ig: torch.Tensor, hg: torch.Tensor, cx: torch.Tensor,
                          *_bias: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What aten._thnn_fused_lstm_cell (CUDA only) computes, for checking the wiring on CPU:
    like the real op, under autocast its inputs are cast to autocast's dtype (the GPU profile
    shows the bf16 kernel running when fp32 tensors were passed), and it computes in fp32."""
    assert ig.dim() == hg.dim() == cx.dim() == 2
    if torch.is_autocast_enabled("cpu"):
        dt = torch.get_autocast_dtype("cpu")
        ig, hg, cx = ig.to(dt), hg.to(dt), cx.to(dt)
    assert ig.dtype == hg.dtype == cx.dtype
    gates = ig.float() + hg.float()
    i, f, g, o = gates.chunk(4, dim=1)
    cy = torch.sigmoid(f) * cx.float() + torch.sigmoid(i) * torch.tanh(g)
    hy = torch.sigmoid(o) * torch.tanh(cy)
    return hy.to(ig.dtype), cy.to(ig.dtype), gates.to(ig.dtype)


@pytest.mark.parametrize("autocast", [False, True])
def test_stacked_model_fused_cell_path_matches_unfused(monkeypatch: pytest.MonkeyPatch,
                                                       autocast: bool) -> None:
    """The fused-cell path (the default on CUDA) gives the unfused path's logits and gradients:
    shapes, views and dtypes handed to the fused op are right. The op itself is CUDA-only; the
    GPU script checks the real kernel against the unfused path."""
    from lstm_assets.core import stacked
    from lstm_assets.core.model import LSTMClassifier
    from lstm_assets.core.stacked import StackedLSTMClassifier

    monkeypatch.setattr(stacked, "_FUSED_LSTM_CELL", _reference_fused_cell)
    states = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        states.append(LSTMClassifier(5, 8, 2, 0.0).state_dict())
    x = torch.randn(3, 4, 6, 5)
    grads = {}
    for fused in (False, True):
        net = StackedLSTMClassifier(states, 2, 0.0, fused=fused)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = net(x)
        logits.float().square().sum().backward()
        grads[fused] = (logits.float().detach(),
                        {k: p.grad.clone() for k, p in net.params.items()})
    tol = 3e-2 if autocast else 1e-5  # bf16: the fused path keeps the cell state in bf16
    torch.testing.assert_close(grads[True][0], grads[False][0], atol=tol, rtol=tol)
    for k, g in grads[False][1].items():
        torch.testing.assert_close(grads[True][1][k], g, atol=tol, rtol=tol)


def test_fit_trains_in_fp32_where_bf16_lstm_is_unsupported(
        demo_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU whose cuDNN has no bf16 RNN (before 9.13) must train in fp32, not fail: with the
    probe saying "unsupported", autocast=True gives exactly the fp32 weights."""
    from lstm_assets.core import trainees

    s = Settings(lookback=10, hidden_size=8, num_layers=1, dropout=0.0, max_epochs=2,
                 device="cpu", num_threads=1)
    seq = _three_symbols(demo_raw, tmp_path, s)[0]
    monkeypatch.setitem(trainees._BF16_LSTM, "cpu", False)
    fell_back = fit(seq, s, autocast=True)
    plain = fit(seq, s, autocast=False)
    assert fell_back.precision == plain.precision == "fp32"
    for k in plain.state:
        assert torch.equal(fell_back.state[k], plain.state[k]), k
    monkeypatch.setitem(trainees._BF16_LSTM, "cpu", True)
    assert fit(seq, s, autocast=True, max_epochs=1).precision == "bf16-autocast"


@pytest.mark.parametrize(("feats", "hidden", "layers", "lookback", "mflop"),
                         [(95, 128, 2, 30, 44.2)])
def test_bench_flops_per_sequence(feats: int, hidden: int, layers: int, lookback: int,
                                  mflop: float) -> None:
    got = lstm_flops_per_sequence(feats, hidden, layers, lookback) / 1e6
    assert got == pytest.approx(mflop, rel=0.01)


def test_gpu_bench_script_dry_run(tmp_path: Path) -> None:
    """The GPU script's Python part (``bench.gpu``, what ``scripts/gpu_bench.sh`` runs) on
    CPU, tiny, in a fresh process: every step runs without error, nothing imports dagster, and
    the JSON and table are written, so a lent GPU's short lease is not spent on a broken script."""
    import subprocess

    out = tmp_path / "out"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "lstm_assets.bench.gpu", "--dry-run",
                           "--out", str(out), "--workdir", str(tmp_path / "work"),
                           "--workers", "1", "--plain"],
                          cwd=root, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "gpu_bench.json").read_text())
    assert data["meta"]["complete"] is True and data["meta"]["dagster_imported"] is False
    assert "errors" not in data["details"]
    for key in ("gpu_multi_train_seconds", "gpu_pipeline_train_seconds",
                "gpu_reference_sequences_per_second"):
        assert isinstance(data[key], float) and data[key] > 0, key
    assert data["details"]["pipeline"]["rerun_inits"] == ["skipped"]
    assert data["details"]["multi_plain_seconds"] > 0
    assert (out / "gpu_bench.md").read_text().count("|") > 20


class _Killed(Exception):
    pass


@pytest.mark.parametrize("kill_after", [1, 3])
def test_stacked_training_resumes_from_its_group_checkpoint(demo_raw: Path, tmp_path: Path,
                                                            kill_after: int) -> None:
    """A group killed after an epoch resumes from its checkpoint and ends exactly where an
    uninterrupted run ends (weights, histories, RNG for dropout); with kill_after=3 symbols have
    already left the group (compaction) when it is killed. Checkpoints go when all is done."""
    s = Settings(lookback=10, hidden_size=8, num_layers=2, dropout=0.2, max_epochs=6,
                 device="cpu", num_threads=1, early_stop_patience=2, lr_patience=0,
                 learning_rate=3e-3)
    seqs = _three_symbols(demo_raw, tmp_path, s)
    ckdir = tmp_path / "checkpoints"
    ckdir.mkdir()

    def ck(name: str) -> Path:
        return ckdir / f"{name}.pt"

    fps = ["fp-a", "fp-b", "fp-c"]
    train = functools.partial(fit_many, checkpoint_every=0.0)  # a checkpoint every epoch
    whole = train(seqs, s, checkpoint=ck, fingerprints=fps)
    assert not list(ckdir.iterdir())

    def kill(row: dict[str, float]) -> None:
        if row["epoch"] == kill_after:
            raise _Killed

    with pytest.raises(_Killed):
        train(seqs, s, checkpoint=ck, fingerprints=fps, on_epoch=kill)
    assert len(list(ckdir.iterdir())) == 1
    epochs: list[float] = []
    resumed = train(seqs, s, checkpoint=ck, fingerprints=fps,
                       on_epoch=lambda row: epochs.append(row["epoch"]))
    assert epochs[0] == kill_after + 1  # nothing before the kill was trained again
    assert not list(ckdir.iterdir())
    if kill_after == 3:
        assert min(r.epochs_run for r in whole) <= 3 < max(r.epochs_run for r in whole)

    def no_time(h: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in h]

    for a, b in zip(whole, resumed, strict=True):
        assert no_time(a.history) == no_time(b.history)
        assert (a.best_epoch, a.epochs_run, a.stopped_early) == (
            b.best_epoch, b.epochs_run, b.stopped_early)
        for k in a.state:
            assert torch.equal(a.state[k], b.state[k]), k
    # another fingerprint (changed data, settings or code) does not resume: it starts over
    with pytest.raises(_Killed):
        train(seqs, s, checkpoint=ck, fingerprints=fps, on_epoch=kill)
    epochs.clear()
    train(seqs, s, checkpoint=ck, fingerprints=["fp-a", "fp-b", "fp-CHANGED"],
             on_epoch=lambda row: epochs.append(row["epoch"]))
    assert epochs[0] == 1


def test_stacked_training_resume_skips_groups_that_had_finished(demo_raw: Path,
                                                                 tmp_path: Path) -> None:
    """Two groups (2 symbols, then 1): killed in the second, the rerun trains none of the first
    again (its finished state was kept), and the second from its last checkpoint (none here:
    the interval is long, so from the start). Both end as an uninterrupted run does."""
    s = Settings(lookback=10, hidden_size=8, num_layers=1, dropout=0.0, max_epochs=3,
                 device="cpu", num_threads=1)
    seqs = _three_symbols(demo_raw, tmp_path, s)
    ckdir = tmp_path / "ck"
    ckdir.mkdir()
    train = functools.partial(fit_many, group_size=2, checkpoint=lambda k: ckdir / f"{k}.pt",
                              fingerprints=["a", "b", "c"], checkpoint_every=1e9)
    whole = train(seqs, s)

    def kill(row: dict[str, float]) -> None:
        if row["symbols"] == 1 and row["epoch"] == 3:
            raise _Killed

    with pytest.raises(_Killed):
        train(seqs, s, on_epoch=kill)
    assert len(list(ckdir.iterdir())) == 1  # the first group's final state (none periodic)
    rows: list[dict[str, float]] = []
    resumed = train(seqs, s, on_epoch=rows.append)
    assert [(r["symbols"], r["epoch"]) for r in rows] == [(1, 1), (1, 2), (1, 3)]
    for a, b in zip(whole, resumed, strict=True):
        for k in a.state:
            assert torch.equal(a.state[k], b.state[k]), k
    assert not list(ckdir.iterdir())
