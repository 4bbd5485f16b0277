"""The training stage and its retrain policy: decide cold / warm / skip from the previous model
(:func:`plan_training`), train one symbol (:func:`run_train`) or many together
(:func:`run_train_many`), score the new and previous model on the same windows and save the
model with its config. The training loop itself is :mod:`lstm_assets.core.train`."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from lstm_assets.core.clean import RAW_FILE_KEY
from lstm_assets.core.lifecycle import versions
from lstm_assets.core.model import (
    LoadedModel,
    LSTMClassifier,
    library_versions,
    model_bytes,
    predict_proba,
    read_model_config,
    write_model,
)
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.settings import CLASSES, CLEAN_KEYS, MODEL_KEYS, Settings
from lstm_assets.core.stages.layout import Layout, read_clean, read_sequences, upstream
from lstm_assets.core.storage import parquet_metadata
from lstm_assets.core.train import TrainResult, fit, fit_many, pick_device

log = logging.getLogger(__name__)


def model_config(seq: SequenceSet, frame_info: dict[str, Any], settings: Settings,
                 summary: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    return {
        "format": "lstm_assets.model/1",
        "classes": list(CLASSES),
        "features": seq.features,
        "scaler": {"mean": seq.mean.tolist(), "scale": seq.scale.tolist(), "clip": 10.0},
        "label_rule": frame_info,
        "lookback": seq.lookback,
        "horizon": settings.horizon,
        "architecture": {"type": "lstm", "hidden_size": settings.hidden_size,
                         "num_layers": settings.num_layers, "dropout": settings.dropout},
        "settings": settings.as_dict(),
        "training": summary,
        "fingerprint": fingerprint,
        "bounds": seq.bounds.as_dict(),
        "trained_on": {
            "train_end": _day(seq.dates[seq.bounds.range("train").stop - 1]),
            "data_end": _day(seq.dates[-1]),
        },
        "versions": library_versions(),
        "code_version": versions.code_version(),
    }


def _day(d: Any) -> str:
    return str(np.datetime64(d, "D"))


# Settings whose change makes a previous model a bad starting point (labels, split, model,
# training); max_epochs is not one of them (a warm start runs warm_epochs).
WARM_KEYS = tuple(k for k in dict.fromkeys((*CLEAN_KEYS, *MODEL_KEYS)) if k != "max_epochs")


def sequence_hash(seq: SequenceSet) -> str:
    """Hash of a sequence set's content (the .npz file's bytes carry zip timestamps)."""
    h = hashlib.sha256()
    days = seq.dates.astype("datetime64[D]").astype(np.int64)
    for arr in (seq.X, seq.y, days, np.asarray(seq.bounds.as_list(), dtype=np.int64),
                seq.mean, seq.scale):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(json.dumps([seq.features, int(seq.lookback)]).encode())
    return h.hexdigest()[:16]


def input_fingerprint(layout: Layout, symbol: str, settings: Settings,
                      seq: SequenceSet | None = None) -> str:
    """Hash of the training input (sequence content) and the settings that shape training."""
    seq = seq if seq is not None else read_sequences(layout, symbol)
    return f"{sequence_hash(seq)}-{settings.fingerprint(*MODEL_KEYS)}"


@dataclass
class TrainPlan:
    """How a model is (re)trained: ``cold`` (full fit), ``warm`` (from the previous weights, a
    few epochs) or ``skip`` (inputs and settings unchanged: no training at all); and why."""

    init: str
    reason: str
    previous: dict[str, Any] | None = None
    last_cold_at: str | None = None


def _parse_time(value: Any) -> datetime | None:
    try:
        t = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _serving_config(path: Any) -> dict[str, Any] | None:
    try:
        return read_model_config(path) if path.exists() else None
    except Exception:  # noqa: BLE001 - a damaged serving model is no champion
        return None


def _drifted(layout: Layout, symbol: str, settings: Settings) -> list[str]:
    """What drifted, as the ``input_drift`` check sees it (features the serving model uses, the
    label mix); nothing when the history is too short to tell."""
    from lstm_assets.core.stages.checks import check_drift

    res = check_drift(layout, symbol, settings)
    if res["passed"]:
        return []
    meta = res["metadata"]
    return [*list(meta["drifted_features"])[:5],
            *(["label mix"] if meta["label_mix_drifted"] else [])]


def plan_training(layout: Layout, symbol: str, settings: Settings, seq: SequenceSet,
                  fingerprint: str, now: datetime) -> TrainPlan:
    """Decide cold / warm / skip from the symbol's previous model (if any)."""
    path = layout.warehouse.model(symbol)
    if not path.exists():
        return TrainPlan("cold", "no previous model")
    try:
        prev = read_model_config(path)
    except Exception as e:  # a damaged model file is replaced by a full fit
        return TrainPlan("cold", f"previous model unreadable ({e})")
    if prev.get("fingerprint") == fingerprint and not settings.retrain_unchanged:
        return TrainPlan("skip", "training data and model settings unchanged since the "
                         f"previous model (fingerprint {fingerprint})", prev)
    kept = None if settings.retrain_unchanged else versions.find_version(
        layout.warehouse, symbol, fingerprint)
    if kept is not None:
        decision = kept.get("decision") or {}
        why = (f"not promoted ({decision.get('reason', 'see its record')})"
               if not decision.get("promote") else "since replaced by a promotion by hand")
        return TrainPlan("skip", f"model version {kept['version']} was trained on these inputs "
                         f"and settings, {why}; the serving model stays", prev)
    if settings.warm_epochs <= 0 or settings.full_retrain_every_days <= 0:
        return TrainPlan("cold", "warm starts disabled (warm_epochs or full_retrain_every_days"
                         " is 0)", prev)
    if prev.get("features") != seq.features:
        old, new = set(prev.get("features") or []), set(seq.features)
        diff = (f"+{sorted(new - old)} -{sorted(old - new)}" if old != new
                else "same columns, new order")
        return TrainPlan("cold", f"feature schema changed ({diff})", prev)
    arch = {"type": "lstm", "hidden_size": settings.hidden_size,
            "num_layers": settings.num_layers, "dropout": settings.dropout}
    old_arch = {**(prev.get("architecture") or {}), "lookback": prev.get("lookback")}
    new_arch = {**arch, "lookback": seq.lookback}
    moved = [f"{k} {old_arch.get(k)} -> {v}" for k, v in new_arch.items() if old_arch.get(k) != v]
    if moved:
        return TrainPlan("cold", f"architecture changed: {', '.join(moved)}", prev)
    old_settings = prev.get("settings") or {}
    changed = [k for k in WARM_KEYS if old_settings.get(k) != getattr(settings, k)]
    if changed:
        return TrainPlan("cold", f"settings changed: {', '.join(changed)}", prev)
    retrain = prev.get("retrain") or {}
    last_cold = _parse_time(retrain.get("last_cold_at"))
    if last_cold is None:
        return TrainPlan("cold", "previous model has no record of its last full fit", prev)
    age = (now - last_cold).total_seconds() / 86400
    if age >= settings.full_retrain_every_days:
        return TrainPlan("cold", f"last full fit {age:.1f} days ago (full retrain every "
                         f"{settings.full_retrain_every_days} days)", prev)
    drifted = _drifted(layout, symbol, settings) if settings.cold_on_drift else []
    if drifted:
        return TrainPlan("cold", f"inputs drifted from the training rows ({', '.join(drifted)};"
                         " cold_on_drift)", prev)
    return TrainPlan("warm", f"same features, architecture and settings; last full fit "
                     f"{age:.1f} days ago (< {settings.full_retrain_every_days})", prev,
                     last_cold_at=last_cold.isoformat())


