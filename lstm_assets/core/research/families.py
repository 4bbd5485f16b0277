"""The model families a comparison trains, behind one interface.

Deep families (:data:`DEEP_FAMILIES`) are ``nn.Module`` classifiers of windows (batch, steps,
features) -> logits (batch, 3), made by ``make_net(n_features, settings)`` factories
(:func:`make_net_factory`) and trained by the project's one loop,
:func:`lstm_assets.core.train.train_models` with ``make_net=``. Each names its first-layer input
weights in ``input_weight_key``: a weight whose columns are the input features, which is what
the loop's group lasso shrinks one column at a time.

- ``lstm``: :class:`~lstm_assets.core.model.LSTMClassifier`, the per-symbol default.
- ``gru``: :class:`GRUClassifier`, the same shape with ``nn.GRU``.
- ``alstm``: :class:`ALSTMClassifier`, Qlib's attention LSTM.
- pooled: :class:`PooledNet`, one network over every symbol's windows, the symbol id in the
  last input column, optionally with a learned symbol embedding.

Every family body exposes ``features(x) -> (batch, rep_dim)``, its representation before the
head, so :class:`PooledNet` can put its own head on top. Non-deep baselines sit beside them:
LightGBM's gradient-boosted trees on the last rows' features (:func:`fit_trees`), a
multinomial logistic regression (:func:`fit_linear`) and price factors
(:func:`factor_scores`). All classifiers return probabilities in class order DOWN, FLAT, UP.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from torch import nn

from lstm_assets.core.model import LSTMClassifier, predict_proba
from lstm_assets.core.settings import CLASSES, Settings
from lstm_assets.core.trainees import class_weights, lstm_net

NetFactory = Callable[[int, Settings], nn.Module]
"""``make_net(n_features, settings)``: what :func:`~lstm_assets.core.train.train_models` calls."""

DEEP_FAMILIES: tuple[str, ...] = ("lstm", "gru", "alstm")

N_CLASSES = len(CLASSES)


class LSTMBody(LSTMClassifier):
    """:class:`LSTMClassifier` (same weights, names and forward) plus :meth:`features`."""

    def __init__(self, n_features: int, hidden_size: int = 128, num_layers: int = 2,
                 dropout: float = 0.2, n_classes: int = N_CLASSES) -> None:
        super().__init__(n_features, hidden_size, num_layers, dropout, n_classes)
        self.rep_dim = hidden_size

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last step's hidden state of the top layer (batch, hidden)."""
        out, _ = self.lstm(x)
        return out[:, -1]


