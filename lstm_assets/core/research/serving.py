"""A pooled model family fit once on the whole universe for serving, and saved as one file.

:func:`fit_pooled` fits one family of the comparison (``lstm``, ``gru``, ``alstm``: one network
over every symbol's windows with a symbol embedding; ``linear``: multinomial logistic
regression on the last five days' features) on all symbols' clean frames, with the
comparison's own machinery and defaults (:func:`~lstm_assets.core.research.panel.build_panel`,
:func:`~lstm_assets.core.research.panel.pooled_set`,
:func:`~lstm_assets.core.research.families.make_net_factory`,
:func:`~lstm_assets.core.train.train_models`,
:data:`~lstm_assets.core.research.compare.POOLED_SETTINGS` and its batch-size rule).

**Training and validation dates** (:func:`serving_fold`). Over the universe's sorted dates, the
first date with a full window is ``lookback - 1``; the last ``horizon`` dates have no forward
return yet and are no sample. The last ``val_days`` labelled dates (default: the ``val_frac``
share of the labelled dates) are the validation block the training is early-stopped on, and
its figures are recorded; ``gap = max(embargo, horizon)`` dates before it are dropped, so no
training label looks into it (as in
:func:`~lstm_assets.core.research.panel.walk_forward_folds`); every date before the gap is a
training date. There is no test block: the comparison's walk-forward folds are where a family
is judged; this is the model that serves. Its validation figures are of the block that chose
its epoch (the ``linear`` family: its L2 strength), so they lean optimistic.

**Scaling.** Each symbol's features are scaled by a scaler fit on its own training rows (rows
a price jump excluded left out), clipped to +-``CLIP`` and NaN set to 0, exactly as
``pooled_set`` does; the fit checks that its stored scalers reproduce ``pooled_set``'s matrix.
A symbol without two clean training rows gets no scaler and is not served.

**The file** (:meth:`PooledModel.save`): one ``.safetensors`` file, the weights plus a JSON
config in the header (:data:`CONFIG_KEYS`), written atomically with
:func:`~lstm_assets.core.storage.write_bytes`; reading it never runs code (no pickle).

:meth:`PooledModel.predict_latest` scores the window ending on a clean frame's last row with
that symbol's stored scaler and embedding index, on the model's device (``load(path,
device="auto")`` puts it on CUDA when present).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import nn

from lstm_assets.core.model import (
    content_version,
    library_versions,
    predict_proba,
    read_model_config_bytes,
)
from lstm_assets.core.research import families as fam
from lstm_assets.core.research import stats
from lstm_assets.core.research.compare import (
    POOLED_SETTINGS,
    majority_labels,
    pooled_batch,
)
from lstm_assets.core.research.panel import Fold, Panel, PanelSet, build_panel, pooled_set
from lstm_assets.core.sequences import CLIP
from lstm_assets.core.settings import CLASSES, Settings
from lstm_assets.core.storage import AnyPath, read_bytes, to_json, write_bytes
from lstm_assets.core.train import TrainResult, pick_device, train_models

KIND = "pooled_model"
"""The config's ``kind``: tells a pooled model file from a per-symbol one."""
FORMAT = 1
"""Version of the file's config layout."""
SERVABLE: tuple[str, ...] = (*fam.DEEP_FAMILIES, "linear")
"""The families :func:`fit_pooled` fits for serving."""
MIN_DATES = 20
"""Fewest training dates and validation dates a serving fit takes."""
CONFIG_KEYS: tuple[str, ...] = (
    "kind", "format", "family", "architecture", "lookback", "features", "symbols", "scalers",
    "left_out", "label", "horizon", "target", "settings", "overrides", "validation", "training",
    "dates", "trained_at", "library_versions")