def split_metrics(net: Any, X: np.ndarray, seq: SequenceSet, lookback: int) -> dict[str, float]:
    """Accuracy and log loss on the val and test windows of ``seq`` (for retrain comparisons;
    never used to pick a model)."""
    out: dict[str, float] = {}
    for split in ("val", "test"):
        rows = seq.end_rows(split)
        if len(rows) == 0:
            continue
        loss, correct = _window_losses(net, X, seq.y, rows, lookback)
        out[f"{split}_accuracy"] = float(correct.mean())
        out[f"{split}_log_loss"] = float(loss.mean())
    return out


def _previous_on_new_splits(prev: LoadedModel | None, frame: pd.DataFrame | None,
                            seq: SequenceSet) -> dict[str, float] | None:
    """The previous model, with its own scaler, scored on the new val/test windows."""
    if prev is None or frame is None:
        return None
    if any(f not in frame.columns for f in prev.config["features"]):
        return None
    if len(frame) != len(seq.X) or prev.lookback != seq.lookback:
        return None
    return split_metrics(prev.net, prev.scale(frame), seq, prev.lookback)


@dataclass
class _TrainJob:
    """What one symbol's training needs, read and decided before any fitting."""

    symbol: str
    seq: SequenceSet
    frame: pd.DataFrame | None
    """The clean frame, kept only to score a previous model (many jobs can wait at once)."""
    band_k: float
    fingerprint: str
    plan: TrainPlan
    now: datetime
    prev_model: LoadedModel | None = None
    init_state: dict[str, Any] | None = None
    max_epochs: int | None = None
    init_lr: float | None = None
    """A warm start's first learning rate: where the previous fit's schedule ended."""
    skipped: dict[str, Any] | None = None
    """The metadata to return when the plan is to skip (nothing to train)."""