class GRUClassifier(nn.Module):
    """Stacked GRU over a window; the last step's hidden state -> dropout -> linear -> logits."""

    input_weight_key = "gru.weight_ih_l0"
    """The first layer's input weights (3 x hidden, features): the group lasso's target."""

    def __init__(self, n_features: int, hidden_size: int = 128, num_layers: int = 2,
                 dropout: float = 0.2, n_classes: int = N_CLASSES) -> None:
        super().__init__()
        self.gru = nn.GRU(n_features, hidden_size, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_classes)
        self.rep_dim = hidden_size

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last step's hidden state of the top layer (batch, hidden)."""
        out, _ = self.gru(x)
        return out[:, -1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


class ALSTMClassifier(nn.Module):
    """Attention LSTM (Qlib's ALSTM): input projection (linear + tanh) -> stacked LSTM ->
    temporal attention over every step's output (a small MLP scores each step; softmax over
    the steps) -> [attention-weighted sum, last step's output] -> dropout -> linear -> logits.

    The LSTM reads the projection, not the features, so the group lasso's target is the
    projection's weight (hidden, features): zeroing a column there removes that feature from
    everything downstream.
    """

    input_weight_key = "proj.weight"
    """The input projection's weights (hidden, features): the group lasso's target."""

    def __init__(self, n_features: int, hidden_size: int = 128, num_layers: int = 2,
                 dropout: float = 0.2, n_classes: int = N_CLASSES) -> None:
        super().__init__()
        self.proj = nn.Linear(n_features, hidden_size)
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        att_hidden = max(hidden_size // 2, 1)
        self.att = nn.Sequential(nn.Linear(hidden_size, att_hidden), nn.Tanh(),
                                 nn.Linear(att_hidden, 1, bias=False))
        self.drop = nn.Dropout(dropout)
        self.rep_dim = 2 * hidden_size
        self.head = nn.Linear(self.rep_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[attention-weighted sum of the steps' outputs, last step's output] (batch, 2 x
        hidden); the attention weights are a softmax in fp32, also under bf16 autocast."""
        out, _ = self.lstm(torch.tanh(self.proj(x)))
        out = out.float()
        weights = torch.softmax(self.att(out).float(), dim=1)  # (batch, steps, 1)
        return torch.cat([(weights * out).sum(dim=1), out[:, -1]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


def gru_net(n_features: int, settings: Settings) -> nn.Module:
    """The settings' :class:`GRUClassifier`."""
    return GRUClassifier(n_features, settings.hidden_size, settings.num_layers, settings.dropout)


def alstm_net(n_features: int, settings: Settings) -> nn.Module:
    """The settings' :class:`ALSTMClassifier`."""
    return ALSTMClassifier(n_features, settings.hidden_size, settings.num_layers,
                           settings.dropout)


def lstm_body(n_features: int, settings: Settings) -> nn.Module:
    """The settings' :class:`LSTMBody` (the per-symbol LSTM, with ``features``)."""
    return LSTMBody(n_features, settings.hidden_size, settings.num_layers, settings.dropout)


PER_SYMBOL: dict[str, NetFactory] = {"lstm": lstm_net, "gru": gru_net, "alstm": alstm_net}
BODIES: dict[str, NetFactory] = {"lstm": lstm_body, "gru": gru_net, "alstm": alstm_net}
"""Factories of the bodies :class:`PooledNet` accepts by family name: modules with
``features(x) -> (batch, rep_dim)``, ``rep_dim``, ``input_weight_key`` and a ``head``."""


class PooledNet(nn.Module):
    """One network for every symbol's windows; the window's last column is the symbol id.

    The id (0 .. n_symbols - 1, as a float, the same on every step, not scaled) is read from the
    last step, rounded and clamped to a valid index: the loop's input noise and feature dropout
    reach that column too, so keep ``input_noise`` well under 0.5, and know that a window whose
    id column feature dropout zeroes is seen as symbol 0. The body (a family's network made for
    the other n_features - 1 columns) runs on the real features only; its own head is removed
    and this net's head reads ``body.features``:

    - ``emb_dim == 0``: dropout -> linear, exactly the per-symbol network's head: one model of
      every symbol's windows that cannot tell the symbols apart.
    - ``emb_dim > 0``: [representation, ``nn.Embedding(n_symbols, emb_dim)`` of the id] ->
      dropout -> linear -> ReLU -> dropout -> linear. The hidden layer is there because a
      linear head over the concatenation could only add a per-symbol bias to the logits; with
      it, a symbol can change how the representation maps to the classes.

    ``input_weight_key`` is the body's input weight (prefixed ``body.``), whose columns are the
    real features only, so the group lasso never touches the id.
    """

    def __init__(self, body: str | NetFactory, n_features: int, n_symbols: int, emb_dim: int,
                 settings: Settings) -> None:
        super().__init__()
        if n_features < 2:
            raise ValueError(f"a pooled window needs a feature and the id column, got "
                             f"{n_features} column(s)")
        if emb_dim > 0 and n_symbols < 1:
            raise ValueError("a symbol embedding needs n_symbols >= 1")
        if isinstance(body, str) and body not in BODIES:
            raise ValueError(f"unknown family {body!r}; known: {', '.join(BODIES)}")
        make_body = BODIES[body] if isinstance(body, str) else body
        self.body = make_body(n_features - 1, settings)
        if not hasattr(self.body, "features") or not hasattr(self.body, "rep_dim"):
            raise TypeError(f"{type(self.body).__name__} has no features()/rep_dim")
        self.body.head = None  # this net's head replaces it (no unused weights)
        self.input_weight_key = f"body.{self.body.input_weight_key}"
        self.n_symbols = n_symbols
        rep_dim = int(self.body.rep_dim)
        self.drop = nn.Dropout(settings.dropout)
        self.embed: nn.Embedding | None = None
        if emb_dim > 0:
            self.embed = nn.Embedding(n_symbols, emb_dim)
            self.head: nn.Module = nn.Sequential(
                nn.Linear(rep_dim + emb_dim, settings.hidden_size), nn.ReLU(),
                nn.Dropout(settings.dropout), nn.Linear(settings.hidden_size, N_CLASSES))
        else:
            self.head = nn.Linear(rep_dim, N_CLASSES)

    def symbol_ids(self, x: torch.Tensor) -> torch.Tensor:
        """Each window's symbol id (batch,) from its last step's last column."""
        return x[:, -1, -1].float().round().long().clamp(0, max(self.n_symbols - 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rep = self.body.features(x[..., :-1].contiguous())
        if self.embed is not None:
            rep = torch.cat([rep, self.embed(self.symbol_ids(x)).to(rep.dtype)], dim=1)
        return self.head(self.drop(rep))


def pooled_net(family: str, n_symbols: int, emb_dim: int, n_features: int,
               settings: Settings) -> PooledNet:
    """:class:`PooledNet` of ``family``'s body; ``n_features`` includes the id column."""
    return PooledNet(family, n_features, n_symbols, emb_dim, settings)


def make_net_factory(family: str, n_symbols: int = 0, emb_dim: int = 0) -> NetFactory:
    """``make_net(n_features, settings)`` for ``family`` (one of :data:`DEEP_FAMILIES`).

    ``n_symbols == 0``: the per-symbol network (for ``lstm`` exactly
    :func:`~lstm_assets.core.trainees.lstm_net`, the loop's default). Otherwise the pooled one
    (:class:`PooledNet`), whose ``n_features`` counts the id column; ``emb_dim > 0`` adds the
    symbol embedding. The factory is a module-level function or a ``functools.partial`` of
    one, so it pickles (it can be sent to worker processes).
    """
    if family not in DEEP_FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(DEEP_FAMILIES)}")
    if n_symbols < 0 or emb_dim < 0:
        raise ValueError(f"n_symbols and emb_dim must be >= 0, got {n_symbols}, {emb_dim}")
    if n_symbols == 0:
        if emb_dim > 0:
            raise ValueError("a symbol embedding is for a pooled network: give n_symbols")
        return PER_SYMBOL[family]
    return functools.partial(pooled_net, family, n_symbols, emb_dim)


def predict_windows(net: nn.Module, X: np.ndarray, rows: np.ndarray, lookback: int,
                    batch: int = 4096) -> np.ndarray:
    """Softmax probabilities (len(rows), 3) of ``net`` on the windows ``X[r - lookback + 1 :
    r + 1]`` ending at ``rows``: eval mode (its mode is restored after), no gradients, on the
    net's device, ``batch`` windows at a time (:func:`lstm_assets.core.model.predict_proba`)."""
    return predict_proba(net, np.asarray(X, dtype=np.float32), rows, lookback, chunk=batch)


# ---- tree baseline -------------------------------------------------------------------------

SHALLOW_LAGS: tuple[int, ...] = (0, 1, 2, 3, 4)
"""The shallow families (trees, linear) read the last week's features (rows t .. t-4): the
same inputs for both, so their comparison is one of learners."""


def tree_features(X: np.ndarray, rows: np.ndarray,
                  lags: tuple[int, ...] = SHALLOW_LAGS) -> np.ndarray:
    """The features of rows ``r - lag`` for each lag, side by side: (len(rows), len(lags) x
    features), lag 0's columns first. Every row used is at or before ``r``, so nothing looks
    ahead; ``rows`` must be at least ``max(lags)`` (window end rows are >= lookback - 1)."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) and rows.min() < max(lags):
        raise ValueError(f"row {rows.min()} has no row {max(lags)} steps before it")
    return np.concatenate([X[rows - lag] for lag in lags], axis=1)


def _full_proba(classes: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """``proba`` over the classes a model saw, as (n, 3) with zeros for the others."""
    out = np.zeros((len(proba), N_CLASSES), dtype=np.float64)
    out[:, np.asarray(classes, dtype=np.int64)] = proba
    return out


def _weighted_log_loss(proba: np.ndarray, y: np.ndarray, weight: np.ndarray) -> float:
    p = np.clip(proba[np.arange(len(y)), y], 1e-15, None)
    return float(-(weight * np.log(p)).sum() / max(weight.sum(), 1e-12))


TREE_PATIENCE = 20
"""Boosting rounds without a better validation score before LightGBM stops growing."""
TREE_MAX_ROUNDS = 200
"""Boosting rounds at most."""

ValScore = Callable[[np.ndarray, np.ndarray], float]
"""``score(proba, keep)``: a validation score (higher is better) of the (n, 3) probabilities
of the validation rows that ``keep`` (a boolean mask over the given rows) marks."""


def fit_trees(Xtr: np.ndarray, ytr: np.ndarray, Xval: np.ndarray, yval: np.ndarray, seed: int,
              max_iter: int = TREE_MAX_ROUNDS, balanced: bool = False,
              val_score: ValScore | None = None) -> Any:
    """LightGBM's gradient-boosted trees (``LGBMClassifier``, multiclass) on labels 0..2, the
    number of boosting rounds chosen on the given validation rows.

    Settings are LightGBM's defaults (learning rate 0.1, 31 leaves, 20 rows a leaf, 255 bins),
    which are scikit-learn's histogram boosting's too. It grows up to ``max_iter`` rounds and
    stops after ``TREE_PATIENCE`` rounds without a better validation score; predictions use the
    best round (``best_iteration_``; the fitted model keeps the rounds up to it). The score is
    ``val_score(proba, keep)`` when given (the comparison passes the validation rows' mean
    daily rank IC, the figure it judges a family by), else the validation log loss.
    Validation rows of a class absent from training are left out (the model cannot predict
    that class): ``keep`` marks the rows scored.
    ``balanced``: class weights ``"balanced"`` in the fit and the validation log loss weighted
    by the same train-class weights (:func:`~lstm_assets.core.trainees.class_weights`), as
    the deep models' loop does. LightGBM uses every core (its OpenMP default); without row or
    feature subsampling a fit is deterministic.

    Why the score can matter more than the library: on weak-signal demo data the validation
    log loss is lowest after 1-2 rounds (it rewards calibrating FLAT against a move), while the
    rank IC of P(UP) - P(DOWN) keeps rising for many rounds; stopping on the log loss throws
    the directional pattern away (BENCHMARKS.md, *Model comparison*). Why LightGBM: with the
    same features, folds and stopping rule it scored a higher test IC than scikit-learn's
    ``HistGradientBoostingClassifier`` on weak-signal demo data, in about the same fitting time
    (``scripts/trees_vs_lightgbm.py``). It is imported here, on use, so the network families
    run where it is not installed (a GPU box's image).
    """
    import lightgbm as lgb

    ytr = np.asarray(ytr, dtype=np.int64)
    yval = np.asarray(yval, dtype=np.int64)
    classes = np.unique(ytr)
    seen = np.isin(yval, classes)
    Xval, yval = Xval[seen], yval[seen]
    params: dict[str, Any] = {}
    metric: Any = "multi_logloss"
    if val_score is not None:
        params["metric"] = "None"  # only the given score

        def metric(y_true: np.ndarray, proba: np.ndarray) -> tuple[str, float, bool]:
            full = _full_proba(classes, proba.reshape(len(y_true), -1))
            value = float(val_score(full, seen))
            return "val_score", value if np.isfinite(value) else -np.inf, True

    model = lgb.LGBMClassifier(
        n_estimators=max_iter, learning_rate=0.1, num_leaves=31, random_state=seed,
        class_weight="balanced" if balanced else None, n_jobs=0, deterministic=True,
        force_row_wise=True, verbose=-1, **params)
    weight = [class_weights(ytr)[yval]] if balanced else None
    model.fit(Xtr, ytr, eval_X=(Xval,), eval_y=(yval,), eval_sample_weight=weight,
              eval_metric=metric,
              callbacks=[lgb.early_stopping(TREE_PATIENCE, first_metric_only=True,
                                            verbose=False)])
    return model


def predict_trees(model: Any, X: np.ndarray) -> np.ndarray:
    """Probabilities (n, 3) in class order at the model's best round; a class absent from
    training gets 0."""
    return _full_proba(model.classes_, model.predict_proba(X))


# ---- linear baseline -----------------------------------------------------------------------

LINEAR_CS: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
"""Inverse L2 strengths tried, the best by validation log loss."""


def fit_linear(Xtr: np.ndarray, ytr: np.ndarray, Xval: np.ndarray, yval: np.ndarray,
               seed: int, cs: tuple[float, ...] = LINEAR_CS,
               val_score: ValScore | None = None) -> LogisticRegression:
    """Multinomial logistic regression (L2) on standardized inputs, its strength chosen among
    ``cs`` by the validation log loss, or by ``val_score(proba, keep)`` (higher is better;
    every row kept) when given: the model a practitioner tries before any network, and the
    one that finds a weak linear pattern in many samples."""
    ytr = np.asarray(ytr, dtype=np.int64)
    yval = np.asarray(yval, dtype=np.int64)
    every = np.ones(len(yval), dtype=bool)
    best: LogisticRegression | None = None
    best_loss = float("inf")
    for c in cs:
        with warnings.catch_warnings():  # lbfgs short of full convergence: a fine predictor
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(C=c, max_iter=300, random_state=seed).fit(Xtr, ytr)
        proba = _full_proba(model.classes_, model.predict_proba(Xval))
        if val_score is None:
            loss = _weighted_log_loss(proba, yval, np.ones(len(yval)))
        else:
            value = val_score(proba, every)
            loss = -value if np.isfinite(value) else float("inf")
        if best is None or loss < best_loss:
            best, best_loss = model, loss
    assert best is not None
    return best


def predict_linear(model: LogisticRegression, X: np.ndarray) -> np.ndarray:
    """Probabilities (n, 3) in class order; a class absent from training gets 0."""
    return _full_proba(model.classes_, model.predict_proba(X))


# ---- factor baselines -----------------------------------------------------------------------

FACTORS: tuple[str, ...] = ("reversal_1d", "reversal_5d", "momentum_20d", "low_vol_20d")

VOL_WINDOW = 20


def _log_change(logc: np.ndarray, k: int) -> np.ndarray:
    """``logc[t] - logc[t - k]``, NaN for the first ``k`` rows."""
    out = np.full(len(logc), np.nan)
    if len(logc) > k:
        out[k:] = logc[k:] - logc[:-k]
    return out


def factor_scores(close: np.ndarray) -> dict[str, np.ndarray]:
    """Price factors of one symbol's close series (NaN where missing or not positive), each a
    score where higher means expected to go up; row t uses closes up to t only, and is NaN
    where a close it needs is missing or before the series has enough history.

    - ``reversal_1d``: -log(c_t / c_{t-1});  ``reversal_5d``: -log(c_t / c_{t-5})
    - ``momentum_20d``: log(c_t / c_{t-20})
    - ``low_vol_20d``: minus the sample standard deviation (ddof 1) of the 20 daily log
      returns ending at t (closes t-20 .. t).
    """
    c = np.asarray(close, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        logc = np.log(np.where(c > 0, c, np.nan))
    ret = _log_change(logc, 1)
    vol = np.full(len(c), np.nan)
    if len(c) >= VOL_WINDOW:
        windows = np.lib.stride_tricks.sliding_window_view(ret, VOL_WINDOW)
        vol[VOL_WINDOW - 1:] = windows.std(axis=1, ddof=1)
    return {"reversal_1d": -ret, "reversal_5d": -_log_change(logc, 5),
            "momentum_20d": _log_change(logc, 20), "low_vol_20d": -vol}


def ensemble_proba(probas: list[np.ndarray]) -> np.ndarray:
    """The mean of several models' probabilities (each (n, 3), the same rows)."""
    if not probas:
        raise ValueError("no probabilities to average")
    return np.mean(np.stack(probas), axis=0)

