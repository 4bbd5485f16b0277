"""Every pipeline knob and its default, in one place.

The Dagster layer builds its config class from this dataclass (see ``lstm_assets.defs.resources``),
so a default is written exactly once. Defaults for the model and training are the old script's:
2 LSTM layers x 128 hidden units, dropout 0.2, 30-step lookback, 3 classes, Adam, a
plateau LR scheduler, early stopping on validation loss, a chronological 60/20/20 split. One
addition: a group lasso on the first layer's input weights (``input_group_lasso``; README,
"The model").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

CLASSES: tuple[str, ...] = ("DOWN", "FLAT", "UP")


@dataclass(frozen=True)
class Settings:
    # ---- labels -------------------------------------------------------------------------
    horizon: int = 1
    """Label horizon h in trading days: day t's label is the move from close[t] to close[t+h]."""
    flat_rule: str = "vol_quantile"
    """How the FLAT band is drawn around zero (docs in ``core.clean.label_frame``):
    ``vol_quantile`` (band = k x trailing volatility, k fit on the train split so that
    ``flat_share`` of train labels are FLAT), ``vol_fixed`` (band = ``flat_k`` x trailing
    volatility) or ``abs_fixed`` (band = +-``flat_abs`` log return, the old script's rule)."""
    flat_share: float = 1 / 3
    flat_k: float = 0.43
    flat_abs: float = 0.001
    vol_halflife: int = 20
    """Half-life in days of the EWMA volatility used by the ``vol_*`` FLAT rules."""

    # ---- reading raw files ------------------------------------------------------------
    intraday: str = "aggregate"
    """A file with several bars a day: ``aggregate`` them to daily bars (first open, max high,
    min low, last close, summed volume; noted) or ``refuse`` the file with a clear message."""
    excel_dates: str = "convert"
    """A date column of Excel serial numbers (e.g. 41134 = 2012-08-13): ``convert`` them
    (noted) or ``refuse`` the file with a message naming Excel serial dates."""

    # ---- corporate actions and price jumps ------------------------------------------------
    split_tolerance: float = 0.03
    """A one-day price move is taken for a split (or reverse split) when its price ratio is
    within this relative tolerance of a split ratio (2:1, 3:2, 3:1, ... 1:2, 1:5, 1:10); prices
    and volume before it are back-adjusted and the adjustment recorded."""
    jump_log_return: float = 0.3
    """A one-day |log return| at least this large is a price jump whatever the volatility."""
    jump_sigmas: float = 20.0
    """A one-day |log return| at least this many robust standard deviations (1.4826 x the
    median absolute deviation of the file's daily log returns) is a price jump too: a bad print
    or a corporate action on a calm stock. Daily returns are fat-tailed (about Student-t with 3-4
    degrees of freedom): a real move passes 10 robust sd once in 3-10 years per stock (an
    earnings day, which belongs in training and scoring), 20 once in 20-150 years (Student-t
    tails, 252 days a year)."""
    jump_policy: str = "exclude"
    """A price jump that is no split: ``exclude`` (its day's label and every window that spans
    it are left out of training and scoring), ``keep`` (used as it is) or ``fail`` the file.
    Always noted."""

    # ---- cleaning -----------------------------------------------------------------------
    max_ffill_days: int = 5
    """Interior gaps of at most this many days are forward-filled; longer gaps drop the rows."""
    max_missing_share: float = 0.3
    """A feature column missing on more than this share of rows is dropped."""

    # ---- split --------------------------------------------------------------------------
    train_frac: float = 0.6
    val_frac: float = 0.2
    embargo: int = 0
    """Extra days dropped between splits; the effective gap is max(embargo, horizon)."""
    lookback: int = 30

    # ---- model --------------------------------------------------------------------------
    hidden_size: int = 128
    num_layers: int = 2
    dropout: float = 0.2

    # ---- training -----------------------------------------------------------------------
    max_epochs: int = 60
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lr_factor: float = 0.5
    lr_patience: int = 3
    early_stop_patience: int = 8
    min_delta: float = 1e-4
    grad_clip: float = 1.0
    class_weighted: bool = True
    input_noise: float = 0.0
    """Std of Gaussian noise added to the scaled inputs of each training batch (0 = off)."""
    input_dropout: float = 0.0
    """Share of input features zeroed per training window (the same features on every step of
    the window), a regularizer against memorizing the training windows (0 = off)."""
    input_group_lasso: float = 5.0
    """Strength of a group-lasso penalty on the first LSTM layer's input weights, one group per
    input feature, applied as a proximal step after each optimizer step (0 = off). It drives the
    weights of features that do not help to exactly zero: feature selection inside the model."""
    seed: int = 42
    device: str = "auto"
    """``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``."""
    num_threads: int = 1
    """CPU threads for torch per training/scoring process (0 = torch's default, one per core).
    One is fastest for this model (64-window batches: too little work per op to share; the
    bench's training section times torch's default beside it), with identical results. To use
    more cores, train several symbols in separate processes."""

    stack_symbols: int = 0
    """How many symbols' models one step trains together (stacked weights and batched matmuls,
    ``core.train.fit_many``): 0 = auto (on a GPU as many as its free memory holds, on a CPU one at a
    time), 1 = one at a time (per-symbol ``fit``), N > 1 = up to N together on any device. Both
    checkpoint (a symbol after every epoch, a group at most every minute) and resume after a
    kill. The models equal one-at-a-time training up to float rounding and dropout masks; on a
    GPU many symbols train several times faster together (BENCHMARKS.md, *GPU*)."""

    # ---- evaluation ---------------------------------------------------------------------
    cost_bps: float = 5.0
    """Transaction cost per unit of turnover, in basis points, for the trading view."""
    bootstrap_samples: int = 1000
    walk_forward_folds: int = 0
    """When > 0, the report adds an expanding-window walk-forward evaluation over this many
    folds (one extra model per fold), beside the single 60/20/20 split."""

    # ---- retraining / signals -------------------------------------------------------------
    warm_epochs: int = 5
    """Epochs of a warm-start retrain (initialised from the symbol's previous model, used when
    its feature list, architecture and settings are unchanged); 0 = never warm-start."""
    full_retrain_every_days: int = 7
    """A full (cold) fit at least this often: a warm start is used only while the last cold fit
    behind the previous model is younger than this many days; 0 = always a full fit."""
    retrain_unchanged: bool = False
    """Train even when the model's inputs and settings are unchanged (default: skip, no cost)."""
    signal_min_confidence: float = 0.45
    """``latest_signals`` abstains when the top class probability is below this (unless a
    threshold is chosen on validation, ``choose_threshold``)."""
    signal_source: str = "per_symbol"
    """Which model serves ``latest_signals``: ``per_symbol`` (each symbol's own LSTM, the
    ``lstm_model`` assets) or ``pooled`` (the ``pooled_model`` asset of ``pooled_family``: one
    network over all symbols, ``core/research/serving.py``)."""
    pooled_family: str = "lstm"
    """The family the ``pooled_model`` asset trains and, with ``signal_source=pooled``, serves:
    ``lstm``, ``gru``, ``alstm`` or ``linear``."""
    raw_max_age_days: int = 5
    """Freshness check: a raw file whose last date is older than this many days warns."""
    model_max_age_days: float = 8.0
    """Freshness check: a serving model trained longer ago than this many days warns (the
    nightly retrain makes a full fit every ``full_retrain_every_days``)."""

    # ---- model lifecycle ------------------------------------------------------------------
    promotion_level: float = 0.05
    """A retrained model (the challenger) replaces the serving one (the champion) unless it is
    significantly worse on the recent windows neither trained on: a one-sided test of the
    per-window log-loss difference at this level (0 = always promote)."""
    promotion_window: int = 0
    """How many of those most recent windows the promotion test uses (0 = all of the test
    split after the champion's last training label)."""
    keep_model_versions: int = 10
    """Model versions kept per symbol (``model_versions/``); older ones are pruned, never the
    serving one (0 = keep all)."""
    drift_window: int = 60
    """Drift checks compare the last this many rows of each feature (and labels) with the
    training rows."""
    drift_threshold: float = 0.25
    """A feature (or the label mix) whose population stability index exceeds this has drifted
    (0.1-0.25: a moderate shift, above 0.25: a significant one)."""
    cold_on_drift: bool = False
    """A symbol with a drifted feature retrains cold (a full fit) instead of warm-starting."""
    choose_threshold: bool = True
    """The ABSTAIN threshold of each symbol is chosen on its validation split (the Wilson lower
    bound of the kept signals' accuracy, at least ``threshold_min_coverage`` kept); otherwise
    ``signal_min_confidence`` is used for every symbol."""
    threshold_min_coverage: float = 0.2
    """The least share of validation windows a chosen threshold keeps."""

    def effective_gap(self) -> int:
        return max(self.embargo, self.horizon)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self, *names: str) -> str:
        """A short stable hash of the named settings (all when none are named)."""
        d = self.as_dict()
        chosen = {k: d[k] for k in (names or sorted(d))}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["max_epochs=5", "device=cpu"]`` (the CLI's ``--set KEY=VALUE``) -> typed overrides of
    :class:`Settings`; an unknown key or a value of the wrong type is a ``SystemExit`` naming it."""
    defaults = Settings()
    fields = Settings.__dataclass_fields__
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, val = pair.partition("=")
        if key not in fields:
            raise SystemExit(f"unknown setting {key!r}; known: {', '.join(fields)}")
        kind = type(getattr(defaults, key))
        if kind is bool:
            out[key] = val.strip().lower() in ("1", "true", "yes", "on")
            continue
        try:
            out[key] = kind(val)
        except ValueError:
            raise SystemExit(f"setting {key}={val!r}: expected a {kind.__name__}") from None
    return out


# Which settings each stage depends on: a stage's output changes only when these (or its input)
# change. Used for data versions and to refuse to resume a checkpoint made under other settings.
CLEAN_KEYS = (
    "horizon", "flat_rule", "flat_share", "flat_k", "flat_abs", "vol_halflife",
    "max_ffill_days", "max_missing_share", "train_frac", "val_frac", "embargo", "lookback",
    "intraday", "excel_dates", "split_tolerance", "jump_log_return", "jump_sigmas",
    "jump_policy",
)
SEQUENCE_KEYS = CLEAN_KEYS
MODEL_KEYS = (
    "lookback", "hidden_size", "num_layers", "dropout", "max_epochs", "batch_size",
    "learning_rate", "weight_decay", "lr_factor", "lr_patience", "early_stop_patience",
    "min_delta", "grad_clip", "class_weighted", "input_noise", "input_dropout",
    "input_group_lasso", "seed",
)
