"""Kill a training process with SIGKILL mid-run: the old model survives, the rerun resumes.

The training subprocess runs the core chain (clean -> sequences -> train) in a warehouse that
already holds an older complete model of the symbol. Each epoch sleeps 1 s in the progress
callback, so the test can kill it deterministically after the per-epoch checkpoint shows at least
two finished epochs, however loaded the machine is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from lstm_assets.core.demo import DemoSpec, generate
from lstm_assets.core.model import LoadedModel
from lstm_assets.core.settings import Settings
from lstm_assets.core.stages import Layout, run_clean, run_sequences, run_train

SYM = "SYN001"
BASE = dict(lookback=10, hidden_size=16, num_layers=1, batch_size=64, device="cpu",
            num_threads=1, bootstrap_samples=50)
RUN = Settings(**BASE, max_epochs=8, early_stop_patience=100, seed=42)
OLD = Settings(**BASE, max_epochs=1, seed=1)

CHILD = textwrap.dedent("""
    import json, sys, time
    from lstm_assets.core.stages import Layout, run_clean, run_sequences, run_train
    from lstm_assets.core.settings import Settings
    raw, wh, sym, cfg = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    layout, s = Layout.from_dirs(raw, wh), Settings(**cfg)
    run_clean(layout, sym, s)
    run_sequences(layout, sym, s)
    run_train(layout, sym, s, on_epoch=lambda row: time.sleep(1.0))
    print("finished")
""")


def _chain(layout: Layout, s: Settings) -> dict:
    run_clean(layout, SYM, s)
    run_sequences(layout, SYM, s)
    return run_train(layout, SYM, s)


def _checkpoint_epoch(path: Path) -> int:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        return int(json.loads(ck["info"])["epoch"])  # the last finished epoch
    except (FileNotFoundError, RuntimeError, EOFError, KeyError, ValueError):
        return -1


def test_sigkill_mid_training_keeps_old_model_and_rerun_resumes(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate(raw, DemoSpec(symbols=1, years=3, seed=5))
    layout = Layout.from_dirs(raw, tmp_path / "wh")
    wh = layout.warehouse
    _chain(layout, OLD)  # the older complete model of this symbol
    model_path = wh.model(SYM)
    old_bytes = model_path.read_bytes()

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(raw), str(wh.base), SYM, json.dumps(RUN.as_dict())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    ck = wh.checkpoint(SYM)
    deadline = time.monotonic() + 240
    try:
        while _checkpoint_epoch(ck) < 1:  # epoch index 1: two epochs finished
            assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint with epoch >= 1 in time"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate()[0].decode()
    assert proc.returncode == -signal.SIGKILL, out[-3000:]
    assert "finished" not in out
    killed_at = _checkpoint_epoch(ck)
    assert 1 <= killed_at < RUN.max_epochs - 1

    # the old model is untouched and loads; nothing half-written replaced it
    assert model_path.read_bytes() == old_bytes
    old = LoadedModel.load(model_path)
    assert old.config["training"]["epochs_run"] == 1 and old.config["settings"]["seed"] == 1

    # the rerun (the whole chain again, as a re-materialization would) resumes from the checkpoint
    meta = _chain(layout, RUN)
    assert meta["resumed_from_epoch"] == killed_at + 1 > 0
    assert meta["epochs_run"] == RUN.max_epochs
    assert not ck.exists()  # the model is complete: the checkpoint is gone
    new_bytes = model_path.read_bytes()
    assert new_bytes != old_bytes
    new = LoadedModel.load(model_path)
    assert new.config["training"]["resumed_from_epoch"] == killed_at + 1
    assert len(new.config["training"]["history"]) == RUN.max_epochs

    # and it is the model an uninterrupted run trains (same seed, same data, CPU)
    ref_layout = Layout.from_dirs(raw, tmp_path / "wh_ref")
    ref = _chain(ref_layout, RUN)
    assert ref["resumed_from_epoch"] == 0
    got, want = load_file(str(model_path)), load_file(str(ref_layout.warehouse.model(SYM)))
    assert got.keys() == want.keys()
    for k in got:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
