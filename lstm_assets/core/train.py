"""The training loop: one loop, for one symbol's model or many symbols' models trained together.

:func:`train_models` is the loop; :func:`fit` (one symbol) and :func:`fit_many` (many, in
stacked groups) call it. What it trains is a *trainee* (:mod:`lstm_assets.core.trainees`): the
network(s) and how a batch of windows reaches them. Everything else is here, once:

- **Seeding**: ``torch.manual_seed(seed)`` before the weights are drawn; the shuffle order of
  epoch e comes from ``seed`` and ``e`` alone (:func:`shuffled`), so a resumed run shuffles as
  the original would have, and every symbol of a group shuffles as it would alone.
- **Epochs**: each model's training windows in 64-window batches (``batch_size``), gathered by
  index from the scaled matrix on the device (windows are never materialized for a whole set);
  losses stay on the device and are read once per epoch.
- **LR schedule**: :class:`Plateau` (``ReduceLROnPlateau``'s rule: mode min, relative threshold
  1e-4) on each model's validation loss.
- **Early stopping** on each model's validation loss, keeping its best weights; in a group, a
  model that stops leaves the stack (``compact``) and the others go on.
- **Selection score**: one model may be judged by another validation figure instead of the
  loss (``val_score(net)``, higher is better; the model comparison passes the validation
  dates' mean daily rank IC): the LR schedule, the best epoch and early stopping then follow
  it, and each history row records it as ``val_score``.
- **Checkpoint and resume**: one format for any trainee (tensors plus a JSON record, loaded with
  ``weights_only=True``, written atomically); a killed training resumes from its last save when
  the checkpoint's fingerprint matches, and ends bit-identical to an uninterrupted run.
- **History and result**: one :class:`TrainResult` per model.

CUDA when present (``device="auto"``) with bf16 autocast; on CPU ``autocast=True`` opts in (about
1.5-2x faster where the CPU has AMX / AVX512-BF16; results then differ from fp32 in rounding, so
it is off by default). Seeded: the same seed and data give the same weights on CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.settings import Settings
from lstm_assets.core.storage import AnyPath, atomic_path, local_file
from lstm_assets.core.trainees import (
    VAL_SLICE,
    OneNet,
    StackedLSTMs,
    State,
    Trainee,
    lstm_net,
)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2
"""Version of the checkpoint layout; a checkpoint of another layout is ignored (start over)."""

CHECKPOINT_EVERY_S = 60.0
"""Seconds between a stacked group's checkpoints. A group's state is large (164 symbols: 650 MB,
counted from its tensors; 2.3 s to save on a 2-core machine) and its epochs short (~1.3 s on an
H200), so it is saved after the first epoch that ends this long after the last save: about 4% of
the training time at that save speed, and a kill loses at most ~a minute. One model saves after
every epoch."""

GPU_MEMORY_SHARE = 0.6
"""Share of the GPU's free memory an automatically sized group may plan to use."""


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
    """Symbols in the stacked group this model trained in (:func:`fit_many`); 1 for :func:`fit`.
    Above 1, ``seconds`` is the whole group's training time."""
    features_used: int = 0
    """Input features whose first-layer weights are not all zero (the group lasso zeroes the
    others: the model cannot see them)."""
    top_features: list[str] = field(default_factory=list)
    """Up to 10 input features with the largest first-layer weight norms, largest first."""

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("state", "history")}


@dataclass
class Plateau:
    """``torch.optim.lr_scheduler.ReduceLROnPlateau`` (mode min, relative threshold, no
    cooldown) for one model: :meth:`step` takes the epoch's validation loss and the current
    learning rate and returns the next one."""

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