def _prepare_train(layout: Layout, symbol: str, settings: Settings,
                   init_state: dict[str, Any] | None, max_epochs: int | None,
                   now: datetime | None) -> _TrainJob:
    seq = read_sequences(layout, symbol)
    fp = input_fingerprint(layout, symbol, settings, seq)
    now = now or datetime.now(UTC)
    out = layout.warehouse.model(symbol)
    if init_state is not None:  # the serving model (if any) is still the champion to beat
        plan = TrainPlan("warm", "initial weights given by the caller",
                         _serving_config(out), last_cold_at=None)
    else:
        plan = plan_training(layout, symbol, settings, seq, fp, now)
    job = _TrainJob(symbol, seq, None, float("nan"), fp, plan, now, init_state=init_state,
                    max_epochs=max_epochs)
    if plan.init == "skip":
        prev = plan.previous or {}
        meta = {k: v for k, v in (prev.get("training") or {}).items() if k != "history"}
        meta.update({"init": "skipped", "init_reason": plan.reason, "skipped": True,
                     "trained_at": (prev.get("retrain") or {}).get("trained_at"),
                     "epochs_run": 0, "path": str(out)})
        log.info("[%s] training skipped: %s", symbol, plan.reason)
        job.skipped = meta
        return job
    # the clean frame: whole when a previous model is to be scored (any column it may use),
    # else only the two columns band_k needs
    frame = read_clean(layout, symbol,
                        columns=None if plan.previous is not None else ["vol_est", "band"])
    job.band_k = _band_k(frame)
    if plan.previous is not None:
        job.frame = frame
        try:
            job.prev_model = LoadedModel.load(out)
        except Exception as e:  # unreadable weights: train from scratch, say so
            log.warning("[%s] previous model unreadable, full fit: %s", symbol, e)
            job.plan = TrainPlan("cold", f"previous model weights unreadable ({e})",
                                 plan.previous)
    if job.plan.init == "warm" and job.init_state is None:
        assert job.prev_model is not None
        job.init_state = {k: v.detach().clone()
                          for k, v in job.prev_model.net.state_dict().items()}
        if job.max_epochs is None:
            job.max_epochs = min(settings.warm_epochs, settings.max_epochs)
        history = (job.prev_model.config.get("training") or {}).get("history") or []
        job.init_lr = history[-1].get("lr") if history else None
    log.info("[%s] %s fit: %s", symbol, job.plan.init, job.plan.reason)
    return job


