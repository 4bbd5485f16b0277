"""The training loop: readable top to bottom, fast on CPU, GPU-ready.

- Windows are never materialized for the whole set: each batch gathers its windows from the
  scaled 2-D matrix by index (``X[end_rows[:, None] + offsets]``), which lives on the device.
- No host sync per batch: losses accumulate on the device and are read once per epoch.
- Class-weighted cross entropy (inverse train frequency), Adam, ReduceLROnPlateau on val loss,
  early stopping on val loss keeping the best weights, gradient clipping.
- CUDA when present (``device="auto"``) with bf16 autocast; cuDNN picks its kernels. On CPU,
  ``fit(..., autocast=True)`` opts in to bf16 autocast too (about 1.5-2x faster where the CPU has
  AMX / AVX512-BF16; results then differ from fp32 in rounding, so it is off by default).
- Bounded memory: validation windows are gathered a slice at a time (``EVAL_SLICE_CPU`` on CPU),
  so the peak does not grow with the size of the validation split.
- Seeded: the same seed and data give the same weights on CPU. The shuffle order of epoch e
  comes from ``seed`` and ``e`` alone, so a resumed run shuffles as the original would have.
- Optional per-epoch checkpoint (atomic, loaded with ``weights_only=True``): a killed training
  resumes from its last finished epoch when the checkpoint's fingerprint matches.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lstm_assets.core.model import LSTMClassifier, n_params
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.settings import CLASSES, Settings
from lstm_assets.core.storage import AnyPath, atomic_path, local_file

log = logging.getLogger(__name__)

EVAL_SLICE_CPU = 64
"""Windows per forward pass when scoring on CPU (bounds the validation step's memory)."""


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


_BF16_LSTM: dict[str, bool] = {}


def bf16_lstm_ok(device: torch.device) -> bool:
    """Whether ``nn.LSTM`` trains under bf16 autocast on ``device`` (probed once per device).

    cuDNN runs bf16 RNNs only from 9.13 on; before that, and on CPUs without a bf16 LSTM
    kernel, the forward pass raises. ``fit`` then trains in fp32 and logs why, instead of failing.
    The probe leaves the global RNG untouched, so seeded weights do not depend on it.
    """
    key = str(device)
    if key not in _BF16_LSTM:
        try:
            with torch.random.fork_rng(devices=[]):
                lstm = nn.LSTM(4, 8, batch_first=True).to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    out, _ = lstm(torch.zeros(2, 3, 4, device=device))
                out.float().sum().backward()
            _BF16_LSTM[key] = True
        except RuntimeError as e:
            log.warning("bf16 autocast LSTM not supported on %s, training in fp32: %s", key,
                        str(e).splitlines()[0] if str(e) else type(e).__name__)
            _BF16_LSTM[key] = False
    return _BF16_LSTM[key]


def class_weights(y: np.ndarray, n_classes: int = len(CLASSES)) -> np.ndarray:
    """Inverse-frequency weights (scikit-learn's 'balanced'); a class absent from train gets 0."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return w


@dataclass
class TrainResult:
    state: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_run: int = 0
    best_epoch: int = 0
    best_val_loss: float = float("nan")
    best_val_accuracy: float = float("nan")
    seconds: float = 0.0
    train_sequences: int = 0
    sequences_per_second: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    """"bf16-autocast" (matmuls in bf16, gates and loss in fp32) or "fp32"."""
    parameters: int = 0
    resumed_from_epoch: int = 0
    stopped_early: bool = False
    init: str = "cold"
    trained_together: int = 1
    """Symbols in the stacked group this model trained in (``train_many``); 1 for ``fit``.
    Above 1, ``seconds`` is the whole group's training time."""
    features_used: int = 0
    """Input features whose first-layer weights are not all zero (the group lasso zeroes the
    others: the model cannot see them)."""
    top_features: list[str] = field(default_factory=list)
    """Up to 10 input features with the largest first-layer weight norms, largest first."""

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("state", "history")}


