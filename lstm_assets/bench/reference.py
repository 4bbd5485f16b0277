"""The reference training loop: written the obvious way, like the script this project replaces.

All windows are materialized as one 3-D tensor, wrapped in ``TensorDataset`` and fed by
``DataLoader(batch_size=64, shuffle=True)``; the loss is read with ``.item()`` after every batch.
Same model class, loss (class-weighted cross entropy), optimizer, LR schedule, clipping and seed as
:func:`lstm_assets.core.train.fit`, so the benchmark compares loops, not models.
Used only by the benchmark (:mod:`lstm_assets.bench`); never by the pipeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lstm_assets.core.model import LSTMClassifier
from lstm_assets.core.sequences import SequenceSet, window_view
from lstm_assets.core.settings import CLASSES, Settings
from lstm_assets.core.train import pick_device
from lstm_assets.core.trainees import class_weights


@dataclass
class ReferenceResult:
    """What the reference loop measured (per-epoch training seconds exclude validation)."""

    epoch_seconds: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    train_sequences: int = 0
    materialize_seconds: float = 0.0
    window_bytes: int = 0
    state: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def final_val_loss(self) -> float:
        return self.val_losses[-1] if self.val_losses else float("nan")


def reference_fit(seq: SequenceSet, settings: Settings, epochs: int,
                  batch_size: int = 64) -> ReferenceResult:
    """Train like the old script for exactly ``epochs`` epochs (no early stopping)."""
    device = pick_device(settings.device)
    if settings.num_threads > 0:
        torch.set_num_threads(settings.num_threads)
    torch.manual_seed(settings.seed)
    res = ReferenceResult()

    t0 = time.perf_counter()
    windows = window_view(seq.X, seq.lookback)  # view; the next line copies every window
    tr, va = seq.end_rows("train"), seq.end_rows("val")
    first = seq.lookback - 1
    x_tr = torch.tensor(np.ascontiguousarray(windows[tr - first]))
    x_va = torch.tensor(np.ascontiguousarray(windows[va - first]))
    y_tr = torch.tensor(seq.y[tr].astype(np.int64))
    y_va = torch.tensor(seq.y[va].astype(np.int64))
    res.materialize_seconds = time.perf_counter() - t0
    res.window_bytes = int(x_tr.nbytes + x_va.nbytes)
    res.train_sequences = len(tr)

    train_dl = DataLoader(TensorDataset(x_tr, y_tr), batch_size=batch_size, shuffle=True)
    val_dl = DataLoader(TensorDataset(x_va, y_va), batch_size=batch_size, shuffle=False)
    w = class_weights(seq.y[tr]) if settings.class_weighted else np.ones(len(CLASSES))
    criterion = nn.CrossEntropyLoss(weight=torch.tensor(w, dtype=torch.float32, device=device))
    net = LSTMClassifier(seq.X.shape[1], settings.hidden_size, settings.num_layers,
                         settings.dropout).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=settings.learning_rate,
                           weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=settings.lr_factor,
                                                       patience=settings.lr_patience)
    crit_sum = nn.CrossEntropyLoss(weight=criterion.weight, reduction="sum")
    for _ in range(epochs):
        net.train()
        t0 = time.perf_counter()
        total = 0.0
        for xb, yb in train_dl:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = criterion(net(xb), yb)
            loss.backward()
            if settings.grad_clip > 0:
                nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip)
            opt.step()
            total += loss.item() * len(yb)  # a host sync per batch, as the old script did
        res.epoch_seconds.append(time.perf_counter() - t0)
        net.eval()
        loss_sum, w_sum = 0.0, 0.0
        with torch.no_grad():
            for xb, yb in val_dl:
                xb, yb = xb.to(device), yb.to(device)
                loss_sum += crit_sum(net(xb), yb).item()
                w_sum += criterion.weight[yb].sum().item()
        val_loss = loss_sum / max(w_sum, 1e-12)
        res.val_losses.append(val_loss)
        sched.step(val_loss)
    res.state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    return res