def _finish_train(layout: Layout, settings: Settings, job: _TrainJob,
                  res: TrainResult) -> dict[str, Any]:
    """Score the new (and previous) model on the new splits and save it with its config."""
    seq, plan, now = job.seq, job.plan, job.now
    label_rule = {"flat_rule": settings.flat_rule, "vol_halflife": settings.vol_halflife,
                  "band_k": job.band_k, "horizon": settings.horizon}
    summary = res.summary()
    summary["history"] = res.history
    cfg = model_config(seq, label_rule, settings, summary, job.fingerprint)
    # scored where it trained: on one CPU thread scoring costs ~0.6 s a 20-year symbol
    device = pick_device(settings.device)
    net = LSTMClassifier(seq.X.shape[1], settings.hidden_size, settings.num_layers,
                         settings.dropout)
    net.load_state_dict(res.state)
    new_scores = split_metrics(net.to(device), seq.X, seq, seq.lookback)
    prev_cfg = plan.previous or {}
    if job.prev_model is not None:
        job.prev_model.net.to(device)
    prev_scores = _previous_on_new_splits(job.prev_model, job.frame, seq)
    cfg["retrain"] = {
        "init": plan.init, "reason": plan.reason, "trained_at": now.isoformat(),
        "last_cold_at": now.isoformat() if plan.init == "cold" else plan.last_cold_at,
        "previous": None if not prev_cfg else {
            "init": (prev_cfg.get("retrain") or {}).get("init", "cold"),
            "trained_at": (prev_cfg.get("retrain") or {}).get("trained_at"),
            "epochs_run": (prev_cfg.get("training") or {}).get("epochs_run"),
            "training_seconds": (prev_cfg.get("training") or {}).get("seconds"),
        },
        "comparison": None if prev_scores is None else {
            "windows": "the new model's val and test splits",
            "previous": prev_scores, "new": new_scores,
        },
        "new_scores": new_scores,
    }
    cfg["trained_on"]["raw_file_hash"] = _raw_hash(layout, job.symbol)
    decision = _challenge(job, net, seq, settings)
    cfg["retrain"]["promotion"] = decision
    blob = model_bytes(res.state, cfg)
    wh = layout.warehouse
    out = wh.model(job.symbol)
    version = versions.save_version(wh, job.symbol, blob, {
        "created_at": now.isoformat(), "fingerprint": job.fingerprint,
        "init": plan.init, "trained_on": cfg["trained_on"], "settings": settings.as_dict(),
        "code_version": cfg["code_version"], "scores": new_scores, "decision": decision,
        **({"promoted_at": now.isoformat()} if decision["promote"] else {}),
    })
    if decision["promote"]:
        write_model(out, blob, cfg)
        serving = version
    else:  # the champion keeps serving: its files are not rewritten
        log.warning("[%s] model version %s not promoted: %s", job.symbol, version,
                    decision["reason"])
        serving = job.prev_model.version if job.prev_model is not None else None
    pruned = versions.prune(wh, job.symbol, settings.keep_model_versions, serving)
    # the model is complete: a checkpoint of this (or an interrupted earlier) fit is not needed
    wh.checkpoint(job.symbol).unlink(missing_ok=True)
    # what serves first: a challenger kept out is described as such, with its own file
    meta: dict[str, Any] = {
        "promoted": decision["promote"], "promotion_reason": decision["reason"],
        "serving_version": serving, "version": version,
        "path": str(out if decision["promote"] else versions.version_path(wh, job.symbol,
                                                                         version))}
    meta.update(res.summary())
    meta.update({"init": plan.init, "init_reason": plan.reason, "skipped": False,
                 "trained_at": now.isoformat(), "versions_pruned": pruned})
    for who in ("champion", "challenger"):
        for k, v in (decision.get(who) or {}).items():
            meta[f"{who}_{k}"] = v
    for k, v in new_scores.items():
        meta[f"new_{k}"] = v
    for k, v in (prev_scores or {}).items():
        meta[f"previous_{k}"] = v
    meta["history"] = res.history
    return meta


def _raw_hash(layout: Layout, symbol: str) -> str | None:
    """The raw file's content hash recorded in the clean frame (None: not recorded)."""
    info = parquet_metadata(upstream(layout.warehouse.clean_frame(symbol), "clean_frames",
                                     symbol), RAW_FILE_KEY)
    return (info or {}).get("hash")