@torch.no_grad()
def evaluate_loss(net: nn.Module, X: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
                  offsets: torch.Tensor, weight: torch.Tensor, chunk: int = 4096,
                  autocast: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted CE loss and accuracy over the windows ending at ``rows`` (device tensors).

    Sums run over ``chunk`` windows at a time; on CPU each chunk's logits are computed in slices
    of ``EVAL_SLICE_CPU`` windows (the logits are the same, the gathered windows and LSTM
    activations of a whole chunk are never held at once).
    """
    net.eval()
    loss_sum = torch.zeros((), device=X.device)
    w_sum = torch.zeros((), device=X.device)
    correct = torch.zeros((), device=X.device)
    step = chunk if X.device.type == "cuda" else min(chunk, EVAL_SLICE_CPU)
    for i in range(0, len(rows), chunk):
        idx = rows[i:i + chunk]
        with torch.autocast(X.device.type, dtype=torch.bfloat16, enabled=autocast):
            parts = [net(X[idx[j:j + step, None] + offsets]) for j in range(0, len(idx), step)]
        logits = parts[0] if len(parts) == 1 else torch.cat(parts)
        yb = y[idx]
        lp = torch.log_softmax(logits.float(), dim=1)
        w = weight[yb]
        loss_sum += -(lp.gather(1, yb[:, None])[:, 0] * w).sum()
        w_sum += w.sum()
        correct += (lp.argmax(1) == yb).sum()
    net.train()
    return loss_sum / w_sum.clamp_min(1e-12), correct / max(len(rows), 1)


@torch.no_grad()
def group_lasso_prox_(w: torch.Tensor, threshold: float | torch.Tensor) -> None:
    """Proximal step of a group lasso on input weights ``w`` of shape (..., 4 * hidden,
    features), in place: one group = one input feature's column across all gates; each
    column's norm shrinks by ``threshold`` (a number, or a tensor broadcasting to
    (..., 1, 1)), to zero when it is smaller."""
    norms = w.norm(dim=-2, keepdim=True).clamp_min(1e-12)
    w.mul_((1 - threshold / norms).clamp_min(0))


def drop_features(xb: torch.Tensor, p: float) -> torch.Tensor:
    """Input dropout of whole features: windows ``xb`` (..., steps, features) with each
    window's dropped features zero on every step, the rest scaled by 1 / (1 - p)."""
    keep = torch.rand(*xb.shape[:-2], 1, xb.shape[-1], device=xb.device)
    return xb * (keep >= p) / (1 - p)


def set_feature_use(res: TrainResult, features: list[str]) -> None:
    """Fill ``features_used`` / ``top_features`` from the trained first-layer input weights."""
    norms = res.state["lstm.weight_ih_l0"].float().norm(dim=0)
    res.features_used = int((norms > 0).sum())
    order = torch.argsort(norms, descending=True)[:10].tolist()
    res.top_features = [features[i] for i in order if norms[i] > 0]


