"""Train several symbols' models at once on one device: stacked weights and batched matmuls.

One symbol's batches (64 windows of 30 x 95) are far too small to keep a GPU busy, and
``torch.func.vmap`` has no batching rule for ``nn.LSTM``. So the S models of a group live as
stacked tensors (``weight_ih_l0`` of shape ``(S, 4H, I)`` and so on) and one step runs all S
symbols: the input projection of every time step is one ``baddbmm`` per layer, the recurrence one
``bmm`` per step, the head one ``baddbmm``; on CUDA each step's gate arithmetic is PyTorch's fused
LSTM-cell kernel. Symbols that stop early leave the group (it is compacted). Everything else is
per symbol, exactly as :func:`lstm_assets.core.train.fit` does it for one symbol:

- initial weights: ``torch.manual_seed(seed)`` then ``LSTMClassifier(...)``, as ``fit`` does;
- shuffle order of epoch e: ``randperm`` from a generator seeded with ``seed * 100_003 + e``;
- class-weighted cross entropy (weights from each symbol's own train labels), averaged per batch;
- gradient clipping by each symbol's own global norm; Adam (same update formula as
  ``torch.optim.Adam``) with a per-symbol learning rate; ``ReduceLROnPlateau`` per symbol;
- early stopping per symbol on its validation loss, keeping its best weights. A symbol that has
  stopped, or has run out of batches in an epoch (symbols may differ in length), gets no update:
  its rows are masked out of the loss and its optimizer state is left untouched.

With dropout and input noise off, the results equal per-symbol ``fit`` up to float rounding
(``lstm_assets_tests/test_bench.py`` checks it on CPU); with dropout on, only the random masks
differ. The returned ``TrainResult`` states use ``LSTMClassifier``'s parameter names, so the
models save, load and evaluate like any other. Used by ``pipeline.run_train_many`` (the model
step when symbols train together, e.g. on a GPU) and the GPU bench. No dagster import: this
runs on a bare GPU box.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lstm_assets.core.model import LSTMClassifier, n_params
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.settings import CLASSES, Settings
from lstm_assets.core.storage import AnyPath, atomic_path
from lstm_assets.core.train import (
    TrainResult,
    class_weights,
    drop_features,
    group_lasso_prox_,
    pick_device,
    read_checkpoint,
    set_feature_use,
)

log = logging.getLogger(__name__)

VAL_SLICE = 512
"""Validation windows per symbol per forward pass."""


class StackedLSTMClassifier(nn.Module):
    """S independent ``LSTMClassifier`` models with stacked parameters (leading dim S).

    ``fused``: the gate arithmetic of each time step as one kernel (PyTorch's own fused LSTM
    cell, ``aten._thnn_fused_lstm_cell``, what ``nn.LSTMCell`` runs on CUDA) instead of about ten
    elementwise kernels, each with its own backward; None = on CUDA (the op has no CPU kernel).
    Under bf16 autocast, autocast hands that op bf16 inputs: the gate pre-activations and the
    cell state between steps are bf16, the arithmetic inside the kernel fp32. (The unfused path
    keeps the cell state in fp32. On an H200, 164 symbols reached the same mean best validation
    loss either way, 0.7048.) Without autocast everything is fp32.
    """

    def __init__(self, states: list[dict[str, torch.Tensor]], num_layers: int,
                 dropout: float, fused: bool | None = None) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.dropout = dropout
        self.fused = fused
        self.names = list(states[0].keys())
        self.params = nn.ParameterDict({
            k.replace(".", "__"): nn.Parameter(torch.stack([s[k].detach().float()
                                                            for s in states]))
            for k in self.names})

    def p(self, name: str) -> torch.Tensor:
        return self.params[name.replace(".", "__")]

    @torch.no_grad()
    def keep(self, slots: torch.Tensor) -> None:
        """Keep only the models at ``slots`` (new parameters; the old ones are dropped)."""
        for k in list(self.params.keys()):
            self.params[k] = nn.Parameter(self.params[k][slots].clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (S, B, T, F) -> logits (S, B, C)."""
        S, B, T, _ = x.shape
        dev = x.device.type
        # under autocast the matmuls run in its dtype: cast the recurrent weights once per
        # forward, not once per time step (autocast's cache skips views such as a transpose)
        mm_dtype = (torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev)
                    else torch.float32)
        fused = x.is_cuda if self.fused is None else self.fused
        inp = x
        for layer in range(self.num_layers):
            w_ih, w_hh = self.p(f"lstm.weight_ih_l{layer}"), self.p(f"lstm.weight_hh_l{layer}")
            bias = self.p(f"lstm.bias_ih_l{layer}") + self.p(f"lstm.bias_hh_l{layer}")
            hidden = w_hh.shape[-1]
            # input projection of all time steps at once: (S, B*T, I) @ (S, I, 4H) + bias
            xw = torch.baddbmm(bias[:, None, :], inp.reshape(S, B * T, -1),
                               w_ih.transpose(1, 2)).view(S, B, T, 4 * hidden)
            xw = xw.permute(2, 0, 1, 3).contiguous()  # time-major: xw[t] is contiguous
            # one slice per step by unbind: its backward stacks the steps' gradients once,
            # where indexing xw[t] would add each step's into a zeroed copy of all of xw
            xs = xw.unbind(0)
            w_hh_t = w_hh.transpose(1, 2).to(mm_dtype)
            h = x.new_zeros(S, B, hidden, dtype=torch.float32)
            c = torch.zeros_like(h)
            last = layer == self.num_layers - 1
            outs: list[torch.Tensor] = []
            for t in range(T):
                hw = torch.bmm(h.to(mm_dtype), w_hh_t)
                if fused:  # i, f, g, o as nn.LSTM orders them
                    h, c = fused_lstm_cell(xs[t], hw, c)
                else:
                    # gates in fp32 even when the matmuls run in bf16 (autocast)
                    g = (xs[t] + hw).float()
                    i, f, gg, o = g.chunk(4, dim=-1)  # PyTorch's order: input, forget, cell, out
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
                    h = torch.sigmoid(o) * torch.tanh(c)
                if not last:
                    outs.append(h)
            if not last:
                inp = torch.stack(outs, dim=2)
                if self.training and self.dropout > 0:
                    inp = nn.functional.dropout(inp, self.dropout, training=True)
        h = nn.functional.dropout(h, self.dropout, training=self.training and self.dropout > 0)
        w, b = self.p("head.weight"), self.p("head.bias")
        return torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))