def shuffled(rows: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """``rows`` in the order of epoch ``epoch``: a function of the seed and the epoch only."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return rows[torch.randperm(len(rows), generator=gen).numpy()]


@dataclass
class Progress:
    """The loop's per-model bookkeeping (lists indexed by model), saved in checkpoints as JSON.
    ``alive``: the models still in the trainee, in slot order."""

    alive: list[int]
    lrs: list[float]
    plateau: list[list[float]]
    best_val: list[float]
    bad: list[int]
    n_seen: list[int]
    history: list[list[dict[str, float]]]
    best_epoch: list[int]
    stopped_early: list[bool]
    epoch: int = -1
    """The last finished epoch."""
    t_train: float = 0.0
    initial: list[list[float]] = field(default_factory=list)
    """Per model, the validation loss and accuracy of its starting weights (a warm start only:
    epoch 0, :meth:`_Loop.score_start`)."""

    @classmethod
    def start(cls, n: int, lr: float) -> Progress:
        return cls(alive=list(range(n)), lrs=[lr] * n, plateau=[[math.inf, 0] for _ in range(n)],
                   best_val=[math.inf] * n, bad=[0] * n, n_seen=[0] * n,
                   history=[[] for _ in range(n)], best_epoch=[0] * n,
                   stopped_early=[False] * n)

    def end_epoch(self, epoch: int, settings: Settings, train_rows: list[np.ndarray],
                  totals: list[float], val_loss: list[float], val_acc: list[float],
                  done: list[bool], t0: float, val_score: list[float] | None = None
                  ) -> list[bool]:
        """Record the epoch of every model still training: schedule, history, best, early
        stop (sets ``done``). Returns, per slot, whether the model improved. The schedule,
        best and stop follow the validation loss, or ``-val_score`` when given."""
        improved = [False] * len(self.alive)
        metric = val_loss if val_score is None else _minimized(val_score)
        for slot, j in enumerate(self.alive):
            if done[slot]:
                continue
            self.n_seen[j] += len(train_rows[j])
            plateau = Plateau(settings.lr_factor, settings.lr_patience, best=self.plateau[j][0],
                              bad=int(self.plateau[j][1]))
            self.lrs[j] = plateau.step(metric[slot], self.lrs[j])
            self.plateau[j] = [plateau.best, plateau.bad]
            self.history[j].append({
                "epoch": float(epoch + 1),
                "train_loss": totals[slot] / max(len(train_rows[j]), 1),
                "val_loss": val_loss[slot], "val_accuracy": val_acc[slot], "lr": self.lrs[j],
                "seconds": time.perf_counter() - t0})
            if val_score is not None:
                self.history[j][-1]["val_score"] = val_score[slot]
            if metric[slot] < self.best_val[j] - settings.min_delta:
                self.best_val[j], self.bad[j], self.best_epoch[j] = metric[slot], 0, epoch + 1
                improved[slot] = True
            else:
                self.bad[j] += 1
            if self.bad[j] >= settings.early_stop_patience:
                self.stopped_early[j] = done[slot] = True
        self.epoch = epoch
        return improved


def _minimized(scores: list[float]) -> list[float]:
    """Scores (higher is better) as a figure to minimize; a non-finite score is the worst."""
    return [-v if math.isfinite(v) else math.inf for v in scores]


def read_checkpoint(path: AnyPath | None, fingerprint: str,
                    device: torch.device) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (local or a store object) when it exists, loads with
    ``weights_only=True``, has this layout and was written for ``fingerprint``; else None
    (start over). Its tensors are on ``device``, its RNG states (keys ``rng...``) on the CPU."""
    if path is None or not path.exists():
        return None
    try:
        with local_file(path) as local:
            ck = torch.load(local, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint means: start over
        log.warning("ignoring unreadable checkpoint %s: %s", path, e)
        return None
    if ck.get("format") != CHECKPOINT_FORMAT or ck.get("fingerprint") != fingerprint:
        return None
    for k in [k for k in ck if k.startswith("rng")]:  # RNG states are CPU byte tensors, which
        ck[k] = ck[k].cpu()  # map_location moved to the device
    return ck


def save_checkpoint(path: AnyPath, fingerprint: str, tensors: State,
                    info: dict[str, Any]) -> None:
    """Tensors and a JSON record (no pickle), written atomically, loadable with
    ``weights_only=True``."""
    ck: dict[str, Any] = {k: v.detach().cpu() for k, v in tensors.items()}
    ck.update(info=json.dumps(info), fingerprint=fingerprint, format=CHECKPOINT_FORMAT)
    with atomic_path(path) as tmp:
        torch.save(ck, tmp)


def set_feature_use(res: TrainResult, features: list[str], input_weight_key: str) -> None:
    """Fill ``features_used`` / ``top_features`` from the trained first-layer input weights."""
    norms = res.state[input_weight_key].float().norm(dim=0)
    res.features_used = int((norms > 0).sum())
    order = torch.argsort(norms, descending=True)[:10].tolist()
    res.top_features = [features[i] for i in order if norms[i] > 0]


def _epoch_rows(perms: list[np.ndarray], fill: int,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each model's shuffled rows as one (n, longest) index tensor and its mask; shorter
    models are padded with ``fill`` (a valid row) and masked out."""
    width = max(len(p) for p in perms)
    idx = np.full((len(perms), width), fill, dtype=np.int64)
    mask = np.zeros((len(perms), width), dtype=bool)
    for j, p in enumerate(perms):
        idx[j, :len(p)], mask[j, :len(p)] = p, True
    return torch.from_numpy(idx).to(device), torch.from_numpy(mask).to(device)


class _Loop:
    """One run of the loop over a trainee; see the module docstring."""

    def __init__(self, trainee: Trainee, seqs: list[SequenceSet], settings: Settings,
                 device: torch.device, epochs: int, checkpoint: AnyPath | None,
                 fingerprint: str, checkpoint_every: float, save_finished: bool,
                 val_score: Callable[[nn.Module], float] | None = None) -> None:
        self.trainee, self.seqs, self.settings, self.device = trainee, seqs, settings, device
        self.val_score = val_score
        self.epochs = epochs
        self.checkpoint, self.fingerprint = checkpoint, fingerprint
        self.checkpoint_every, self.save_finished = checkpoint_every, save_finished
        self.train_rows = [s.end_rows("train") for s in seqs]
        self.progress = Progress.start(len(seqs), settings.learning_rate)
        self.done = torch.zeros(len(seqs), dtype=torch.bool, device=device)
        self.finished: dict[int, State] = {}
        self.resumed_from = 0
        self.last_save = time.perf_counter()

    def resume(self) -> None:
        ck = read_checkpoint(self.checkpoint, self.fingerprint, self.device)
        if ck is None:
            return
        self.progress = Progress(**json.loads(ck["info"]))
        self.trainee.load_state_tensors(ck, self.progress.alive)
        self.trainee.set_lrs([self.progress.lrs[j] for j in self.progress.alive])
        self.done = ck["done"]
        for j in range(len(self.seqs)):
            if j not in self.progress.alive:
                pre = f"finished.{j}."
                self.finished[j] = {k[len(pre):]: v.cpu() for k, v in ck.items()
                                    if k.startswith(pre)}
        torch.set_rng_state(ck["rng.cpu"])
        if self.device.type == "cuda" and "rng.cuda" in ck:
            torch.cuda.set_rng_state(ck["rng.cuda"], self.device)
        self.resumed_from = self.progress.epoch + 1
        log.info("resuming %d model(s) from %s after epoch %d (%d still training)",
                 len(self.seqs), self.checkpoint, self.resumed_from, len(self.progress.alive))

    def save(self, finished: bool) -> None:
        if self.checkpoint is None or not (
                finished or time.perf_counter() - self.last_save >= self.checkpoint_every):
            return
        tensors = self.trainee.state_tensors() | {"done": self.done,
                                                  "rng.cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        for j, state in self.finished.items():
            tensors |= {f"finished.{j}.{name}": v for name, v in state.items()}
        save_checkpoint(self.checkpoint, self.fingerprint, tensors, asdict(self.progress))
        self.last_save = time.perf_counter()

    def train_epoch(self, epoch: int) -> list[float]:
        """One pass over every training model's windows; returns each slot's loss sum."""
        prog, bs = self.progress, self.settings.batch_size
        perms = [shuffled(self.train_rows[j], self.settings.seed, epoch) for j in prog.alive]
        idx, mask = _epoch_rows(perms, self.seqs[0].lookback - 1, self.device)
        total = torch.zeros(len(prog.alive), device=self.device)
        training = ~self.done
        for i in range(0, idx.shape[1], bs):
            total += self.trainee.step(idx[:, i:i + bs], mask[:, i:i + bs], training)
        return total.tolist()

    def compact(self) -> None:
        """Go on with the models still training only."""
        stopped = self.done.tolist()
        for slot, j in enumerate(self.progress.alive):
            if stopped[slot]:
                self.finished[j] = self.trainee.best_state(slot)
        keep = (~self.done).nonzero()[:, 0]
        self.progress.alive = [j for slot, j in enumerate(self.progress.alive)
                               if not stopped[slot]]
        self.trainee.keep(keep)
        self.done = self.done[keep]

    def start_lrs(self, lrs: list[float | None] | None) -> None:
        """Start each model at its own learning rate (not on a resumed run: it has its own)."""
        if not lrs or self.progress.epoch >= 0:
            return
        prog = self.progress
        for j, lr in enumerate(lrs):
            if lr is not None and lr > 0:
                prog.lrs[j] = float(lr)
        self.trainee.set_lrs([prog.lrs[j] for j in prog.alive])

    def score_start(self) -> None:
        """A warm start's own weights are its first candidate (epoch 0): a fit that only gets
        worse on validation returns the weights it started from, never worse ones."""
        if self.progress.epoch >= 0:  # resumed: already scored
            return
        val_loss, val_acc = self.trainee.validate()
        prog = self.progress
        prog.initial = [[loss, acc] for loss, acc in zip(val_loss, val_acc, strict=True)]
        score = self.score()
        metric = val_loss if score is None else _minimized(score)
        for slot, j in enumerate(prog.alive):
            prog.best_val[j] = metric[slot]
        self.trainee.keep_best([True] * len(prog.alive))

    def score(self) -> list[float] | None:
        """The selection score of the (one) model now, or None without ``val_score``."""
        if self.val_score is None:
            return None
        return [float(self.val_score(self.trainee.net))]  # type: ignore[attr-defined]

    def run(self, on_epoch: Callable[[dict[str, float]], None] | None, compact: bool) -> None:
        prog, n = self.progress, len(self.seqs)
        for epoch in range(prog.epoch + 1, self.epochs):
            if bool(self.done.all()):  # resumed after the last model stopped
                break
            t0 = time.perf_counter()
            totals = self.train_epoch(epoch)
            sec = time.perf_counter() - t0
            prog.t_train += sec
            val_loss, val_acc = self.trainee.validate()
            done = self.done.tolist()
            improved = prog.end_epoch(epoch, self.settings, self.train_rows, totals, val_loss,
                                      val_acc, done, t0, self.score())
            self.done = torch.tensor(done, dtype=torch.bool, device=self.device)
            self.trainee.set_lrs([prog.lrs[j] for j in prog.alive])
            self.trainee.keep_best(improved)
            stacked = len(prog.alive)
            training = stacked - sum(done)
            self._log(epoch, sec, stacked, training)
            if compact and 0 < training < stacked:
                self.compact()
            self.save(finished=self.save_finished and (training == 0
                                                        or epoch + 1 == self.epochs))
            if on_epoch is not None:
                info = {"epoch": float(epoch + 1), "seconds": sec, "symbols": float(n),
                        "stacked": float(stacked), "training": float(training)}
                on_epoch((info | prog.history[0][-1]) if n == 1 else info)
            if training == 0:
                break

    def _log(self, epoch: int, sec: float, stacked: int, training: int) -> None:
        if len(self.seqs) == 1:
            r = self.progress.history[0][-1]
            log.info("epoch %d/%d train_loss %.4f val_loss %.4f val_acc %.3f lr %.2g (%.1fs)",
                     epoch + 1, self.epochs, r["train_loss"], r["val_loss"], r["val_accuracy"],
                     r["lr"], r["seconds"])
        else:
            log.info("group of %d: epoch %d/%d (%.2fs, %d stacked), %d still training",
                     len(self.seqs), epoch + 1, self.epochs, sec, stacked, training)

    def results(self, base: TrainResult) -> list[TrainResult]:
        for slot, j in enumerate(self.progress.alive):
            self.finished[j] = self.trainee.best_state(slot)
        prog, out = self.progress, []
        for j, seq in enumerate(self.seqs):
            res = TrainResult(**{**base.__dict__, "state": self.finished[j],
                                 "history": prog.history[j], "top_features": []})
            res.train_sequences = len(self.train_rows[j])
            res.resumed_from_epoch = self.resumed_from
            res.best_epoch, res.stopped_early = prog.best_epoch[j], prog.stopped_early[j]
            res.epochs_run = len(res.history)
            row = next((r for r in res.history if int(r["epoch"]) == res.best_epoch), None)
            if row is None and prog.initial:  # the warm start's own weights stayed the best
                row = {"val_loss": prog.initial[j][0], "val_accuracy": prog.initial[j][1]}
            res.best_val_loss = row["val_loss"] if row else float("nan")
            res.best_val_accuracy = row["val_accuracy"] if row else float("nan")
            res.seconds = prog.t_train
            res.sequences_per_second = (prog.n_seen[j] / prog.t_train if prog.t_train > 0
                                        else float("nan"))
            set_feature_use(res, seq.features, self.trainee.input_weight_key)
            out.append(res)
        return out


def train_models(seqs: list[SequenceSet], settings: Settings, *, stacked: bool = False,
                 init_states: list[State | None] | None = None, max_epochs: int | None = None,
                 on_epoch: Callable[[dict[str, float]], None] | None = None,
                 autocast: bool | None = None, fused: bool | None = None, compact: bool = True,
                 init_lrs: list[float | None] | None = None,
                 checkpoint: AnyPath | None = None, fingerprint: str = "",
                 checkpoint_every: float = 0.0, save_finished: bool = True,
                 make_net: Callable[[int, Settings], nn.Module] | None = None,
                 val_score: Callable[[nn.Module], float] | None = None
                 ) -> list[TrainResult]:
    """Train one model per sequence set and return each one's best (lowest val loss) weights.

    ``stacked``: the models train together as one stacked module
    (:class:`~lstm_assets.core.trainees.StackedLSTMs`; the sets must share their feature count
    and lookback); otherwise exactly one set, with :class:`~lstm_assets.core.trainees.OneNet`.
    ``init_states``: starting weights per model (warm start), None = drawn from the seed;
    ``init_lrs``: each model's starting learning rate (None: ``learning_rate``), e.g. where
    the previous fit's schedule had brought it.
    ``autocast``: bf16 autocast; None = on for CUDA, off on CPU. ``compact``: a model that stops
    early leaves the stack (the results are the same either way; the arithmetic follows the
    models still training). ``on_epoch`` gets ``{"epoch", "seconds", "symbols", "stacked",
    "training"}`` after each epoch, and for one model also its history row. ``checkpoint``: the
    state is saved there after an epoch once ``checkpoint_every`` seconds have passed since the
    last save (and after the last epoch when ``save_finished``); a checkpoint that matches
    ``fingerprint`` is resumed from. ``make_net(n_features, settings)``: the network one model
    trains (default: the per-symbol LSTM); any classifier of windows with an
    ``input_weight_key`` (``core/research/families.py``); not with ``stacked``.
    ``val_score(net)``: a validation figure of the network, higher is better, that chooses the
    best epoch, the LR schedule and the stop instead of the validation loss (one model only).
    """
    if not stacked and len(seqs) != 1:
        raise ValueError(f"one model per call without stacking, got {len(seqs)} sequence sets")
    if stacked and make_net is not None:
        raise ValueError("stacked training trains the per-symbol LSTM only, not make_net")
    if stacked and val_score is not None:
        raise ValueError("a val_score judges one model; stacked models stop on their loss")
    device = pick_device(settings.device)
    if settings.num_threads > 0:
        torch.set_num_threads(settings.num_threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    use_ac = device.type == "cuda" if autocast is None else autocast
    inits = list(init_states) if init_states is not None else [None] * len(seqs)
    torch.manual_seed(settings.seed)
    trainee: Trainee = (StackedLSTMs(seqs, settings, device, use_ac, inits, fused) if stacked
                        else OneNet(seqs[0], settings, device, use_ac, inits[0],
                                    make_net or lstm_net))
    loop = _Loop(trainee, seqs, settings, device,
                 max_epochs if max_epochs is not None else settings.max_epochs,
                 checkpoint, fingerprint, checkpoint_every, save_finished, val_score)
    loop.resume()
    loop.start_lrs(init_lrs)
    if all(i is not None for i in inits):
        loop.score_start()
    loop.run(on_epoch, compact)
    base = TrainResult(state={}, device=str(device), parameters=trainee.parameters,
                       precision=trainee.precision,
                       trained_together=len(seqs) if stacked else 1,
                       init="warm" if any(i is not None for i in inits) else "cold")
    return loop.results(base)


def fit(seq: SequenceSet, settings: Settings, *, checkpoint: AnyPath | None = None,
        fingerprint: str = "", init_state: State | None = None, max_epochs: int | None = None,
        on_epoch: Callable[[dict[str, float]], None] | None = None,
        autocast: bool | None = None, init_lr: float | None = None) -> TrainResult:
    """Train one symbol's model (:func:`train_models` with one set), checkpointing after every
    epoch when ``checkpoint`` is given."""
    return train_models([seq], settings, init_states=[init_state], max_epochs=max_epochs,
                        on_epoch=on_epoch, autocast=autocast, checkpoint=checkpoint,
                        fingerprint=fingerprint, init_lrs=[init_lr])[0]


def bytes_per_symbol(seq: SequenceSet, settings: Settings) -> int:
    """A generous estimate of one symbol's GPU memory in a stacked group: its matrix and
    labels, a validation slice of windows, and the training step's activations (164 symbols x
    20 years at the default settings peak at ~10.6 GiB on an H200, ~69 MB per symbol; this
    gives ~139 MB, twice that, as a margin)."""
    rows, feats = seq.X.shape
    t, h, b = settings.lookback, settings.hidden_size, settings.batch_size
    data = rows * (feats * 4 + 8)
    val = 2 * VAL_SLICE * t * feats * 4
    act = 16 * b * t * settings.num_layers * 4 * h * 4
    return int(data + val + act)


def parallel_fits(settings: Settings) -> int:
    """How many fits this machine runs well at once: one on a GPU (a step there already trains
    many symbols together), else one per ``num_threads`` CPU cores (one per core by default:
    one fit of this model cannot use a second core, ``Settings.num_threads``)."""
    if pick_device(settings.device).type == "cuda":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_fit = settings.num_threads if settings.num_threads > 0 else (cores or 1)
    return max(1, (cores or 1) // per_fit)


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


def _groups(seqs: list[SequenceSet], settings: Settings,
            group_size: int | None) -> list[list[int]]:
    """Indices of ``seqs`` in groups that can stack: one feature count, ``group_size`` each."""
    by_width: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        by_width.setdefault(int(s.X.shape[1]), []).append(i)
    groups: list[list[int]] = []
    for idxs in by_width.values():
        size = group_size or auto_group_size([seqs[i] for i in idxs], settings)
        groups += [idxs[k:k + size] for k in range(0, len(idxs), size)]
    return groups


def fit_many(seqs: list[SequenceSet], settings: Settings, *, group_size: int | None = None,
             max_epochs: int | None = None, autocast: bool | None = None,
             init_states: list[State | None] | None = None,
             init_lrs: list[float | None] | None = None,
             on_epoch: Callable[[dict[str, float]], None] | None = None,
             compact: bool = True, fused: bool | None = None,
             checkpoint: Callable[[str], AnyPath] | None = None,
             fingerprints: list[str] | None = None,
             checkpoint_every: float | None = None) -> list[TrainResult]:
    """Train one model per sequence set, ``group_size`` symbols at a time stacked on one
    device (None: :func:`auto_group_size`); symbols with different feature counts go to
    different groups. Returns one ``TrainResult`` per input, in input order; ``seconds`` is the
    group's training time (shared by its symbols).

    ``checkpoint`` (a hex key -> path function, e.g. ``Warehouse.group_checkpoint``) with
    ``fingerprints`` (one per symbol: what its training depends on): each group saves its state
    at most every ``checkpoint_every`` seconds (None: :data:`CHECKPOINT_EVERY_S`) and when it
    finishes (unless it is the last group), under a name made from its members' fingerprints;
    a call that finds a group's checkpoint resumes it. The checkpoints are removed when every
    group has finished.
    """
    results: list[TrainResult | None] = [None] * len(seqs)
    groups = _groups(seqs, settings, group_size)
    used: list[AnyPath] = []
    for n, group in enumerate(groups, 1):
        ck, key = None, ""
        if checkpoint is not None and fingerprints is not None:
            key = hashlib.sha256(json.dumps(
                [[fingerprints[i] for i in group], max_epochs, autocast, compact,
                 fused]).encode()).hexdigest()[:20]
            ck = checkpoint(key)
            used.append(ck)
        # a finished group's state is saved for the groups after it (a kill then loses none of
        # it); the last group's would be removed again at once
        trained = train_models(
            [seqs[i] for i in group], settings, stacked=True, max_epochs=max_epochs,
            init_states=[init_states[i] if init_states else None for i in group],
            init_lrs=[init_lrs[i] if init_lrs else None for i in group], on_epoch=on_epoch,
            autocast=autocast, fused=fused, compact=compact, checkpoint=ck,
            fingerprint=key, save_finished=n < len(groups),
            checkpoint_every=CHECKPOINT_EVERY_S if checkpoint_every is None
            else checkpoint_every)
        for i, r in zip(group, trained, strict=True):
            results[i] = r
    for path in used:  # every group finished: nothing to resume
        path.unlink(missing_ok=True)
    return [r for r in results if r is not None]