"""The keys of a pooled model file's config:

- ``kind`` (:data:`KIND`), ``format`` (:data:`FORMAT`), ``family`` (one of :data:`SERVABLE`);
- ``architecture``: ``family``, ``n_features`` (the features plus the symbol id column),
  ``n_symbols``, ``embedding``, ``hidden_size``, ``num_layers``, ``dropout`` and, for
  ``linear``, ``lags``: what rebuilds the network before its weights are loaded;
- ``lookback``; ``features`` (the input columns in order, without the id column);
- ``symbols``: symbol -> embedding index (the id column's value);
- ``scalers``: symbol -> ``{"mean": [...], "scale": [...]}`` over ``features``;
- ``left_out``: the symbols given without two clean training rows (no scaler: not served);
- ``label``: ``rule`` (``vol_quantile``), ``flat_share``, ``horizon``, ``target`` and ``k``
  (symbol -> the band's multiple of trailing volatility, fit on its training rows);
  ``horizon`` and ``target`` also at the top level;
- ``settings``: the settings trained with (the pooled defaults applied, the batch size set);
  ``overrides``: the knobs set on purpose, which win over the pooled defaults;
- ``validation``: ``accuracy``, ``majority_accuracy`` (each symbol's most frequent training
  label), ``log_loss``, ``rank_ic`` / ``rank_ic_t`` / ``rank_ic_p`` (mean daily rank IC of
  P(UP) - P(DOWN), Newey-West t and p; None without 2 dates of 5 or more symbols),
  ``ic_dates`` (dates with an IC),
  ``dates`` and ``rows`` (validation dates and windows), ``per_symbol`` (symbol -> rows,
  accuracy, majority accuracy);
- ``training``: the training loop's summary (epochs, best epoch, seconds, device, ...), or
  the chosen L2 strength for ``linear``;
- ``dates``: ``train`` and ``val`` (first, last ISO dates, inclusive), ``gap`` (dates dropped
  between them), ``last`` (the universe's last date);
- ``trained_at`` (UTC ISO time), ``library_versions``.
"""


# ---- dates ----------------------------------------------------------------------------------

def serving_fold(dates: np.ndarray, settings: Settings, horizon: int = 1,
                 val_days: int | None = None) -> Fold:
    """The serving fit's training and validation dates over the sorted unique ``dates`` (see the
    module doc); its test range is empty. ``val_days``: validation dates (None: the
    ``settings.val_frac`` share of the labelled dates)."""
    d = np.unique(np.asarray(dates).astype("datetime64[D]"))
    gap = max(settings.embargo, horizon)
    first = settings.lookback - 1
    stop = len(d) - horizon  # dates from here on have no h-day forward return
    n_val = int((stop - first) * settings.val_frac) if val_days is None else int(val_days)
    val_lo = stop - n_val
    train_hi = val_lo - gap - 1
    if n_val < MIN_DATES or train_hi - first < MIN_DATES:
        raise ValueError(f"a serving fit needs at least {MIN_DATES} training and {MIN_DATES} "
                         f"validation dates; {len(d)} dates in all give "
                         f"{max(train_hi - first + 1, 0)} and {max(n_val, 0)}")
    after = d[stop - 1] + np.timedelta64(1, "D")
    return Fold(1, (d[first], d[train_hi]), (d[val_lo], d[stop - 1]), (after, d[stop - 1]))


# ---- the linear family as a network ---------------------------------------------------------

