"""A small, honest search over the pooled networks' settings, scored on validation dates only.

**What is searched.** Five knobs of the pooled ``lstm`` / ``gru`` / ``alstm`` families
(:data:`SPACE`): hidden size, lookback, dropout, group-lasso strength and learning rate, a grid
of 324 configurations. Trial 0 is always the comparison's own pooled settings (``compare.
POOLED_SETTINGS`` under any ``--set``); the next ``n`` distinct configurations come from
Optuna's TPE sampler (``TPESampler(seed=seed, multivariate=True)``, ask-and-tell, one study in
memory per family, horizon and target). Until 10 trials are complete it draws at random (TPE's
start-up, seeded), so a budget of up to 9 trials is a seeded random search, as good as a
grid or better when few knobs matter (Bergstra & Bengio 2012); with a larger budget the later
proposals follow the trials that scored best. A proposal equal to a configuration already tried
is told that configuration's score and not trained again, so every trial counted is a distinct
configuration. A knob the user fixed with ``--set`` is not searched: every trial keeps its value.
The shallow families (``lgbm``, ``linear``) keep their own validation-chosen settings. Optuna is
imported on use: the comparison without ``--tune`` runs where it is not installed.

**Where it is scored.** On the first walk-forward fold's training and validation dates, nothing
else: each trial trains on the fold's training rows (early-stopped on its validation rows, as
every fit of the comparison) and is scored on those validation rows by the mean daily rank IC of
its score P(UP) - P(DOWN) (:func:`~lstm_assets.core.research.stats.daily_rank_ic`), ties broken
by the lower validation log loss. The first fold is the one whose training and validation dates
come before every test date of every fold (the test blocks are consecutive after it; a later
fold's validation dates are an earlier fold's test dates, so searching there would choose the
settings on dates that are then reported as out-of-sample). One search per family, horizon and
target; the chosen settings are then refit on every fold as usual and judged on its test dates.
:func:`search_set` cuts the panel at the fold's last validation date and builds a set with no
test block; :func:`search` refuses a set that holds a date on or after the first test date.

**How it enters the statistics.** Every trial is a configuration tried: the comparison's
``configurations_tried`` counts families x horizons x targets, each tuned family once per trial,
and the verdict corrects the best family's IC p-value for that count (:func:`bonferroni`,
:func:`sidak`) beside Hansen's SPA test over the families. The trials were scored on validation
dates, never on test dates, so the test statistics of the chosen settings are not selected on
test data; counting the trials anyway treats each as if it had been picked on test (a
conservative correction).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from lstm_assets.core.research import families as fam
from lstm_assets.core.research import selection, stats
from lstm_assets.core.research.panel import Fold, Panel, PanelSet, pooled_set
from lstm_assets.core.settings import Settings
from lstm_assets.core.train import train_models

SPACE: dict[str, tuple[float | int, ...]] = {
    "hidden_size": (16, 32, 64),
    "lookback": (10, 20, 30),
    "dropout": (0.0, 0.1, 0.3),
    "input_group_lasso": (0.0, 2.0, 5.0, 10.0),
    "learning_rate": (1e-3, 2e-3, 5e-3),
}
"""The knobs searched and their values (3 x 3 x 3 x 4 x 3 = 324 configurations)."""
KNOBS = tuple(SPACE)
SEARCH_FOLD = 1
"""The walk-forward fold whose training and validation dates the search uses (see the module
doc: the only fold whose validation dates precede every test date)."""
LOG_FLOOR = 1e-7


def knob_choices(base: Settings, fixed: Iterable[str] = ()) -> dict[str, tuple[Any, ...]]:
    """The values each searched knob can take: :data:`SPACE`'s, plus ``base``'s own value when
    the grid lacks it (trial 0 must be a point of the space). Knobs in ``fixed`` are left out."""
    skip = set(fixed)
    out: dict[str, tuple[Any, ...]] = {}
    for k in KNOBS:
        if k in skip:
            continue
        own = getattr(base, k)
        out[k] = SPACE[k] if own in SPACE[k] else tuple(sorted((*SPACE[k], own)))
    return out


MAX_REPEATS = 200
"""Proposals in a row that repeat a tried configuration before the search gives up."""


def optimize(base: Settings, n: int, seed: int, score: Callable[[dict[str, Any]], float],
             fixed: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Trial 0: ``base``'s values of :data:`KNOBS`; then ``n`` distinct configurations proposed
    by Optuna's seeded TPE sampler (see the module doc), each scored by ``score(knobs)`` (higher
    is better; a non-finite score is told to Optuna as a failed trial). Returns the knob dicts
    in the order tried. The same seed and scores give the same trials on any machine."""
    import optuna

    if n < 0:
        raise ValueError(f"the number of trials must be >= 0, not {n}")
    choices = knob_choices(base, fixed)
    others = int(np.prod([len(v) for v in choices.values()])) - 1
    if n > others:
        raise ValueError(f"{n} trials asked, the search space holds {others} other "
                         f"configurations")
    first = {k: getattr(base, k) for k in KNOBS}
    dists = {k: optuna.distributions.CategoricalDistribution(v) for k, v in choices.items()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # multivariate TPE is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({k: first[k] for k in choices})
    tried: dict[tuple[Any, ...], float] = {}
    repeats = 0
    while len(tried) < n + 1:
        trial = study.ask(dists)
        knobs = {**first, **trial.params}
        key = tuple(knobs[k] for k in KNOBS)
        if key not in tried:
            tried[key] = float(score(knobs))
            repeats = 0
        elif (repeats := repeats + 1) > MAX_REPEATS:
            raise RuntimeError(f"the sampler repeated tried configurations {MAX_REPEATS} times "
                               f"in a row after {len(tried)} trials")
        value = tried[key]
        if np.isfinite(value):
            study.tell(trial, value)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return [dict(zip(KNOBS, key, strict=True)) for key in tried]


def search_set(panel: Panel, fold: Fold, settings: Settings) -> PanelSet:
    """The pooled set of ``fold``'s training and validation rows only: every symbol's rows cut
    after the fold's last validation date, and a fold without a test block. The labels of the
    validation rows end before the test block (the gap between them is >= the horizon)."""
    cut = replace(panel, dates=[], X=[], close=[], fwd=[], vol=[], usable=[], _factors=None)
    for j in range(len(panel.symbols)):
        keep = panel.dates[j] <= fold.val[1]
        cut.dates.append(panel.dates[j][keep])
        cut.X.append(panel.X[j][keep])
        cut.close.append(panel.close[j][keep])
        cut.fwd.append(panel.fwd[j][keep])
        cut.vol.append(panel.vol[j][keep])
        cut.usable.append(panel.usable[j][keep])
    after = fold.val[1] + np.timedelta64(1, "D")
    no_test = Fold(fold.index, fold.train, fold.val, (after, fold.val[1]))  # an empty range
    return pooled_set(cut, no_test, settings)


def _check_no_test(pset: PanelSet, first_test: np.datetime64) -> None:
    """Refuse a search set that holds a test row or any date on or after ``first_test``."""
    if len(pset.end_rows("test")) or (len(pset.dates) and pset.dates.max() >= first_test):
        raise RuntimeError(f"the tuning search was given rows on or after the first test date "
                           f"{first_test}: it may use training and validation dates only")


def val_scores(pset: PanelSet, proba: np.ndarray, horizon: int) -> dict[str, Any]:
    """Validation figures of one trial: the mean daily rank IC of P(UP) - P(DOWN), its
    Newey-West t, the dates it covers and the log loss."""
    va = pset.end_rows("val")
    ic = stats.daily_rank_ic(pset.dates[va], proba[:, 2] - proba[:, 0], pset.fwd[va])
    s = stats.ic_summary(ic, horizon)
    y = pset.y[va].astype(np.int64)
    ll = float(-np.mean(np.log(np.maximum(proba[np.arange(len(y)), y], LOG_FLOOR))))
    return {"val_ic": s["mean"], "val_ic_t": s["t"], "val_dates": int(s["n_dates"]),
            "val_log_loss": ll}


def rank_key(trial: dict[str, Any]) -> tuple[float, float]:
    """Higher is better: the validation IC (NaN last), then the lower validation log loss."""
    ic = trial["val_ic"]
    ll = trial["val_log_loss"]
    return (ic if np.isfinite(ic) else -np.inf, -ll if np.isfinite(ll) else -np.inf)


def best_trial(trials: list[dict[str, Any]]) -> int:
    """The index of the trial with the best :func:`rank_key` (the first of equals)."""
    return max(range(len(trials)), key=lambda i: rank_key(trials[i]))


def search(family: str, panel: Panel, fold: Fold, first_test: np.datetime64, base: Settings,
           n_trials: int, seed: int, embedding: int, fixed: Iterable[str] = (),
           batch: Callable[[int], int] | None = None,
           on_trial: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Score ``base`` and ``n_trials`` configurations proposed by :func:`optimize` for pooled
    ``family`` on ``fold``'s validation rows (see the module doc) and return ``{"family",
    "fold", "trials": [{"trial", "settings", "val_ic", "val_ic_t", "val_dates",
    "val_log_loss", "epochs", "seconds"}], "chosen", "chosen_settings", "n_trials",
    "seconds"}``. ``first_test``: the earliest test date of the comparison; no row the search
    sees is on or after it. ``fixed``: knobs not searched. ``batch(n_train)``: the batch size
    for a set of ``n_train`` training windows (None: ``base``'s)."""
    if family not in fam.DEEP_FAMILIES:
        raise ValueError(f"only the pooled networks are tuned ({', '.join(fam.DEEP_FAMILIES)}),"
                         f" not {family!r}")
    if fold.val[1] >= first_test:
        raise RuntimeError(f"fold {fold.index}'s validation dates reach the first test date "
                           f"{first_test}: the search would see test dates")
    t0 = time.perf_counter()
    sets: dict[int, PanelSet] = {}
    rows: list[dict[str, Any]] = []

    def score(knobs: dict[str, Any]) -> float:
        t = time.perf_counter()
        settings = base.replace(**knobs)
        if settings.lookback not in sets:
            sets[settings.lookback] = search_set(panel, fold, settings)
        pset = sets[settings.lookback]
        _check_no_test(pset, first_test)
        if batch is not None:
            settings = settings.replace(batch_size=batch(len(pset.end_rows("train"))))
        make = fam.make_net_factory(family, n_symbols=len(pset.symbols), emb_dim=embedding)
        res = train_models([pset], settings, make_net=make,
                           val_score=selection.net_validation_ic(pset))[0]
        net = make(pset.X.shape[1], settings)
        net.load_state_dict(res.state)
        proba = fam.predict_windows(net, pset.X, pset.end_rows("val"), settings.lookback)
        row = {"trial": len(rows), "settings": dict(knobs),
               **val_scores(pset, proba, panel.horizon), "epochs": int(res.epochs_run),
               "seconds": time.perf_counter() - t}
        rows.append(row)
        if on_trial is not None:
            on_trial(row["trial"], row)
        return row["val_ic"]

    optimize(base, n_trials, seed, score, fixed)
    chosen = best_trial(rows)
    return {"family": family, "fold": fold.index, "trials": rows, "chosen": chosen,
            "chosen_settings": dict(rows[chosen]["settings"]), "n_trials": len(rows),
            "seconds": time.perf_counter() - t0}


def bonferroni(p: float, m: int) -> float:
    """``min(1, m p)``: the family-wise p-value of the best of ``m`` tests, valid under any
    dependence between them."""
    return float(min(1.0, p * max(m, 1))) if np.isfinite(p) else float("nan")


def sidak(p: float, m: int) -> float:
    """``1 - (1 - p)^m``: the family-wise p-value of the best of ``m`` independent tests (a
    little below :func:`bonferroni`)."""
    return float(-np.expm1(max(m, 1) * np.log1p(-p))) if np.isfinite(p) else float("nan")
