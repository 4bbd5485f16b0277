"""The ``signals`` section: seconds to compute next-day signals for every symbol of the main
demo set (``core.signals.latest_signals``: load each model, scale its last window, predict)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from lstm_assets.bench.context import Bench
from lstm_assets.bench.data_stages import time_data_stages
from lstm_assets.core.model import LSTMClassifier, save_model
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.settings import CLASSES, Settings
from lstm_assets.core.signals import latest_signals


def untrained_model(path: Path, seq: SequenceSet, settings: Settings) -> None:
    """A model file with the real config layout and initial (untrained) weights.

    Inference costs the same whatever the weights are, so the signals benchmark does not need
    164 trained models.
    """
    torch.manual_seed(settings.seed)
    net = LSTMClassifier(seq.X.shape[1], settings.hidden_size, settings.num_layers,
                         settings.dropout)
    cfg = {
        "format": "lstm_assets.model/1", "classes": list(CLASSES), "features": seq.features,
        "scaler": {"mean": seq.mean.tolist(), "scale": seq.scale.tolist(), "clip": 10.0},
        "label_rule": {"flat_rule": settings.flat_rule}, "lookback": seq.lookback,
        "horizon": settings.horizon,
        "architecture": {"type": "lstm", "hidden_size": settings.hidden_size,
                         "num_layers": settings.num_layers, "dropout": settings.dropout},
        "settings": settings.as_dict(), "training": {"init": "untrained (benchmark)"},
        "fingerprint": "benchmark", "bounds": seq.bounds.as_dict(),
    }
    save_model(path, net.state_dict(), cfg)


def signals(bench: Bench) -> None:
    """The ``signals`` section (see the module's docstring). Builds the sequences itself where
    the data section did not run; the models are untrained stand-ins (:func:`untrained_model`).
    """
    st = bench.settings
    layout, symbols = bench.main_data()
    wh = layout.warehouse
    have = [s for s in symbols if wh.sequences(s).exists()]
    if not have:  # data section not run: build what signals need
        time_data_stages(layout, symbols, st)
        have = [s for s in symbols if wh.sequences(s).exists()]
    for sym in have:
        untrained_model(wh.model(sym), SequenceSet.load(wh.sequences(sym)), st)
    t0 = time.perf_counter()
    n_ok = len(latest_signals(wh, st, have).frame)
    sec = time.perf_counter() - t0
    f = bench.figures
    f["signals_seconds"] = sec
    f["signals_symbols"] = n_ok
    target = 10.0 * len(have) / 164
    bench.add("signals", f"next-day signals, {n_ok} symbols (core.signals.latest_signals)",
              f"{sec:.2f}s ({1000 * sec / max(n_ok, 1):.0f} ms/symbol)",
              f"<= {target:.1f}s" + ("" if len(have) == 164 else " (pro rata)"),
              sec <= target)