class LinearWindowNet(nn.Module):
    """Multinomial logistic regression on a pooled window's rows ``t - lag`` for each of
    ``lags`` (lag 0's columns first, as :func:`~lstm_assets.core.research.families.
    tree_features`), the symbol id column left out: the ``linear`` family as a module, so it
    saves and predicts like the networks. ``n_features`` counts the id column."""

    input_weight_key = "linear.weight"

    def __init__(self, n_features: int, lookback: int,
                 lags: tuple[int, ...] = fam.SHALLOW_LAGS) -> None:
        super().__init__()
        if lookback <= max(lags):
            raise ValueError(f"lookback {lookback} is too short for lags {lags}")
        self.lags = tuple(int(lag) for lag in lags)
        self.steps = [lookback - 1 - lag for lag in self.lags]
        self.linear = nn.Linear(len(self.lags) * (n_features - 1), len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[..., :-1]
        return self.linear(torch.cat([x[:, s] for s in self.steps], dim=1))


def _fit_linear(pset: PanelSet, settings: Settings) -> tuple[nn.Module, dict[str, Any]]:
    """The ``linear`` family fit as the comparison fits it, its weights put in a
    :class:`LinearWindowNet`."""
    X = pset.X[:, :-1]
    tr, va = pset.end_rows("train"), pset.end_rows("val")
    lags = fam.SHALLOW_LAGS
    net = LinearWindowNet(pset.X.shape[1], pset.lookback, lags)
    t0 = time.perf_counter()
    model = fam.fit_linear(fam.tree_features(X, tr, lags), pset.y[tr].astype(np.int64),
                           fam.tree_features(X, va, lags), pset.y[va].astype(np.int64),
                           seed=settings.seed)
    if list(model.classes_) != list(range(len(CLASSES))):
        raise ValueError(f"the training labels hold classes {list(model.classes_)}, not all "
                         f"of {CLASSES}: no linear model to serve")
    with torch.no_grad():
        net.linear.weight.copy_(torch.as_tensor(model.coef_, dtype=torch.float32))
        net.linear.bias.copy_(torch.as_tensor(model.intercept_, dtype=torch.float32))
    info = {"l2_inverse_strength": float(model.C), "iterations": int(np.max(model.n_iter_)),
            "seconds": time.perf_counter() - t0, "train_sequences": int(len(tr))}
    return net, info


def _fit_deep(family: str, pset: PanelSet, settings: Settings, embedding: int,
              on_epoch: Callable[[dict[str, float]], None] | None
              ) -> tuple[nn.Module, dict[str, Any]]:
    """A pooled network trained by the project's loop (best validation-loss weights)."""
    make = fam.make_net_factory(family, n_symbols=len(pset.symbols), emb_dim=embedding)
    res: TrainResult = train_models([pset], settings, make_net=make, on_epoch=on_epoch)[0]
    net = make(pset.X.shape[1], settings)
    net.load_state_dict(res.state)
    return net, res.summary()


def build_net(config: Mapping[str, Any]) -> nn.Module:
    """The untrained network a config's ``architecture`` describes."""
    arch = config["architecture"]
    if arch["family"] == "linear":
        return LinearWindowNet(int(arch["n_features"]), int(config["lookback"]),
                               tuple(arch["lags"]))
    shape = Settings().replace(hidden_size=int(arch["hidden_size"]),
                               num_layers=int(arch["num_layers"]),
                               dropout=float(arch["dropout"]))
    make = fam.make_net_factory(arch["family"], n_symbols=int(arch["n_symbols"]),
                                emb_dim=int(arch["embedding"]))
    return make(int(arch["n_features"]), shape)


# ---- scaling --------------------------------------------------------------------------------

def _scalers(panel: Panel, fold: Fold) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per symbol with two or more clean training rows: the mean and scale ``pooled_set`` fits
    on them."""
    out = {}
    for j, raw in enumerate(panel.X):
        fit_rows = ((fold.split_of(panel.dates[j]) == 0) & panel.usable[j]
                    & np.all(np.isfinite(raw), axis=1))
        if fit_rows.sum() < 2:
            continue
        mean = raw[fit_rows].mean(axis=0)
        scale = raw[fit_rows].std(axis=0)
        scale[~(scale > 0)] = 1.0
        out[panel.symbols[j]] = (mean, scale)
    return out


def scale_features(raw: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                   symbol_id: int) -> np.ndarray:
    """Raw features (rows, features) -> the pooled network's input (rows, features + 1) float32:
    scaled, clipped, NaN as 0 (as ``pooled_set``), the symbol id in the last column."""
    X = np.clip((np.asarray(raw, dtype=np.float64) - mean) / scale, -CLIP, CLIP)
    X = np.nan_to_num(X, nan=0.0, posinf=CLIP, neginf=-CLIP).astype(np.float32)
    return np.hstack([X, np.full((len(X), 1), symbol_id, dtype=np.float32)])


def _check_scalers(panel: Panel, pset: PanelSet,
                   scalers: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Refuse scalers that do not reproduce ``pooled_set``'s matrix exactly."""
    for j, sym in enumerate(panel.symbols):
        own = pset.symbol_of_row == j
        if sym not in scalers and not own.any():
            continue
        if sym not in scalers or not np.array_equal(
                scale_features(panel.X[j], *scalers[sym], j), pset.X[own]):
            raise RuntimeError(f"{sym}: the stored scaler does not reproduce pooled_set's "
                               f"scaling; serving.py must follow panel.pooled_set")


def _flat_k(panel: Panel, fold: Fold, flat_share: float) -> dict[str, float]:
    """Per symbol: the band's k that ``Panel.labels`` fits on its training rows."""
    out = {}
    for j, sym in enumerate(panel.symbols):
        z = np.abs(panel.fwd[j] / panel.vol[j])
        train = (fold.split_of(panel.dates[j]) == 0) & np.isfinite(z) & panel.usable[j]
        out[sym] = float(np.quantile(z[train], flat_share)) if train.any() else float("nan")
    return out


# ---- validation figures ---------------------------------------------------------------------

def validation_figures(pset: PanelSet, proba: np.ndarray, horizon: int) -> dict[str, Any]:
    """Pooled accuracy, each symbol's majority-class accuracy, log loss and the mean daily
    rank IC of P(UP) - P(DOWN) (Newey-West t, p) on the validation windows ``proba`` is of."""
    va = pset.end_rows("val")
    y = pset.y[va].astype(np.int64)
    hit = proba.argmax(axis=1) == y
    maj = majority_labels(pset, va) == y
    ic = stats.ic_summary(stats.daily_rank_ic(pset.dates[va], proba[:, 2] - proba[:, 0],
                                              pset.fwd[va]), horizon)
    p_true = np.maximum(proba[np.arange(len(y)), y].astype(np.float64), 1e-15)
    owner = pset.symbol_of_row[va]
    per_symbol = {}
    for j in np.unique(owner):
        m = owner == j
        per_symbol[pset.symbols[j]] = {"rows": int(m.sum()), "accuracy": float(hit[m].mean()),
                                       "majority_accuracy": float(maj[m].mean())}
    return {"accuracy": float(hit.mean()), "majority_accuracy": float(maj.mean()),
            "log_loss": float(-np.log(p_true).mean()), "rank_ic": ic["mean"],
            "rank_ic_t": ic["t"], "rank_ic_p": ic["p"], "ic_dates": int(ic["n_dates"]),
            "dates": int(len(np.unique(pset.dates[va]))), "rows": int(len(va)),
            "per_symbol": per_symbol}


# ---- the model ------------------------------------------------------------------------------

def _json_ready(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as it reads back from a file (NaN as None, numpy as Python types)."""
    return json.loads(to_json(config))


@dataclass
class PooledModel:
    """A pooled family fit for serving: the network (on CPU unless loaded elsewhere) and its
    config (:data:`CONFIG_KEYS`)."""

    net: nn.Module
    config: dict[str, Any]
    version: str = ""
    """The file's content version (:func:`~lstm_assets.core.model.content_version`), once
    saved or loaded."""
    _scalers: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict,
                                                                repr=False)

    def __post_init__(self) -> None:
        self.net.eval()
        self._scalers = {s: (np.asarray(v["mean"], dtype=np.float64),
                             np.asarray(v["scale"], dtype=np.float64))
                         for s, v in self.config["scalers"].items()}

    @property
    def family(self) -> str:
        return str(self.config["family"])

    @property
    def lookback(self) -> int:
        return int(self.config["lookback"])

    @property
    def features(self) -> list[str]:
        return list(self.config["features"])

    @property
    def symbols(self) -> list[str]:
        """The symbols the model serves (those with a stored scaler), sorted."""
        return sorted(self._scalers)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> PooledModel:
        """Move the network to ``device`` (``auto``: CUDA when present); returns self."""
        self.net.to(pick_device(device) if isinstance(device, str) else device)
        return self

    # ---- file -------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The file's bytes: safetensors weights with the JSON config in the header."""
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.net.state_dict().items()}
        header = json.dumps(_json_ready(self.config), separators=(",", ":"), allow_nan=False)
        return save_bytes(tensors, metadata={"config": header})

    def save(self, path: AnyPath) -> str:
        """Write the model to ``path`` atomically (one file); returns its content version."""
        blob = self.to_bytes()
        write_bytes(path, blob)
        self.version = content_version(blob)
        return self.version

    @classmethod
    def from_bytes(cls, blob: bytes, device: str = "cpu") -> PooledModel:
        config = read_model_config_bytes(blob)
        if config.get("kind") != KIND:
            raise ValueError(f"not a pooled model file (kind {config.get('kind')!r})")
        if int(config.get("format", 0)) != FORMAT:
            raise ValueError(f"pooled model format {config.get('format')} is not {FORMAT}")
        net = build_net(config)
        net.load_state_dict(load_bytes(blob))
        model = cls(net, config, content_version(blob))
        return model.to(device)

    @classmethod
    def load(cls, path: AnyPath, device: str = "cpu") -> PooledModel:
        """The model at ``path`` (local or a store object), its network on ``device``
        (``cpu``, ``cuda`` or ``auto``)."""
        return cls.from_bytes(read_bytes(path), device)

    # ---- prediction -------------------------------------------------------------------------

    def scale(self, symbol: str, frame: pd.DataFrame) -> np.ndarray:
        """``frame``'s rows as the network's input for ``symbol`` (its scaler, its id column);
        a ValueError names the symbol when the model does not serve it, or the features the
        frame lacks."""
        if symbol not in self._scalers:
            raise ValueError(f"{symbol}: not in the pooled {self.family} model's training "
                             f"universe ({len(self._scalers)} symbols); refit the model")
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"{symbol}: the clean frame lacks {len(missing)} feature(s) of "
                             f"the pooled model: {', '.join(missing[:5])}")
        mean, scale = self._scalers[symbol]
        return scale_features(frame[self.features].to_numpy(dtype=np.float64), mean, scale,
                              int(self.config["symbols"][symbol]))

    def predict_rows(self, symbol: str, frame: pd.DataFrame,
                     end_rows: np.ndarray) -> np.ndarray:
        """Probabilities (len(end_rows), 3) in class order DOWN, FLAT, UP of the windows of
        ``frame`` ending at positional ``end_rows`` (each >= lookback - 1)."""
        rows = np.asarray(end_rows, dtype=np.int64)
        if len(rows) and (rows.min() < self.lookback - 1 or rows.max() >= len(frame)):
            raise ValueError(f"{symbol}: window end rows must lie in {self.lookback - 1} .. "
                             f"{len(frame) - 1} (lookback {self.lookback}, {len(frame)} rows)")
        X = self.scale(symbol, frame)
        return predict_proba(self.net, X, rows, self.lookback).astype(np.float64)

    def predict_latest(self, symbol: str, frame: pd.DataFrame) -> np.ndarray:
        """The 3 class probabilities of the window ending on ``frame``'s last row."""
        if len(frame) < self.lookback:
            raise ValueError(f"{symbol}: {len(frame)} clean rows < lookback {self.lookback}")
        last = frame.iloc[-self.lookback:]
        return self.predict_rows(symbol, last, np.array([self.lookback - 1]))[0]