def _window_losses(net: Any, X: np.ndarray, y: np.ndarray, rows: np.ndarray,
                   lookback: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-window log loss and correctness of ``net`` on the windows ending at ``rows``."""
    p = np.clip(predict_proba(net, X, rows, lookback).astype(np.float64), 1e-7, 1)
    yy = y[rows].astype(np.int64)
    loss = -np.log(p[np.arange(len(yy)), yy] / p.sum(1))
    return loss, (p.argmax(1) == yy).astype(np.float64)


def challenge_rows(seq: SequenceSet, champion: dict[str, Any], settings: Settings) -> np.ndarray:
    """The windows the challenger and the champion are compared on: the new test split's
    labelled windows that neither trained on (after the champion's last training label), the
    last ``promotion_window`` of them (0: all)."""
    rows = seq.end_rows("test")
    train_end = (champion.get("trained_on") or {}).get("train_end")
    if train_end is not None:
        cut = int(np.searchsorted(seq.dates, np.datetime64(train_end, "D"), side="right"))
        rows = rows[rows >= cut + settings.horizon]
    if settings.promotion_window > 0:
        rows = rows[-settings.promotion_window:]
    return rows


def _challenge(job: _TrainJob, net: Any, seq: SequenceSet, settings: Settings
               ) -> dict[str, Any]:
    """Promote the new model (the challenger) unless it is significantly worse than the
    serving one on the same recent windows (:func:`versions.challenger_decision`)."""
    champ = job.prev_model
    if champ is None or job.frame is None:
        return {"promote": True, "reason": "no serving model to compare with"}
    if (any(f not in job.frame.columns for f in champ.config["features"])
            or len(job.frame) != len(seq.X)):
        return {"promote": True, "reason": "the serving model cannot score the new windows "
                "(its features are gone from the clean frame); the challenger is promoted"}
    rows = challenge_rows(seq, champ.config, settings)
    c_loss, c_ok = _window_losses(champ.net, champ.scale(job.frame), seq.y, rows,
                                  champ.lookback)
    n_loss, n_ok = _window_losses(net, seq.X, seq.y, rows, seq.lookback)
    return versions.challenger_decision(c_loss, n_loss, c_ok, n_ok, settings.promotion_level)


def run_train(layout: Layout, symbol: str, settings: Settings,
              on_epoch: Callable[[dict[str, float]], None] | None = None,
              init_state: dict[str, Any] | None = None,
              max_epochs: int | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Train (cold), fine-tune (warm) or skip the symbol's model; see :func:`plan_training`.

    The metadata says ``init`` (cold / warm / skipped) and ``init_reason``. When a previous
    model existed, both it and the new one are scored on the same (new) val/test windows and
    the figures are stored in the model config under ``retrain.comparison``.
    """
    job = _prepare_train(layout, symbol, settings, init_state, max_epochs, now)
    if job.skipped is not None:
        return job.skipped
    ck = layout.warehouse.checkpoint(symbol)
    res = fit(job.seq, settings, checkpoint=ck, fingerprint=f"{job.fingerprint}:{job.plan.init}",
              on_epoch=on_epoch, init_state=job.init_state, max_epochs=job.max_epochs,
              init_lr=job.init_lr)
    return _finish_train(layout, settings, job, res)


def stacks_symbols(settings: Settings, n_symbols: int) -> bool:
    """Whether a step of ``n_symbols`` trains them together (:func:`run_train_many`): always
    when ``stack_symbols`` > 1, on a GPU when it is 0 (auto), never when it is 1."""
    if n_symbols < 2 or settings.stack_symbols == 1:
        return False
    return settings.stack_symbols > 1 or pick_device(settings.device).type == "cuda"


def run_train_many(layout: Layout, symbols: list[str], settings: Settings, *,
                   on_epoch: Callable[[dict[str, float]], None] | None = None,
                   now: datetime | None = None) -> dict[str, dict[str, Any] | Exception]:
    """:func:`run_train` for many symbols, the ones that need training trained together.

    One symbol's 64-window batches leave a GPU nearly idle (BENCHMARKS.md, *GPU*), so the cold
    fits go to
    :func:`~lstm_assets.core.train.fit_many` in groups of ``stack_symbols`` (0: as many as
    the device's free memory holds), then the warm starts likewise. Skips, plans, artifacts and
    metadata are those of :func:`run_train`. Each group checkpoints
    (``Warehouse.group_checkpoint``, named by its members' fingerprints, at most every
    ``train.CHECKPOINT_EVERY_S``): a killed step resumes its groups where they were
    saved. Returns each symbol's metadata, or the exception that symbol raised
    (the others go on). If a group's training fails as a whole (e.g. out of GPU memory), its
    symbols are left out of the result, for the caller to train one at a time.
    """
    results: dict[str, dict[str, Any] | Exception] = {}
    jobs: list[_TrainJob] = []
    for sym in symbols:
        try:
            job = _prepare_train(layout, sym, settings, None, None, now)
        except Exception as e:  # noqa: BLE001 - this symbol fails alone, as in run_train
            results[sym] = e
            continue
        if job.skipped is not None:
            results[sym] = job.skipped
        else:
            jobs.append(job)
    # cold fits and warm starts differ in initial weights and epochs: one call each
    for init in ("cold", "warm"):
        group = [j for j in jobs if j.plan.init == init]
        if not group:
            continue
        t0 = time.perf_counter()
        try:
            trained = fit_many([j.seq for j in group], settings,
                               group_size=settings.stack_symbols or None,
                               max_epochs=group[0].max_epochs,
                               init_states=[j.init_state for j in group],
                               init_lrs=[j.init_lr for j in group], on_epoch=on_epoch,
                               checkpoint=layout.warehouse.group_checkpoint,
                               fingerprints=[f"{j.fingerprint}:{j.plan.init}" for j in group])
        except Exception as e:  # noqa: BLE001 - the caller trains these one at a time
            log.warning("training %d symbols together failed (%s: %s); they are left to "
                        "one-at-a-time training", len(group), type(e).__name__, e)
            continue
        log.info("%s fits of %d symbols together: %.1f s", init, len(group),
                 time.perf_counter() - t0)
        for job, res in zip(group, trained, strict=True):
            try:
                results[job.symbol] = _finish_train(layout, settings, job, res)
            except Exception as e:  # noqa: BLE001 - e.g. a failed write: this symbol alone
                results[job.symbol] = e
    return results



def _band_k(frame: pd.DataFrame) -> float:
    ok = frame["vol_est"] > 0
    k = (frame.loc[ok, "band"] / frame.loc[ok, "vol_est"]).median()
    return float(k) if np.isfinite(k) else float("nan")