def fit(seq: SequenceSet, settings: Settings, *, checkpoint: Path | None = None,
        fingerprint: str = "", init_state: dict[str, torch.Tensor] | None = None,
        max_epochs: int | None = None,
        on_epoch: Callable[[dict[str, float]], None] | None = None,
        autocast: bool | None = None) -> TrainResult:
    """Train one symbol's model on ``seq`` and return the best (lowest val loss) weights.

    ``autocast``: bf16 autocast; None (default) = on for CUDA, off on CPU.
    """
    device = pick_device(settings.device)
    if settings.num_threads > 0:
        torch.set_num_threads(settings.num_threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    autocast = device.type == "cuda" if autocast is None else autocast
    autocast = autocast and bf16_lstm_ok(device)
    torch.manual_seed(settings.seed)

    train_rows = seq.end_rows("train")
    val_rows = seq.end_rows("val")
    X = torch.from_numpy(np.ascontiguousarray(seq.X)).to(device)
    y = torch.from_numpy(seq.y.astype(np.int64)).to(device)
    offsets = torch.arange(-seq.lookback + 1, 1, device=device)
    tr = torch.from_numpy(train_rows).to(device)
    va = torch.from_numpy(val_rows).to(device)
    w = class_weights(seq.y[train_rows]) if settings.class_weighted else np.ones(len(CLASSES))
    weight = torch.tensor(w, dtype=torch.float32, device=device)

    net = LSTMClassifier(seq.X.shape[1], settings.hidden_size, settings.num_layers,
                         settings.dropout).to(device)
    if init_state is not None:
        net.load_state_dict(init_state)
    # fused on CUDA: one kernel per step for all parameters instead of ~10 per parameter
    opt = torch.optim.Adam(net.parameters(), lr=settings.learning_rate,
                           weight_decay=settings.weight_decay, fused=device.type == "cuda")
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=settings.lr_factor,
                                                       patience=settings.lr_patience)
    criterion = nn.CrossEntropyLoss(weight=weight)
    epochs = max_epochs if max_epochs is not None else settings.max_epochs

    res = TrainResult(state={}, device=str(device), parameters=n_params(net),
                      precision="bf16-autocast" if autocast else "fp32",
                      train_sequences=len(train_rows),
                      init="warm" if init_state is not None else "cold")
    best_val, best_state, bad, start_epoch = float("inf"), None, 0, 0
    ck = read_checkpoint(checkpoint, fingerprint, device)
    if ck is not None:
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng"])
        best_val, bad = float(ck["best_val"]), int(ck["bad_epochs"])
        best_state = ck["best_state"]
        res.history = [dict(zip(ck["history_keys"], row, strict=True))
                       for row in ck["history"].tolist()]
        res.best_epoch = int(ck["best_epoch"])
        start_epoch = res.resumed_from_epoch = int(ck["epoch"]) + 1
        if bad >= settings.early_stop_patience:  # killed after stopping, before saving
            res.stopped_early, start_epoch = True, epochs
        log.info("resuming from checkpoint %s at epoch %d", checkpoint, start_epoch)

    t_train = 0.0
    seqs = 0
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        net.train()
        gen = torch.Generator().manual_seed(settings.seed * 100_003 + epoch)
        perm = tr[torch.randperm(len(tr), generator=gen).to(device)]
        total = torch.zeros((), device=device)
        for i in range(0, len(perm), settings.batch_size):
            idx = perm[i:i + settings.batch_size]
            xb = X[idx[:, None] + offsets]
            if settings.input_noise > 0:  # Gaussian input noise: a regularizer against memorizing
                xb = xb + settings.input_noise * torch.randn_like(xb)
            if settings.input_dropout > 0:
                xb = drop_features(xb, settings.input_dropout)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                logits = net(xb)
            loss = criterion(logits.float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip > 0:
                nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip)
            opt.step()
            if settings.input_group_lasso > 0:
                group_lasso_prox_(net.lstm.weight_ih_l0,
                                  opt.param_groups[0]["lr"] * settings.input_group_lasso)
            total += loss.detach() * len(idx)
        train_seconds = time.perf_counter() - t0
        t_train += train_seconds
        seqs += len(perm)
        vl, va_acc = evaluate_loss(net, X, y, va, offsets, weight, autocast=autocast)
        val_loss, val_acc = float(vl), float(va_acc)  # one host sync per epoch
        sched.step(val_loss)
        row = {"epoch": float(epoch + 1), "train_loss": float(total) / max(len(perm), 1),
               "val_loss": val_loss, "val_accuracy": val_acc,
               "lr": float(opt.param_groups[0]["lr"]), "seconds": time.perf_counter() - t0}
        res.history.append(row)
        if val_loss < best_val - settings.min_delta:
            best_val, bad, res.best_epoch = val_loss, 0, epoch + 1
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
        if on_epoch:
            on_epoch(row)
        log.info("epoch %d/%d train_loss %.4f val_loss %.4f val_acc %.3f lr %.2g (%.1fs)",
                 epoch + 1, epochs, row["train_loss"], val_loss, val_acc, row["lr"],
                 row["seconds"])
        if checkpoint is not None:
            _save_checkpoint(checkpoint, net, opt, sched, epoch, best_val, bad, best_state,
                             res, fingerprint)
        if bad >= settings.early_stop_patience:
            res.stopped_early = True
            break

    if best_state is None:  # zero epochs asked for: keep the initial weights
        best_state = copy.deepcopy(net.state_dict())
    res.state = {k: v.detach().cpu() for k, v in best_state.items()}
    set_feature_use(res, seq.features)
    res.epochs_run = len(res.history)
    best = next((r for r in res.history if int(r["epoch"]) == res.best_epoch), None)
    res.best_val_loss = best["val_loss"] if best else float("nan")
    res.best_val_accuracy = best["val_accuracy"] if best else float("nan")
    res.seconds = t_train
    res.sequences_per_second = seqs / t_train if t_train > 0 else float("nan")
    return res


def read_checkpoint(path: AnyPath | None, fingerprint: str,
                    device: torch.device) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (local or a store object) when it exists, loads with
    ``weights_only=True`` and was written for ``fingerprint``; else None (start over). Its
    tensors are on ``device``, its RNG states (keys ``rng...``) on the CPU."""
    if path is None or not path.exists():
        return None
    try:
        with local_file(path) as local:
            ck = torch.load(local, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint means: start over
        log.warning("ignoring unreadable checkpoint %s: %s", path, e)
        return None
    if ck.get("fingerprint") != fingerprint:
        return None
    for k in [k for k in ck if k.startswith("rng")]:  # RNG states are CPU byte tensors, which
        ck[k] = ck[k].cpu()  # map_location moved to the device
    return ck


def _save_checkpoint(path: Path, net: nn.Module, opt: torch.optim.Optimizer, sched: Any,
                     epoch: int, best_val: float, bad: int,
                     best_state: dict[str, torch.Tensor] | None, res: TrainResult,
                     fingerprint: str) -> None:
    keys = list(res.history[0].keys())
    ck = {
        "model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "rng": torch.get_rng_state(), "epoch": epoch, "best_val": best_val, "bad_epochs": bad,
        "best_state": best_state or net.state_dict(), "best_epoch": res.best_epoch,
        "history_keys": keys,
        "history": torch.tensor([[r[k] for k in keys] for r in res.history], dtype=torch.float64),
        "fingerprint": fingerprint,
    }
    with atomic_path(path) as tmp:
        torch.save(ck, tmp)