# ---- fitting --------------------------------------------------------------------------------

def pooled_settings(settings: Settings, overrides: Mapping[str, Any] | None = None) -> Settings:
    """``settings`` with the comparison's :data:`POOLED_SETTINGS` applied, except the knobs in
    ``overrides``, which are applied last."""
    overrides = dict(overrides or {})
    base = settings.replace(**{k: v for k, v in POOLED_SETTINGS.items() if k not in overrides})
    return base.replace(**overrides)


def _config(family: str, panel: Panel, fold: Fold, pset: PanelSet, settings: Settings,
            overrides: Mapping[str, Any], embedding: int,
            scalers: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """The config's data and label parts (the fit adds validation and training)."""
    arch = {"family": family, "n_features": int(pset.X.shape[1]),
            "n_symbols": len(panel.symbols), "embedding": 0 if family == "linear" else embedding,
            "hidden_size": settings.hidden_size, "num_layers": settings.num_layers,
            "dropout": settings.dropout}
    if family == "linear":
        arch["lags"] = list(fam.SHALLOW_LAGS)
    gap = max(settings.embargo, panel.horizon)
    last = panel.all_dates.max()
    return {
        "kind": KIND, "format": FORMAT, "family": family, "architecture": arch,
        "lookback": settings.lookback, "features": list(panel.features),
        "symbols": {s: j for j, s in enumerate(panel.symbols) if s in scalers},
        "left_out": [s for s in panel.symbols if s not in scalers],
        "scalers": {s: {"mean": m.tolist(), "scale": sc.tolist()}
                    for s, (m, sc) in scalers.items()},
        "label": {"rule": "vol_quantile", "flat_share": settings.flat_share,
                  "horizon": panel.horizon, "target": panel.target,
                  "k": _flat_k(panel, fold, settings.flat_share)},
        "horizon": panel.horizon, "target": panel.target,
        "settings": settings.as_dict(), "overrides": dict(overrides),
        "dates": {"train": [str(fold.train[0]), str(fold.train[1])],
                  "val": [str(fold.val[0]), str(fold.val[1])], "gap": gap, "last": str(last)},
        "trained_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "library_versions": library_versions(),
    }


def fit_pooled(frames: dict[str, pd.DataFrame], settings: Settings, family: str, *,
               embedding: int = 8, val_days: int | None = None, horizon: int | None = None,
               target: str = "raw", overrides: Mapping[str, Any] | None = None,
               on_epoch: Callable[[dict[str, float]], None] | None = None) -> PooledModel:
    """Fit pooled ``family`` (one of :data:`SERVABLE`) on every symbol's clean frame for
    serving (see the module doc) and return it with its validation figures in its config.

    ``settings``: the pipeline's; the comparison's pooled defaults replace its model and
    training knobs except those in ``overrides`` (the knobs set on purpose, e.g. the CLI's
    ``--set``), and the batch size follows the comparison's rule unless ``overrides`` sets it.
    ``embedding``: the symbol embedding's size (deep families; 0: none). ``horizon``: label
    horizon (None: ``settings.horizon``); ``target``: ``raw`` or ``excess``. ``on_epoch``: the
    training loop's per-epoch callback (deep families)."""
    if family not in SERVABLE:
        raise ValueError(f"unknown pooled family {family!r}; servable: {', '.join(SERVABLE)}")
    overrides = dict(overrides or {})
    pooled = pooled_settings(settings, overrides)
    h = settings.horizon if horizon is None else int(horizon)
    panel = build_panel(frames, settings, h, target)
    fold = serving_fold(panel.all_dates, pooled, h, val_days)
    pset = pooled_set(panel, fold, pooled)
    if "batch_size" not in overrides:
        pooled = pooled.replace(batch_size=pooled_batch(len(pset.end_rows("train"))))
    scalers = _scalers(panel, fold)
    _check_scalers(panel, pset, scalers)
    if family == "linear":
        net, training = _fit_linear(pset, pooled)
    else:
        net, training = _fit_deep(family, pset, pooled, embedding, on_epoch)
    net.to(pick_device(pooled.device))
    proba = predict_proba(net, pset.X, pset.end_rows("val"), pset.lookback)
    config = _config(family, panel, fold, pset, pooled, overrides, embedding, scalers)
    config["validation"] = validation_figures(pset, proba.astype(np.float64), h)
    config["training"] = training
    return PooledModel(net.to("cpu"), _json_ready(config))
