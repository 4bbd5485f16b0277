"""What the training loop trains: the network(s) and how a batch of windows reaches them.

The loop (:func:`lstm_assets.core.train.train_models`) is written once: seeding, shuffling, the
epoch loop, the LR schedule, early stopping, best weights, checkpoint and resume, history and
results. It drives a *trainee*: ``n`` models side by side, each with its own data, that can take
one optimizer step on a batch of window end rows, score its validation windows, and hand out its
weights. Two trainees exist:

- :class:`OneNet`: one symbol's model, any ``nn.Module`` classifier that reads windows
  (batch, steps, features) and names its first-layer input weights (``input_weight_key``, for the
  group lasso), trained with ``torch.optim.Adam`` and ``clip_grad_norm_``. A new network for one
  symbol (a GRU, an attention LSTM) is a small ``nn.Module``; this trains it unchanged.
- :class:`StackedLSTMs`: many symbols' LSTMs as one stacked module
  (:class:`~lstm_assets.core.stacked.StackedLSTMClassifier`) with a per-symbol Adam
  (:class:`~lstm_assets.core.stacked.StackedAdam`): per-symbol learning rates, gradient
  clipping by each symbol's own norm, and a mask so that a symbol with no windows left in an
  epoch, or that has stopped, gets no update. On a GPU this keeps the device busy.

The batch arithmetic is each trainee's own because it has to be: one model uses PyTorch's
``nn.LSTM``, Adam and ``clip_grad_norm_`` kernels as they are; the stacked one computes the
same formulas per symbol. The knobs (clipping norm, lasso strength, noise, dropout) come from
the one :class:`~lstm_assets.core.settings.Settings`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from torch import nn

from lstm_assets.core.model import LSTMClassifier, n_params
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.settings import CLASSES, Settings
from lstm_assets.core.stacked import StackedAdam, StackedLSTMClassifier

log = logging.getLogger(__name__)

EVAL_SLICE_CPU = 64
"""Windows per forward pass when one model scores on CPU (bounds the validation step's memory)."""

VAL_SLICE = 512
"""Validation windows per symbol per forward pass of the stacked models."""

State = dict[str, torch.Tensor]


class Trainee(Protocol):
    """``n`` models trained side by side by the loop; slot ``i`` is the i-th model still here."""

    n: int
    precision: str
    """"bf16-autocast" or "fp32"."""
    parameters: int
    """Parameters of one model."""
    input_weight_key: str
    """The name of each model's first-layer input weights in :meth:`best_state`."""

    def step(self, idx: torch.Tensor, mask: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the windows ending at ``idx`` (n, B), where ``mask`` (n, B);
        models where ``active`` (n,) is False are not updated. Returns each model's batch loss
        (weighted mean cross entropy) times its windows in the batch, on the device."""
        ...

    def validate(self) -> tuple[list[float], list[float]]:
        """Each model's weighted validation loss and accuracy (one host sync)."""
        ...

    def set_lrs(self, lrs: list[float]) -> None: ...

    def keep_best(self, improved: list[bool]) -> None:
        """Remember the current weights of the models where ``improved``."""
        ...

    def best_state(self, slot: int) -> State:
        """The best weights of the model at ``slot``, on the CPU, named as
        :class:`~lstm_assets.core.model.LSTMClassifier` names them."""
        ...

    def keep(self, slots: torch.Tensor) -> None:
        """Go on with the models at ``slots`` only (the others have stopped)."""
        ...

    def state_tensors(self) -> State:
        """Everything a resume needs (weights, best weights, optimizer state)."""
        ...

    def load_state_tensors(self, tensors: State, alive: list[int]) -> None:
        """Restore :meth:`state_tensors`, saved when the models ``alive`` (indices into the
        models this trainee was built with) were still here."""
        ...


def class_weights(y: np.ndarray, n_classes: int = len(CLASSES)) -> np.ndarray:
    """Inverse-frequency weights (scikit-learn's 'balanced'); a class absent from train gets 0."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)


def loss_weights(seq: SequenceSet, settings: Settings) -> np.ndarray:
    """The cross-entropy class weights of ``seq``'s training (ones when not class-weighted)."""
    if not settings.class_weighted:
        return np.ones(len(CLASSES))
    return class_weights(seq.y[seq.end_rows("train")])


@torch.no_grad()
def group_lasso_prox_(w: torch.Tensor, threshold: float | torch.Tensor) -> None:
    """Proximal step of a group lasso on input weights ``w`` of shape (..., gates x hidden,
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


def augment(xb: torch.Tensor, settings: Settings) -> torch.Tensor:
    """The training-time input regularizers: Gaussian noise, then whole-feature dropout."""
    if settings.input_noise > 0:
        xb = xb + settings.input_noise * torch.randn_like(xb)
    if settings.input_dropout > 0:
        xb = drop_features(xb, settings.input_dropout)
    return xb


_BF16_LSTM: dict[str, bool] = {}


def bf16_lstm_ok(device: torch.device) -> bool:
    """Whether ``nn.LSTM`` trains under bf16 autocast on ``device`` (probed once per device).

    cuDNN runs bf16 RNNs only from 9.13 on; before that, and on CPUs without a bf16 LSTM
    kernel, the forward pass raises. :class:`OneNet` then trains in fp32 and logs why, instead
    of failing. The probe leaves the global RNG untouched, so seeded weights do not depend on it.
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


@torch.no_grad()
def evaluate_loss(net: nn.Module, X: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
                  offsets: torch.Tensor, weight: torch.Tensor, chunk: int = 4096,
                  autocast: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted CE loss and accuracy of one model over the windows ending at ``rows``.

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


def lstm_net(n_features: int, settings: Settings) -> nn.Module:
    """The per-symbol network of the settings: :class:`LSTMClassifier`."""
    return LSTMClassifier(n_features, settings.hidden_size, settings.num_layers, settings.dropout)


class OneNet:
    """One model on one symbol's windows (n = 1), with torch's Adam and ``clip_grad_norm_``."""

    n = 1

    def __init__(self, seq: SequenceSet, settings: Settings, device: torch.device,
                 autocast: bool, init_state: State | None,
                 make_net: Callable[[int, Settings], nn.Module] = lstm_net) -> None:
        self.settings = settings
        self.autocast = autocast and bf16_lstm_ok(device)
        self.precision = "bf16-autocast" if self.autocast else "fp32"
        self.X = torch.from_numpy(np.ascontiguousarray(seq.X)).to(device)
        self.y = torch.from_numpy(seq.y.astype(np.int64)).to(device)
        self.offsets = torch.arange(-seq.lookback + 1, 1, device=device)
        self.val_rows = torch.from_numpy(seq.end_rows("val")).to(device)
        self.weight = torch.tensor(loss_weights(seq, settings), dtype=torch.float32,
                                   device=device)
        self.net = make_net(seq.X.shape[1], settings).to(device)
        if init_state is not None:
            self.net.load_state_dict(init_state)
        self.parameters = n_params(self.net)
        self.input_weight_key: str = self.net.input_weight_key
        # fused on CUDA: one kernel per step for all parameters instead of ~10 per parameter
        self.opt = torch.optim.Adam(self.net.parameters(), lr=settings.learning_rate,
                                    weight_decay=settings.weight_decay,
                                    fused=device.type == "cuda")
        self.criterion = nn.CrossEntropyLoss(weight=self.weight)
        self.best: State | None = None

    def step(self, idx: torch.Tensor, mask: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        # the loop steps one model only while it trains, on unpadded rows: mask and active
        # are all True here
        rows = idx[0]
        xb = augment(self.X[rows[:, None] + self.offsets], self.settings)
        with torch.autocast(self.X.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.net(xb)
        loss = self.criterion(logits.float(), self.y[rows])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.settings.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.settings.grad_clip)
        self.opt.step()
        if self.settings.input_group_lasso > 0:
            w = self.net.get_parameter(self.input_weight_key)
            group_lasso_prox_(w, self.opt.param_groups[0]["lr"] * self.settings.input_group_lasso)
        return (loss.detach() * len(rows)).reshape(1)

    def validate(self) -> tuple[list[float], list[float]]:
        loss, acc = evaluate_loss(self.net, self.X, self.y, self.val_rows, self.offsets,
                                  self.weight, autocast=self.autocast)
        return [float(loss)], [float(acc)]

    def set_lrs(self, lrs: list[float]) -> None:
        self.opt.param_groups[0]["lr"] = lrs[0]

    def keep_best(self, improved: list[bool]) -> None:
        if improved[0]:
            self.best = {k: v.detach().clone() for k, v in self.net.state_dict().items()}

    def best_state(self, slot: int) -> State:
        best = self.best if self.best is not None else copy.deepcopy(self.net.state_dict())
        return {k: v.detach().cpu() for k, v in best.items()}

    def keep(self, slots: torch.Tensor) -> None:
        raise AssertionError("one model is never compacted: it stops with the loop")

    def state_tensors(self) -> State:
        out = {f"model.{k}": v for k, v in self.net.state_dict().items()}
        if self.best is not None:
            out |= {f"best.{k}": v for k, v in self.best.items()}
        for i, st in self.opt.state_dict()["state"].items():
            out |= {f"opt.{i}.{k}": v for k, v in st.items()}
        return out

    def load_state_tensors(self, tensors: State, alive: list[int]) -> None:
        self.net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        self.best = best or None
        state: dict[int, State] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                state.setdefault(int(i), {})[name] = v
        self.opt.load_state_dict({"state": state,
                                  "param_groups": self.opt.state_dict()["param_groups"]})


def _pad(arrays: list[np.ndarray], width: int, fill: float | int,
         dtype: torch.dtype) -> torch.Tensor:
    out = torch.full((len(arrays), width, *arrays[0].shape[1:]), fill, dtype=dtype)
    for j, a in enumerate(arrays):
        out[j, :len(a)] = torch.from_numpy(np.ascontiguousarray(a))
    return out


class StackedLSTMs:
    """Many symbols' LSTM models as one stacked module, each on its own symbol's windows.

    With dropout and input noise off, each model equals :class:`OneNet`'s up to float rounding
    (``lstm_assets_tests/test_bench.py`` checks it on CPU); with dropout on, only the random
    masks differ. ``fused``: see :class:`~lstm_assets.core.stacked.StackedLSTMClassifier`.
    """

    def __init__(self, seqs: list[SequenceSet], settings: Settings, device: torch.device,
                 autocast: bool, init_states: list[State | None],
                 fused: bool | None = None) -> None:
        self.settings = settings
        self.autocast = autocast
        self.precision = "bf16-autocast" if autocast else "fp32"
        self.n = len(seqs)
        rows_max = max(len(s.X) for s in seqs)
        # each symbol's scaled matrix, padded to the longest, resident on the device
        self.X = _pad([s.X for s in seqs], rows_max, 0.0, torch.float32).to(device)
        self.Y = _pad([s.y.astype(np.int64).clip(min=0) for s in seqs], rows_max, 0,
                      torch.int64).to(device)
        self.W = torch.tensor(np.stack([loss_weights(s, settings) for s in seqs]),
                              dtype=torch.float32, device=device)
        lb = seqs[0].lookback
        self.offsets = torch.arange(-lb + 1, 1, device=device)
        val = [s.end_rows("val") for s in seqs]
        width = max(len(r) for r in val)
        self.va_idx = _pad(val, width, lb - 1, torch.int64).to(device)
        self.va_mask = _pad([np.ones(len(r), dtype=bool) for r in val], width, False,
                            torch.bool).to(device)
        self.slots = torch.arange(self.n, device=device)
        if any(i is None for i in init_states):
            fresh = lstm_net(int(seqs[0].X.shape[1]), settings).state_dict()
        states = [init if init is not None else fresh for init in init_states]
        self.net = StackedLSTMClassifier(states, settings.num_layers, settings.dropout,
                                         fused=fused).to(device)
        self.parameters = n_params(self.net) // self.n
        self.input_weight_key = LSTMClassifier.input_weight_key
        self.opt = StackedAdam(list(self.net.params.values()), settings.learning_rate,
                               settings.weight_decay)
        self.best = {k: p.detach().clone() for k, p in self.net.params.items()}

    def _loss(self, idx: torch.Tensor, mask: torch.Tensor,
              train: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xb = self.X[self.slots[:, None, None], idx[:, :, None] + self.offsets]  # (n, B, T, F)
        if train:
            xb = augment(xb, self.settings)
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.net(xb)
        yb = self.Y[self.slots[:, None], idx]
        lp = torch.log_softmax(logits.float(), dim=-1)
        nll = -lp.gather(-1, yb[..., None])[..., 0]
        w = self.W[self.slots[:, None], yb] * mask
        return (nll * w).sum(1), w.sum(1), (lp.argmax(-1) == yb) & mask

    def step(self, idx: torch.Tensor, mask: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        lsum, wsum, _ = self._loss(idx, mask, train=True)
        loss = lsum / wsum.clamp_min(1e-12)  # each symbol's mean weighted CE
        params = self.opt.params
        for p in params:
            p.grad = None
        loss.sum().backward()
        if self.settings.grad_clip > 0:  # each symbol's own global grad norm
            sq = sum((p.grad.float() ** 2).flatten(1).sum(1) for p in params
                     if p.grad is not None)
            coef = (self.settings.grad_clip / (torch.sqrt(sq) + 1e-6)).clamp(max=1.0)
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(coef.view((-1,) + (1,) * (p.dim() - 1)))
        active = active & mask.any(1)
        self.opt.step(active)
        if self.settings.input_group_lasso > 0:  # each symbol at its own lr
            thr = self.opt.lr.float() * self.settings.input_group_lasso * active
            group_lasso_prox_(self.net.p(self.input_weight_key), thr[:, None, None])
        return loss.detach() * mask.sum(1)

    @torch.no_grad()
    def validate(self) -> tuple[list[float], list[float]]:
        self.net.eval()
        dev = self.X.device
        l_sum, w_sum, ok = (torch.zeros(self.n, device=dev) for _ in range(3))
        for i in range(0, self.va_idx.shape[1], VAL_SLICE):
            ls, ws, hit = self._loss(self.va_idx[:, i:i + VAL_SLICE],
                                     self.va_mask[:, i:i + VAL_SLICE], False)
            l_sum += ls
            w_sum += ws
            ok += hit.sum(1)
        self.net.train()
        acc = ok / self.va_mask.sum(1).clamp_min(1)
        return (l_sum / w_sum.clamp_min(1e-12)).tolist(), acc.tolist()

    def set_lrs(self, lrs: list[float]) -> None:
        self.opt.lr.copy_(torch.tensor(lrs, dtype=torch.float64))

    @torch.no_grad()
    def keep_best(self, improved: list[bool]) -> None:
        imp = torch.tensor(improved, dtype=torch.bool, device=self.X.device)
        for k, p in self.net.params.items():
            self.best[k].copy_(torch.where(imp.view((-1,) + (1,) * (p.dim() - 1)), p,
                                           self.best[k]))

    def best_state(self, slot: int) -> State:
        return {name: self.best[name.replace(".", "__")][slot].detach().cpu().clone()
                for name in self.net.names}

    def keep(self, slots: torch.Tensor) -> None:
        self.net.keep(slots)
        self.opt.keep(slots, list(self.net.params.values()))
        self.best = {k: v[slots] for k, v in self.best.items()}
        self.X, self.Y, self.W = self.X[slots], self.Y[slots], self.W[slots]
        self.va_idx, self.va_mask = self.va_idx[slots], self.va_mask[slots]
        self.n = len(slots)
        self.slots = self.slots[:self.n]

    def state_tensors(self) -> State:
        out = {f"params.{k}": v for k, v in self.net.params.items()}
        out |= {f"best.{k}": v for k, v in self.best.items()}
        out |= {f"opt.m.{i}": v for i, v in enumerate(self.opt.m)}
        out |= {f"opt.v.{i}": v for i, v in enumerate(self.opt.v)}
        return out | {"opt.lr": self.opt.lr, "opt.step": self.opt.step_count}

    def load_state_tensors(self, tensors: State, alive: list[int]) -> None:
        if len(alive) < self.n:  # the stopped symbols' data leaves with them
            self.keep(torch.tensor(alive, dtype=torch.long, device=self.X.device))
        for k in list(self.net.params.keys()):
            self.net.params[k] = nn.Parameter(tensors[f"params.{k}"])
        params = list(self.net.params.values())
        self.opt.params = params
        self.opt.lr, self.opt.step_count = tensors["opt.lr"], tensors["opt.step"]
        self.opt.m = [tensors[f"opt.m.{i}"] for i in range(len(params))]
        self.opt.v = [tensors[f"opt.v.{i}"] for i in range(len(params))]
        self.best = {k: tensors[f"best.{k}"] for k in self.net.params}