_FUSED_LSTM_CELL = torch.ops.aten._thnn_fused_lstm_cell
"""(input_gates (N, 4H), hidden_gates (N, 4H), cx (N, H)) -> (hy, cy, workspace)."""


def fused_lstm_cell(input_gates: torch.Tensor, hidden_gates: torch.Tensor,
                    c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step from its two gate pre-activations (..., 4H) and cell state (..., H):
    (h, c) by PyTorch's fused kernel, which also has a fused backward (CUDA only)."""
    lead, four_h = input_gates.shape[:-1], input_gates.shape[-1]
    hy, cy, _ = _FUSED_LSTM_CELL(
        input_gates.reshape(-1, four_h), hidden_gates.reshape(-1, four_h),
        c.reshape(-1, four_h // 4))
    return hy.view(*lead, -1), cy.view(*lead, -1)


class StackedAdam:
    """Adam over stacked parameters with a per-symbol learning rate and update mask.

    Same arithmetic as ``torch.optim.Adam`` (single-tensor path, L2 ``weight_decay``);
    a symbol whose mask is False in a step keeps its weights, moments and step count.
    """

    def __init__(self, params: list[torch.Tensor], lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = params
        n = params[0].shape[0]
        dev = params[0].device
        self.lr = torch.full((n,), float(lr), dtype=torch.float64, device=dev)
        self.step_count = torch.zeros(n, dtype=torch.float64, device=dev)
        self.wd, self.b1, self.b2, self.eps = weight_decay, betas[0], betas[1], eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """One update for the symbols where ``active`` (bool, shape (S,)) is True."""
        self.step_count += active.double()
        t = self.step_count.clamp_min(1)
        step_size = (self.lr / (1 - self.b1 ** t)).float()
        bc2_sqrt = torch.sqrt(1 - self.b2 ** t).float()
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            act = active.view(shape)
            g = p.grad if self.wd == 0 else p.grad + self.wd * p
            m.copy_(torch.where(act, torch.lerp(m, g, 1 - self.b1), m))
            v.copy_(torch.where(act, v * self.b2 + (1 - self.b2) * g * g, v))
            denom = v.sqrt() / bc2_sqrt.view(shape) + self.eps
            upd = m / denom * step_size.view(shape)
            p.sub_(torch.where(act, upd, torch.zeros_like(upd)))

    def keep(self, slots: torch.Tensor, params: list[torch.Tensor]) -> None:
        """Keep the state of the symbols at ``slots`` only, for the kept ``params``."""
        self.params = params
        self.lr, self.step_count = self.lr[slots], self.step_count[slots]
        self.m = [m[slots] for m in self.m]
        self.v = [v[slots] for v in self.v]


@dataclass
class _Plateau:
    """``torch.optim.lr_scheduler.ReduceLROnPlateau`` (mode min, rel threshold) for one symbol."""

    factor: float
    patience: int
    threshold: float = 1e-4
    eps: float = 1e-8
    best: float = math.inf
    bad: int = 0

    def step(self, metric: float, lr: float) -> float:
        if metric < self.best * (1 - self.threshold):
            self.best, self.bad = metric, 0
        else:
            self.bad += 1
        if self.bad > self.patience:
            new = max(lr * self.factor, 0.0)
            self.bad = 0
            if lr - new > self.eps:
                return new
        return lr


def _init_state(n_features: int, settings: Settings) -> dict[str, torch.Tensor]:
    """The initial weights ``fit`` would draw for this settings' seed."""
    torch.manual_seed(settings.seed)
    net = LSTMClassifier(n_features, settings.hidden_size, settings.num_layers, settings.dropout)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


CHECKPOINT_EVERY_S = 60.0
"""Seconds between a group's checkpoints. A group's state is large (164 symbols: 650 MB; that
size took 2.3 s to save on the 2-core dev machine) and its epochs short (~1.3 s on an H200), so it
is saved after the first epoch that ends this long after the last save, not after every epoch:
about 4% of the training time at that save speed, and a kill loses at most ~a minute."""

GPU_MEMORY_SHARE = 0.6
"""Share of the GPU's free memory an automatically sized group may plan to use."""


def bytes_per_symbol(seq: SequenceSet, settings: Settings) -> int:
    """A generous estimate of one symbol's GPU memory in a group: its matrix and labels, a
    validation slice of windows, and the training step's activations (164 symbols x 20 years
    at the default settings peaked at 10.0 GiB on an H100, ~66 MB per symbol, and at 10.6 GiB,
    ~69 MB, on an H200 with the fused cell; this gives ~139 MB, twice that, as a margin)."""
    rows, feats = seq.X.shape
    t, h, b = settings.lookback, settings.hidden_size, settings.batch_size
    data = rows * (feats * 4 + 8)
    val = 2 * VAL_SLICE * t * feats * 4
    act = 16 * b * t * settings.num_layers * 4 * h * 4
    return int(data + val + act)


def auto_group_size(seqs: list[SequenceSet], settings: Settings) -> int:
    """Symbols per group: all on CPU; on a GPU as many as ``GPU_MEMORY_SHARE`` of its free
    memory holds by :func:`bytes_per_symbol`, split into equal groups."""
    device = pick_device(settings.device)
    if device.type != "cuda" or not seqs:
        return max(1, len(seqs))
    free, _total = torch.cuda.mem_get_info(device)
    per = max(bytes_per_symbol(s, settings) for s in seqs)
    fits = max(1, int(GPU_MEMORY_SHARE * free // per))
    n_groups = math.ceil(len(seqs) / fits)
    return math.ceil(len(seqs) / n_groups)


def fit_many(seqs: list[SequenceSet], settings: Settings, *, group_size: int | None = None,
             max_epochs: int | None = None, autocast: bool | None = None,
             init_states: list[dict[str, torch.Tensor] | None] | None = None,
             on_epoch: Callable[[dict[str, float]], None] | None = None,
             compact: bool = True, fused: bool | None = None,
             checkpoint: Callable[[str], AnyPath] | None = None,
             fingerprints: list[str] | None = None,
             checkpoint_every: float | None = None) -> list[TrainResult]:
    """Train one model per sequence set, ``group_size`` symbols at a time on one device
    (None: :func:`auto_group_size`).

    Symbols with different feature counts go to different groups. Returns one ``TrainResult``
    per input, in input order; ``seconds`` is the group's training time (shared by its symbols).
    ``on_epoch`` gets, after each epoch of a group, ``{"epoch", "seconds", "symbols",
    "stacked", "training"}`` (symbols in the group, in this epoch's stacked step, and still
    training after it).

    ``compact``: after an epoch in which symbols stopped early, the group goes on with the
    others only (their weights, optimizer state and data are sliced out), so its arithmetic
    follows the symbols still training instead of carrying the stopped ones masked out to the
    slowest symbol's last epoch. The results are the same either way. (On a GPU an epoch of a
    few symbols still costs its kernel launches: ~1.3 s for 55 steps on an H200.)
    ``fused``: see :class:`StackedLSTMClassifier`.

    ``checkpoint`` (a hex key -> path function, e.g. ``Warehouse.group_checkpoint``) with
    ``fingerprints`` (one per symbol: what its training depends on): each group saves its whole
    state after an epoch when ``checkpoint_every`` seconds (None: :data:`CHECKPOINT_EVERY_S`)
    have passed since its last save, and when it finishes (unless it is the last group), under
    a name made from its members' fingerprints; a call that finds a group's checkpoint resumes
    it. The checkpoints are removed when every group has finished.
    """
    results: list[TrainResult | None] = [None] * len(seqs)
    by_width: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        by_width.setdefault(int(s.X.shape[1]), []).append(i)
    groups: list[list[int]] = []
    for idxs in by_width.values():
        size = group_size or auto_group_size([seqs[i] for i in idxs], settings)
        groups += [idxs[k:k + size] for k in range(0, len(idxs), size)]
    used: list[AnyPath] = []
    for n, group in enumerate(groups, 1):
        inits = [init_states[i] if init_states else None for i in group]
        ck, key = None, ""
        if checkpoint is not None and fingerprints is not None:
            key = hashlib.sha256(json.dumps(
                [[fingerprints[i] for i in group], max_epochs, autocast, compact,
                 fused]).encode()).hexdigest()[:20]
            ck = checkpoint(key)
            used.append(ck)
        # a finished group's state is saved for the groups after it (a kill then loses none of
        # it); the last group's would be removed again at once
        trained = _fit_group([seqs[i] for i in group], settings, max_epochs, autocast, inits,
                             on_epoch, compact=compact, fused=fused, checkpoint=ck,
                             fingerprint=key, checkpoint_every=checkpoint_every,
                             save_finished=n < len(groups))
        for i, r in zip(group, trained, strict=True):
            results[i] = r
    for path in used:  # every group finished: nothing to resume
        path.unlink(missing_ok=True)
    return [r for r in results if r is not None]


def _fit_group(seqs: list[SequenceSet], settings: Settings, max_epochs: int | None,
               autocast: bool | None, inits: list[dict[str, torch.Tensor] | None],
               on_epoch: Callable[[dict[str, float]], None] | None = None, *,
               compact: bool = True, fused: bool | None = None,
               checkpoint: AnyPath | None = None, fingerprint: str = "",
               checkpoint_every: float | None = None,
               save_finished: bool = True) -> list[TrainResult]:
    """Train the group. Tensors are indexed by slot (the symbols still stacked, ``alive[slot]``
    = the symbol's index in ``seqs``); per-symbol bookkeeping by that index. With
    ``checkpoint``, the group's whole state is saved there after an epoch once
    ``checkpoint_every`` seconds have passed since the last save (and after its last epoch when
    ``save_finished``), and a matching (``fingerprint``) checkpoint is resumed from."""
    device = pick_device(settings.device)
    if settings.num_threads > 0:
        torch.set_num_threads(settings.num_threads)
    use_ac = device.type == "cuda" if autocast is None else autocast
    S, lb, bs = len(seqs), seqs[0].lookback, settings.batch_size
    n_feat = int(seqs[0].X.shape[1])
    epochs = max_epochs if max_epochs is not None else settings.max_epochs
    noise = float(getattr(settings, "input_noise", 0.0))

    # data resident on the device: each symbol's scaled matrix, padded to the longest
    rows_max = max(len(s.X) for s in seqs)
    X = torch.zeros(S, rows_max, n_feat, dtype=torch.float32)
    Y = torch.zeros(S, rows_max, dtype=torch.int64)
    for j, s in enumerate(seqs):
        X[j, :len(s.X)] = torch.from_numpy(np.ascontiguousarray(s.X))
        Y[j, :len(s.y)] = torch.from_numpy(s.y.astype(np.int64)).clamp_min(0)
    X, Y = X.to(device), Y.to(device)
    train_rows = [s.end_rows("train") for s in seqs]
    val_rows = [s.end_rows("val") for s in seqs]
    W = torch.tensor(np.stack([class_weights(s.y[r]) if settings.class_weighted
                               else np.ones(len(CLASSES)) for s, r in zip(seqs, train_rows,
                                                                          strict=True)]),
                     dtype=torch.float32, device=device)
    offsets = torch.arange(-lb + 1, 1, device=device)
    alive = list(range(S))
    slots = torch.arange(S, device=device)

    def padded(rows: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        n = max(len(r) for r in rows)
        idx = np.full((len(rows), n), lb - 1, dtype=np.int64)
        mask = np.zeros((len(rows), n), dtype=bool)
        for j, r in enumerate(rows):
            idx[j, :len(r)], mask[j, :len(r)] = r, True
        return torch.from_numpy(idx).to(device), torch.from_numpy(mask).to(device)

    va_idx, va_mask = padded(val_rows)
    fresh = _init_state(n_feat, settings) if any(i is None for i in inits) else {}
    states = [init if init is not None else fresh for init in inits]  # stacked: copies
    net = StackedLSTMClassifier(states, settings.num_layers, settings.dropout,
                                fused=fused).to(device)
    params = list(net.params.values())
    opt = StackedAdam(params, settings.learning_rate, settings.weight_decay)
    plateaus = [_Plateau(settings.lr_factor, settings.lr_patience) for _ in range(S)]
    lrs = [settings.learning_rate] * S
    best_val = [math.inf] * S
    bad = [0] * S
    done = torch.zeros(S, dtype=torch.bool, device=device)
    best = {k: p.detach().clone() for k, p in net.params.items()}
    results = [TrainResult(state={}, device=str(device), parameters=n_params(net) // S,
                           precision="bf16-autocast" if use_ac else "fp32", trained_together=S,
                           train_sequences=len(r),
                           init="warm" if inits[j] is not None else "cold")
               for j, r in enumerate(train_rows)]

    start_epoch, t_train, n_seen = 0, 0.0, [0] * S
    ck = read_checkpoint(checkpoint, fingerprint, device)
    if ck is not None:  # resume: the stacked state of the symbols still in the group
        info = json.loads(ck["info"])
        alive = info["alive"]
        keep = torch.tensor(alive, dtype=torch.long, device=device)
        for k in list(net.params.keys()):
            net.params[k] = nn.Parameter(ck[f"params.{k}"])
        params = opt.params = list(net.params.values())
        opt.lr, opt.step_count = ck["opt.lr"], ck["opt.step"]
        opt.m = [ck[f"opt.m.{i}"] for i in range(len(params))]
        opt.v = [ck[f"opt.v.{i}"] for i in range(len(params))]
        best = {k: ck[f"best.{k}"] for k in net.params}
        X, Y, W = X[keep], Y[keep], W[keep]
        va_idx, va_mask = va_idx[keep], va_mask[keep]
        done, slots = ck["done"], slots[:len(alive)]
        for j, res in enumerate(results):
            res.history, res.best_epoch = info["history"][j], info["best_epoch"][j]
            res.stopped_early = info["stopped_early"][j]
            if j not in alive:
                res.state = {name: ck[f"finished.{j}.{name}"].cpu() for name in net.names}
            plateaus[j].best, plateaus[j].bad = info["plateau"][j]
        lrs, best_val, bad, n_seen = info["lrs"], info["best_val"], info["bad"], info["n_seen"]
        t_train, start_epoch = info["t_train"], info["epoch"] + 1
        torch.set_rng_state(ck["rng.cpu"])
        if device.type == "cuda" and "rng.cuda" in ck:
            torch.cuda.set_rng_state(ck["rng.cuda"], device)
        log.info("group of %d: resuming from %s after epoch %d (%d still stacked)", S,
                 checkpoint, start_epoch, len(alive))

    last_save = time.perf_counter()
    every = CHECKPOINT_EVERY_S if checkpoint_every is None else checkpoint_every

    def save(epoch: int, finished: bool) -> None:
        nonlocal last_save
        if checkpoint is None or not (finished or
                                      time.perf_counter() - last_save >= every):
            return
        tensors = {f"params.{k}": v for k, v in net.params.items()}
        tensors |= {f"best.{k}": v for k, v in best.items()}
        tensors |= {f"opt.m.{i}": v for i, v in enumerate(opt.m)}
        tensors |= {f"opt.v.{i}": v for i, v in enumerate(opt.v)}
        tensors |= {"opt.lr": opt.lr, "opt.step": opt.step_count, "done": done,
                    "rng.cpu": torch.get_rng_state()}
        if device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
        for j, res in enumerate(results):
            if j not in alive:
                tensors |= {f"finished.{j}.{name}": v for name, v in res.state.items()}
        info = {"epoch": epoch, "alive": alive, "lrs": lrs, "best_val": best_val, "bad": bad,
                "n_seen": n_seen, "t_train": t_train,
                "plateau": [[pl.best, pl.bad] for pl in plateaus],
                "history": [r.history for r in results],
                "best_epoch": [r.best_epoch for r in results],
                "stopped_early": [r.stopped_early for r in results]}
        _save_group(checkpoint, fingerprint, tensors, info)
        last_save = time.perf_counter()

    def batch_loss(idx: torch.Tensor, mask: torch.Tensor, train: bool) -> tuple[torch.Tensor, ...]:
        xb = X[slots[:, None, None], idx[:, :, None] + offsets]  # (S, B, T, F)
        if train and noise > 0:
            xb = xb + noise * torch.randn_like(xb)
        if train and settings.input_dropout > 0:
            xb = drop_features(xb, settings.input_dropout)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_ac):
            logits = net(xb)
        yb = Y[slots[:, None], idx]
        lp = torch.log_softmax(logits.float(), dim=-1)
        nll = -lp.gather(-1, yb[..., None])[..., 0]
        w = W[slots[:, None], yb] * mask
        return (nll * w).sum(1), w.sum(1), (lp.argmax(-1) == yb) & mask

    def finish(slot: int) -> None:
        results[alive[slot]].state = {name: best[name.replace(".", "__")][slot].detach().cpu()
                                      .clone() for name in net.names}

    for epoch in range(start_epoch, epochs):
        if bool(done.all()):  # resumed after the last symbol stopped
            break
        t0 = time.perf_counter()
        net.train()
        perms = []
        for j in alive:  # the same per-epoch order fit() draws
            gen = torch.Generator().manual_seed(settings.seed * 100_003 + epoch)
            perms.append(train_rows[j][torch.randperm(len(train_rows[j]), generator=gen).numpy()])
        tr_idx, tr_mask = padded(perms)
        n_steps = math.ceil(tr_idx.shape[1] / bs)
        pad = n_steps * bs - tr_idx.shape[1]
        if pad:
            tr_idx = torch.cat([tr_idx, tr_idx.new_full((len(alive), pad), lb - 1)], 1)
            tr_mask = torch.cat([tr_mask, tr_mask.new_zeros(len(alive), pad)], 1)
        total = torch.zeros(len(alive), device=device)
        for i in range(n_steps):
            idx, mask = tr_idx[:, i * bs:(i + 1) * bs], tr_mask[:, i * bs:(i + 1) * bs]
            lsum, wsum, _ = batch_loss(idx, mask, train=True)
            loss_s = lsum / wsum.clamp_min(1e-12)  # each symbol's mean weighted CE
            for p in params:
                p.grad = None
            loss_s.sum().backward()
            if settings.grad_clip > 0:  # clip each symbol's own global grad norm
                sq = sum((p.grad.float() ** 2).flatten(1).sum(1) for p in params
                         if p.grad is not None)
                coef = (settings.grad_clip / (torch.sqrt(sq) + 1e-6)).clamp(max=1.0)
                for p in params:
                    if p.grad is not None:
                        p.grad.mul_(coef.view((-1,) + (1,) * (p.dim() - 1)))
            active = mask.any(1) & ~done
            opt.step(active)
            if settings.input_group_lasso > 0:  # fit()'s step, each symbol at its own lr
                thr = opt.lr.float() * settings.input_group_lasso * active
                group_lasso_prox_(net.p("lstm.weight_ih_l0"), thr[:, None, None])
            total += loss_s.detach() * mask.sum(1)
        sec = time.perf_counter() - t0
        t_train += sec
        # validation: one host sync per epoch for all symbols
        net.eval()
        vl_sum = torch.zeros(len(alive), device=device)
        vw_sum = torch.zeros(len(alive), device=device)
        v_ok = torch.zeros(len(alive), device=device)
        with torch.no_grad():
            for i in range(0, va_idx.shape[1], VAL_SLICE):
                ls, ws, ok = batch_loss(va_idx[:, i:i + VAL_SLICE], va_mask[:, i:i + VAL_SLICE],
                                        False)
                vl_sum += ls
                vw_sum += ws
                v_ok += ok.sum(1)
        net.train()
        val_loss = (vl_sum / vw_sum.clamp_min(1e-12)).tolist()
        val_acc = (v_ok / va_mask.sum(1).clamp_min(1)).tolist()
        tot = total.tolist()
        was_done = done.tolist()
        improved = torch.zeros(len(alive), dtype=torch.bool)
        for slot, j in enumerate(alive):
            if was_done[slot]:
                continue
            n_seen[j] += len(train_rows[j])
            lrs[j] = plateaus[j].step(val_loss[slot], lrs[j])
            results[j].history.append({
                "epoch": float(epoch + 1),
                "train_loss": tot[slot] / max(len(train_rows[j]), 1),
                "val_loss": val_loss[slot], "val_accuracy": val_acc[slot], "lr": lrs[j],
                "seconds": time.perf_counter() - t0})
            if val_loss[slot] < best_val[j] - settings.min_delta:
                best_val[j], bad[j], results[j].best_epoch = val_loss[slot], 0, epoch + 1
                improved[slot] = True
            else:
                bad[j] += 1
            if bad[j] >= settings.early_stop_patience:
                results[j].stopped_early = True
                done[slot] = True
        opt.lr.copy_(torch.tensor([lrs[j] for j in alive], dtype=torch.float64))
        imp = improved.to(device)
        with torch.no_grad():
            for k, p in net.params.items():
                best[k].copy_(torch.where(imp.view((-1,) + (1,) * (p.dim() - 1)), p, best[k]))
        stacked = len(alive)
        training = stacked - int(done.sum())
        log.info("group of %d: epoch %d/%d (%.2fs, %d stacked), %d still training", S,
                 epoch + 1, epochs, sec, stacked, training)
        if compact and 0 < training < stacked:  # go on with the symbols still training
            stopped = done.tolist()
            for slot in range(len(alive)):
                if stopped[slot]:
                    finish(slot)
            keep = (~done).nonzero()[:, 0]
            alive = [j for slot, j in enumerate(alive) if not stopped[slot]]
            net.keep(keep)
            params = list(net.params.values())
            opt.keep(keep, params)
            best = {k: v[keep] for k, v in best.items()}
            X, Y, W = X[keep], Y[keep], W[keep]
            va_idx, va_mask = va_idx[keep], va_mask[keep]
            done, slots = done[keep], slots[:len(alive)]
        save(epoch, finished=save_finished and (training == 0 or epoch + 1 == epochs))
        if on_epoch is not None:
            on_epoch({"epoch": float(epoch + 1), "seconds": sec, "symbols": float(S),
                      "stacked": float(stacked), "training": float(training)})
        if training == 0:
            break

    for slot in range(len(alive)):
        finish(slot)
    for j, res in enumerate(results):
        res.epochs_run = len(res.history)
        row = next((r for r in res.history if int(r["epoch"]) == res.best_epoch), None)
        res.best_val_loss = row["val_loss"] if row else float("nan")
        res.best_val_accuracy = row["val_accuracy"] if row else float("nan")
        res.seconds = t_train
        res.sequences_per_second = n_seen[j] / t_train if t_train > 0 else float("nan")
        set_feature_use(res, seqs[j].features)
    return results


def _save_group(path: AnyPath, fingerprint: str, tensors: dict[str, torch.Tensor],
                info: dict[str, Any]) -> None:
    """A group's state after an epoch: tensors and a JSON string (no pickle), written
    atomically, loadable with ``weights_only=True``."""
    ck: dict[str, Any] = {k: v.detach().cpu() for k, v in tensors.items()}
    ck["info"] = json.dumps(info)
    ck["fingerprint"] = fingerprint
    with atomic_path(path) as tmp:
        torch.save(ck, tmp)
