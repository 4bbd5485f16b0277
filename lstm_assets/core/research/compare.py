"""Model families side by side on one universe, over walk-forward folds, with the statistics to
see (or rule out) a small edge.

For each horizon and target (:mod:`~lstm_assets.core.research.panel`) and each walk-forward
fold, every family is fit on the fold's training dates and predicts its test dates. Its size
(a network's epoch, the trees' rounds, the linear model's L2 strength) is chosen on the fold's
validation dates by the figure the family is judged by on test, the mean daily rank IC of
P(UP) - P(DOWN) (:func:`~lstm_assets.core.research.selection.validation_ic`); the validation
log loss would stop a weak directional model before it learns (on weak-signal demo data it is
lowest after a few epochs or rounds, while the IC keeps rising). The per-symbol families
(``@symbol``), which cannot rank one symbol against others, stop on their validation loss. The
test blocks of the folds are disjoint, so every family ends with one out-of-sample prediction
per symbol and test date. Then, per family, over all folds:

- classification, pooled over symbols: accuracy, balanced accuracy, log loss, each with an
  interval from a bootstrap over blocks of dates (symbols on one date are not independent),
  beside the majority class of each symbol's training labels;
- the daily cross-sectional rank IC of the score P(UP) - P(DOWN) (a factor's score is its own
  value) against the realised forward return: mean, ICIR, a Newey-West t (overlapping h-day
  returns), per-fold means, and the smallest mean IC this design detects (80% power);
- a top-minus-bottom quintile long/short spread after ``cost_bps`` per side;
- per-symbol accuracy against that symbol's majority class (one-sided binomial p), corrected
  across symbols by Benjamini-Hochberg;
- a paired block-bootstrap test of its daily IC against the best factor's, and Hansen's SPA
  test over all model families against that factor (is the best of N really better?).

Factor baselines (1-day and 5-day reversal, 20-day momentum, low volatility) are in every
comparison; a model that does not beat them has learned nothing a one-line rule lacks.
The families: ``lstm``, ``gru``, ``alstm`` pooled over all symbols (one network, each symbol
scaled on its own training rows, a symbol embedding of ``embedding`` dims), ``lgbm`` (LightGBM's
gradient-boosted trees on the last week's features, pooled, their rounds chosen by
the validation IC), ``linear`` (multinomial
logistic regression on the last five days' features, pooled), ``ensemble`` (the mean of
the other model families' probabilities), and ``lstm@symbol`` (today's per-symbol LSTM, one
per symbol and fold: the per-symbol assets' model, for the pooled-vs-per-symbol question),
``gru@symbol`` and ``alstm@symbol`` (the same with the other networks, the per-symbol settings)
and ``linear@symbol`` (the linear model fit on each symbol alone: the same question, cheaply).

With ``tune_trials > 0`` each pooled family's settings are first chosen by a small search on the
first fold's training and validation dates (:mod:`~lstm_assets.core.research.tuning`; never on
test dates), then refit on every fold; every trial counts as a configuration tried, and the
best family's IC p-value is corrected for them (Bonferroni and Sidak, beside the SPA test).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from lstm_assets.core.research import families as fam
from lstm_assets.core.research import selection, stats, tuning
from lstm_assets.core.research.panel import (
    Fold,
    Panel,
    PanelSet,
    build_panel,
    pooled_set,
    walk_forward_folds,
)
from lstm_assets.core.settings import Settings
from lstm_assets.core.train import train_models

POOLED = ("lstm", "gru", "alstm")
PER_SYMBOL_NETS = ("lstm@symbol", "gru@symbol", "alstm@symbol")
LINEAR_PER_SYMBOL = "linear@symbol"
SHALLOW = ("lgbm", "linear")
FAMILIES = (*POOLED, *SHALLOW, "ensemble", *PER_SYMBOL_NETS, LINEAR_PER_SYMBOL)
DEFAULT_FAMILIES = ("lstm", "gru", "alstm", "lgbm", "linear", "ensemble")
QUICK_FAMILIES = ("lstm", "lgbm", "linear")

POOLED_SETTINGS = {"hidden_size": 32, "num_layers": 1, "lookback": 20, "dropout": 0.1,
                   "learning_rate": 2e-3, "max_epochs": 40, "early_stop_patience": 8}
"""The pooled networks' settings unless a ``--set`` says otherwise (chosen on planted-signal
demo data, BENCHMARKS.md *Model comparison*): a small network over short windows, so the
default comparison of 164 symbols x 5 years x 4 folds fits in about an hour on 2 CPU cores. The
group lasso stays on (without it the pooled LSTM overfits the 95 demo features and stops after
2-3 epochs at the majority's accuracy). The per-symbol family uses the per-symbol settings."""
STEPS_PER_EPOCH = 32
"""The pooled batch size is the training windows / this (64 .. 4096) unless ``batch_size`` is
set: an epoch is then as many optimizer (and group-lasso proximal) steps as a per-symbol
model's, whatever the universe's size, and larger universes get larger, faster batches."""


def pooled_batch(n_train: int) -> int:
    return int(min(4096, max(64, -(-n_train // STEPS_PER_EPOCH))))


@dataclass
class CompareSpec:
    """What a comparison runs (``lstm-assets compare`` options, the asset's config)."""

    families: tuple[str, ...] = DEFAULT_FAMILIES
    horizons: tuple[int, ...] = (1,)
    targets: tuple[str, ...] = ("raw",)
    folds: int = 4
    embedding: int = 8
    cost_bps: float = 10.0
    quantile: float = 0.2
    n_resamples: int = 1000
    block: int = 10
    """Dates per bootstrap block (covers the autocorrelation of daily IC and of h <= 10)."""
    seed: int = 0
    tune_trials: int = 0
    """Configurations of the pooled networks' settings drawn for a search on validation dates,
    besides their default settings (:mod:`~lstm_assets.core.research.tuning`); 0: no search."""

    def __post_init__(self) -> None:
        if self.tune_trials < 0:
            raise ValueError(f"tune_trials must be >= 0, not {self.tune_trials}")
        bad = [f for f in self.families if f not in FAMILIES]
        if bad:
            raise ValueError(f"unknown families {bad}; choose from {', '.join(FAMILIES)}")
        if "ensemble" in self.families and sum(f in self.families for f in
                                               (*POOLED, *SHALLOW)) < 2:
            raise ValueError("ensemble needs at least two of lstm, gru, alstm, lgbm, linear")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Predictions:
    """One family's out-of-sample predictions over all folds (one row per symbol and date)."""

    dates: list[np.ndarray] = field(default_factory=list)
    symbols: list[np.ndarray] = field(default_factory=list)
    fold: list[np.ndarray] = field(default_factory=list)
    y: list[np.ndarray] = field(default_factory=list)
    fwd: list[np.ndarray] = field(default_factory=list)
    score: list[np.ndarray] = field(default_factory=list)
    proba: list[np.ndarray] = field(default_factory=list)
    majority: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, pset: PanelSet, rows: np.ndarray, fold: Fold, score: np.ndarray,
            proba: np.ndarray | None, majority: np.ndarray) -> None:
        self.dates.append(pset.dates[rows])
        self.symbols.append(pset.symbol_of_row[rows])
        self.fold.append(np.full(len(rows), fold.index, dtype=np.int16))
        self.y.append(pset.y[rows].astype(np.int64))
        self.fwd.append(pset.fwd[rows])
        self.score.append(score)
        self.majority.append(majority)
        if proba is not None:
            self.proba.append(proba)

    def cat(self, name: str) -> np.ndarray:
        return np.concatenate(getattr(self, name))


def _pooled_settings(settings: Settings, overrides: dict[str, Any]) -> Settings:
    return settings.replace(**{k: v for k, v in POOLED_SETTINGS.items() if k not in overrides})


def _with_batch(settings: Settings, pset: PanelSet, overrides: dict[str, Any]) -> Settings:
    if "batch_size" in overrides:
        return settings
    return settings.replace(batch_size=pooled_batch(len(pset.end_rows("train"))))


def majority_labels(pset: PanelSet, rows: np.ndarray) -> np.ndarray:
    """Each row's symbol's most frequent training label (the majority-class baseline)."""
    tr = pset.end_rows("train")
    counts = np.zeros((len(pset.symbols), 3))
    np.add.at(counts, (pset.symbol_of_row[tr], pset.y[tr].astype(np.int64)), 1)
    return counts.argmax(axis=1)[pset.symbol_of_row[rows]]


def _score(proba: np.ndarray) -> np.ndarray:
    return proba[:, 2] - proba[:, 0]


def _fit_deep(family: str, pset: PanelSet, settings: Settings, embedding: int,
              on_epoch: Callable[[dict[str, float]], None] | None) -> np.ndarray:
    make = fam.make_net_factory(family, n_symbols=len(pset.symbols), emb_dim=embedding)
    res = train_models([pset], settings, make_net=make, on_epoch=on_epoch,
                       val_score=selection.net_validation_ic(pset))[0]
    net = make(pset.X.shape[1], settings)
    net.load_state_dict(res.state)
    return fam.predict_windows(net, pset.X, pset.end_rows("test"), pset.lookback)


def _fit_trees(pset: PanelSet, settings: Settings) -> np.ndarray:
    """Pooled LightGBM trees on the last week's features, without class weights
    (as ``linear``: the FLAT band makes the three classes about equally frequent), their
    rounds chosen by the validation rows' mean daily rank IC of P(UP) - P(DOWN) (see
    :func:`~lstm_assets.core.research.families.fit_trees` for why not the log loss)."""
    X = pset.X[:, :-1]  # without the symbol column
    tr, va, te = (pset.end_rows(s) for s in ("train", "val", "test"))
    model = fam.fit_trees(fam.tree_features(X, tr), pset.y[tr].astype(np.int64),
                          fam.tree_features(X, va), pset.y[va].astype(np.int64),
                          seed=settings.seed, val_score=selection.validation_ic(pset))
    return fam.predict_trees(model, fam.tree_features(X, te))


def _fit_linear(pset: PanelSet, settings: Settings) -> np.ndarray:
    """Pooled multinomial logistic regression on the last week's features, its L2 strength
    chosen by the validation rows' mean daily rank IC."""
    X = pset.X[:, :-1]
    tr, va, te = (pset.end_rows(s) for s in ("train", "val", "test"))
    lags = fam.SHALLOW_LAGS
    model = fam.fit_linear(fam.tree_features(X, tr, lags), pset.y[tr].astype(np.int64),
                           fam.tree_features(X, va, lags), pset.y[va].astype(np.int64),
                           seed=settings.seed, val_score=selection.validation_ic(pset))
    return fam.predict_linear(model, fam.tree_features(X, te, lags))


def _fit_linear_per_symbol(pset: PanelSet, settings: Settings) -> np.ndarray:
    """``linear`` fit on each symbol's own rows of the fold (the per-symbol counterpart of the
    pooled linear model: same features, same validation-chosen strength); a symbol with fewer
    than 20 rows in a split gets no prediction."""
    X = pset.X[:, :-1]
    tr, va, te = (pset.end_rows(s) for s in ("train", "val", "test"))
    lags = fam.SHALLOW_LAGS
    F = {name: fam.tree_features(X, rows, lags) for name, rows in
         (("train", tr), ("val", va), ("test", te))}
    owner = {name: pset.symbol_of_row[rows] for name, rows in
             (("train", tr), ("val", va), ("test", te))}
    out = np.full((len(te), 3), np.nan)
    for j in np.unique(owner["test"]):
        m = {name: owner[name] == j for name in owner}
        if min(int(v.sum()) for v in m.values()) < 20:
            continue
        model = fam.fit_linear(F["train"][m["train"]], pset.y[tr][m["train"]].astype(np.int64),
                               F["val"][m["val"]], pset.y[va][m["val"]].astype(np.int64),
                               seed=settings.seed)
        out[m["test"]] = fam.predict_linear(model, F["test"][m["test"]])
    return out


def _fit_per_symbol(pset: PanelSet, settings: Settings, family: str = "lstm") -> np.ndarray:
    """A per-symbol network (``family``: ``lstm``, the per-symbol assets' model, ``gru`` or
    ``alstm``): one model per symbol on its own rows of the fold, early-stopped on its own
    validation loss."""
    te_all = pset.end_rows("test")
    out = np.full((len(te_all), 3), np.nan)
    X = pset.X[:, :-1]
    for j in np.unique(pset.symbol_of_row[te_all]):
        own = pset.symbol_of_row == j
        lo, hi = np.flatnonzero(own)[[0, -1]]
        rows = {s: pset.end_rows(s)[own[pset.end_rows(s)]] - lo for s in
                ("train", "val", "test")}
        if min(len(r) for r in rows.values()) < 20:
            continue
        one = PanelSet(X=np.ascontiguousarray(X[lo:hi + 1]), y=pset.y[lo:hi + 1],
                       dates=pset.dates[lo:hi + 1], bounds=pset.bounds,
                       features=pset.features[:-1], mean=pset.mean[:-1],
                       scale=pset.scale[:-1], lookback=settings.lookback, rows=rows)
        make = fam.make_net_factory(family)
        res = train_models([one], settings, make_net=make)[0]
        net = make(X.shape[1], settings)
        net.load_state_dict(res.state)
        out[pset.symbol_of_row[te_all] == j] = fam.predict_windows(
            net, one.X, rows["test"], settings.lookback)
    return out


MIN_SYMBOLS = 5
"""Fewest symbols a comparison takes: a daily cross-sectional rank IC needs at least 5 names a
date (``stats.daily_rank_ic``)."""


class Comparison:
    """Runs a :class:`CompareSpec` on clean frames; :meth:`run` returns the JSON-ready result."""

    def __init__(self, frames: dict[str, pd.DataFrame], settings: Settings, spec: CompareSpec,
                 overrides: dict[str, Any] | None = None,
                 progress: Callable[[str, int], None] | None = None) -> None:
        if len(frames) < MIN_SYMBOLS:
            raise ValueError(f"a comparison needs at least {MIN_SYMBOLS} symbols (the daily "
                             f"cross-sectional rank IC ranks {MIN_SYMBOLS} or more a date), "
                             f"got {len(frames)}")
        self.frames, self.spec = frames, spec
        self.settings = settings
        self.overrides = overrides or {}
        self.pooled = _pooled_settings(settings, self.overrides)
        self.progress = progress or (lambda text, step: None)

    @property
    def tuned(self) -> tuple[str, ...]:
        """The families whose settings a search chooses (none unless ``tune_trials > 0``)."""
        return tuple(f for f in self.spec.families if f in POOLED) if self.spec.tune_trials \
            else ()

    def configurations(self) -> int:
        """Configurations tried per horizon and target: one per family, a tuned family once
        per trial."""
        n_trials = self.spec.tune_trials + 1
        return sum(n_trials if f in self.tuned else 1 for f in self.spec.families)

    def steps(self) -> int:
        """Units of work (fits) the run reports to ``progress``."""
        fits = sum(f != "ensemble" for f in self.spec.families) + 1  # + factors
        searches = len(self.tuned) * (self.spec.tune_trials + 1)
        return len(self.spec.horizons) * len(self.spec.targets) * (self.spec.folds * fits
                                                                   + searches)

    def run(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        out: dict[str, Any] = {"spec": self.spec.as_dict(), "symbols": len(self.frames),
                               "pooled_settings": self.pooled.as_dict(), "runs": []}
        if self.tuned:
            out["tuning"] = {"space": {k: list(v) for k, v in tuning.SPACE.items()},
                             "fixed": sorted(k for k in tuning.KNOBS if k in self.overrides),
                             "families": list(self.tuned), "fold": tuning.SEARCH_FOLD,
                             "n_trials": self.spec.tune_trials + 1, "seed": self.spec.seed,
                             "metric": "mean daily rank IC on validation dates, then log loss"}
        for h in self.spec.horizons:
            for target in self.spec.targets:
                out["runs"].append(self._one(h, target))
        out["configurations_tried"] = len(out["runs"]) * self.configurations()
        for run in out["runs"]:
            run["significance"] = corrected_significance(run, out["configurations_tried"])
        out["seconds"] = time.perf_counter() - t0
        return out

    def _one(self, horizon: int, target: str) -> dict[str, Any]:
        lookback = max(self.pooled.lookback, self.settings.lookback)
        panel = build_panel(self.frames, self.settings, horizon, target)
        folds = walk_forward_folds(panel.all_dates, self.settings.replace(lookback=lookback),
                                   self.spec.folds, horizon)
        chosen, searches = self._search(panel, folds, f"h={horizon} {target}")
        preds: dict[str, Predictions] = {}
        for fold in folds:
            self._fold(panel, fold, preds, f"h={horizon} {target} fold {fold.index}/"
                                           f"{len(folds)}", chosen)
        result = summarize(preds, horizon, self.spec)
        result.update(horizon=horizon, target=target,
                      folds=[{"fold": f.index, **f.describe()} for f in folds])
        if searches:
            result["tuning"] = searches
        return result

    def _search(self, panel: Panel, folds: list[Fold], where: str
                ) -> tuple[dict[str, Settings], dict[str, dict[str, Any]]]:
        """Each tuned family's chosen settings and its search (:func:`tuning.search` on the
        first fold's training and validation dates; the test dates of every fold come after)."""
        if not self.tuned:
            return {}, {}
        n_trials = self.spec.tune_trials
        fold = folds[tuning.SEARCH_FOLD - 1]
        first_test = min(f.test[0] for f in folds)
        batch = None if "batch_size" in self.overrides else pooled_batch
        chosen, searches = {}, {}
        for family in self.tuned:
            def on_trial(i: int, row: dict[str, Any], family: str = family) -> None:
                self.progress(f"{where}: tuning {family} trial {i + 1}/{n_trials + 1} (val IC "
                              f"{row['val_ic']:+.3f})", 1)

            found = tuning.search(family, panel, fold, first_test, self.pooled, n_trials,
                                  self.spec.seed, self.spec.embedding, self.overrides, batch,
                                  on_trial)
            chosen[family] = self.pooled.replace(**found["chosen_settings"])
            searches[family] = found
        return chosen, searches

    def _fold(self, panel: Panel, fold: Fold, preds: dict[str, Predictions],
              where: str, chosen: dict[str, Settings] | None = None) -> None:
        """Every family fit on ``fold`` (a tuned family with its ``chosen`` settings; with
        another lookback on its own pooled set, its test rows aligned to the others')."""
        chosen = chosen or {}
        pset = pooled_set(panel, fold, self.pooled)
        by_lookback = {pset.lookback: pset}
        te = pset.end_rows("test")
        maj = majority_labels(pset, te)
        for name, score in _factor_scores(panel, pset, te).items():
            preds.setdefault(name, Predictions()).add(pset, te, fold, score, None, maj)
        self.progress(f"{where}: factors", 1)
        probas: dict[str, np.ndarray] = {}
        for family in self.spec.families:
            if family == "ensemble":
                continue
            t = time.perf_counter()

            def on_epoch(row: dict[str, float], family: str = family) -> None:
                self.progress(f"{where}: {family} epoch {int(row.get('epoch', 0))}", 0)

            if family in POOLED:
                own = chosen.get(family, self.pooled)
                if own.lookback not in by_lookback:
                    by_lookback[own.lookback] = pooled_set(panel, fold, own)
                fset = by_lookback[own.lookback]
                proba = _fit_deep(family, fset, _with_batch(own, fset, self.overrides),
                                  self.spec.embedding, on_epoch)
                if fset is not pset:
                    proba = _align(fset, pset, te, proba)
            elif family == "lgbm":
                proba = _fit_trees(pset, self.pooled)
            elif family == "linear":
                proba = _fit_linear(pset, self.pooled)
            elif family == LINEAR_PER_SYMBOL:
                proba = _fit_linear_per_symbol(pset, self.pooled)
            else:
                seq = pooled_set(panel, fold, self.settings)
                proba = _fit_per_symbol(seq, self.settings, family.split("@")[0])
                proba = _align(seq, pset, te, proba)
            probas[family] = proba
            p = preds.setdefault(family, Predictions())
            p.add(pset, te, fold, _score(proba), proba, maj)
            p.seconds += time.perf_counter() - t
            self.progress(f"{where}: {family} done", 1)
        if "ensemble" in self.spec.families:
            members = [probas[f] for f in (*POOLED, *SHALLOW) if f in probas]
            proba = fam.ensemble_proba(members)
            preds.setdefault("ensemble", Predictions()).add(pset, te, fold, _score(proba),
                                                            proba, maj)


def _align(src: PanelSet, dst: PanelSet, dst_rows: np.ndarray,
           proba: np.ndarray) -> np.ndarray:
    """``proba`` of ``src``'s test rows placed on ``dst``'s test rows (same symbol and date;
    NaN where ``src`` has no prediction, e.g. a longer lookback)."""
    s_rows = src.end_rows("test")
    key = pd.MultiIndex.from_arrays([src.symbol_of_row[s_rows], src.dates[s_rows]])
    frame = pd.DataFrame(proba, index=key)
    want = pd.MultiIndex.from_arrays([dst.symbol_of_row[dst_rows], dst.dates[dst_rows]])
    return frame.reindex(want).to_numpy()


def _factor_scores(panel: Panel, pset: PanelSet, rows: np.ndarray) -> dict[str, np.ndarray]:
    per_symbol = panel.factors()
    sym, src = pset.symbol_of_row[rows], pset.source_row[rows]
    out = {}
    for name in fam.FACTORS:
        series = np.full(len(rows), np.nan)
        for j in np.unique(sym):
            m = sym == j
            series[m] = per_symbol[j][name][src[m]]
        out[name] = series
    return out


# ---- statistics ------------------------------------------------------------------------------

def _per_symbol_edges(p: Predictions, proba: np.ndarray, q: float = 0.05) -> dict[str, Any]:
    """Per symbol: accuracy vs its majority class, one-sided binomial p, BH across symbols."""
    y, sym, maj = p.cat("y"), p.cat("symbols"), p.cat("majority")
    ok = np.all(np.isfinite(proba), axis=1)
    hit = proba.argmax(axis=1) == y
    pvals, edges = [], []
    for j in np.unique(sym[ok]):
        m = ok & (sym == j)
        n, k = int(m.sum()), int(hit[m].sum())
        base = float(np.mean(y[m] == maj[m]))
        edges.append(k / n - base)
        pvals.append(sps.binomtest(k, n, min(max(base, 1e-9), 1 - 1e-9),
                                   alternative="greater").pvalue)
    pv = np.asarray(pvals)
    rejected, _adj = stats.benjamini_hochberg(pv, q)
    return {"symbols": len(pv), "significant_raw": int(np.sum(pv < q)),
            "significant_bh": int(rejected.sum()), "q": q,
            "mean_edge": float(np.mean(edges)) if edges else float("nan")}


def _family_row(name: str, p: Predictions, horizon: int, spec: CompareSpec) -> dict[str, Any]:
    dates, score, fwd = p.cat("dates"), p.cat("score"), p.cat("fwd")
    ic = stats.daily_rank_ic(dates, score, fwd)
    row: dict[str, Any] = {"family": name, "kind": "factor" if not p.proba else "model",
                           "predictions": int(np.isfinite(score).sum()),
                           "seconds": p.seconds}
    row["ic"] = stats.ic_summary(ic, horizon)
    folds = p.cat("fold")
    row["ic_by_fold"] = {}
    for f in np.unique(folds):
        m = folds == f
        fic = stats.daily_rank_ic(dates[m], score[m], fwd[m])
        row["ic_by_fold"][int(f)] = float(fic.mean()) if len(fic) else float("nan")
    ls = stats.long_short(dates, score, fwd, spec.quantile, spec.cost_bps, horizon,
                          symbols=p.cat("symbols"))
    row["long_short"] = {k: v for k, v in ls.items() if k != "series"}
    row["_ic_series"] = ic
    row["_ls_series"] = ls["series"]
    if p.proba:
        proba, y = p.cat("proba"), p.cat("y")
        ok = np.all(np.isfinite(proba), axis=1)
        row["classification"] = stats.pooled_classification(
            dates[ok], y[ok], proba[ok], spec.n_resamples, spec.block, spec.seed)
        row["majority_accuracy"] = float(np.mean(y[ok] == p.cat("majority")[ok]))
        row["per_symbol"] = _per_symbol_edges(p, proba)
    return row


def corrected_significance(run: dict[str, Any], configurations: int) -> dict[str, Any] | None:
    """The best model family's (highest mean IC) two-sided IC p-value, raw and corrected for
    ``configurations`` tried (Bonferroni, Sidak): the chance that the best of that many
    configurations looks this good with no edge. Hansen's SPA test (``run["spa"]``) covers the
    choice among the families on test dates; the search's trials were scored on validation
    dates only and enter here, through ``configurations``. None without a model family."""
    models = [r for r in run["families"] if r["kind"] == "model"]
    if not models:
        return None
    best = max(models, key=lambda r: r["ic"]["mean"])
    p = float(best["ic"]["p"])
    return {"family": best["family"], "t": best["ic"]["t"], "p_raw": p,
            "configurations": int(configurations),
            "p_bonferroni": tuning.bonferroni(p, configurations),
            "p_sidak": tuning.sidak(p, configurations)}


def summarize(preds: dict[str, Predictions], horizon: int, spec: CompareSpec) -> dict[str, Any]:
    """The statistics of one horizon and target's predictions (see the module doc)."""
    rows = [_family_row(name, p, horizon, spec) for name, p in preds.items()]
    factors = [r for r in rows if r["kind"] == "factor"]
    models = [r for r in rows if r["kind"] == "model"]
    best_factor = max(factors, key=lambda r: r["ic"]["mean"])
    bench = best_factor["_ic_series"]
    for r in models:
        both = pd.concat([r["_ic_series"], bench], axis=1, join="inner").dropna()
        r["vs_best_factor"] = {"factor": best_factor["family"], **stats.paired_test(
            (both.iloc[:, 0] - both.iloc[:, 1]).to_numpy(), spec.n_resamples, spec.block,
            spec.seed)}
    spa = None
    joined = pd.concat([bench] + [r["_ic_series"] for r in models], axis=1,
                       join="inner").dropna()
    if models and len(joined) >= 3:
        spa = stats.spa_test(-joined.iloc[:, 0].to_numpy(), -joined.iloc[:, 1:].to_numpy(),
                             spec.n_resamples, spec.block, spec.seed)
        spa["best_model"] = models[int(spa["best_model"])]["family"]
        spa["benchmark"] = best_factor["family"]
    series = {r["family"]: {"ic": r.pop("_ic_series"), "long_short": r.pop("_ls_series")}
              for r in rows}
    return {"families": rows, "best_factor": best_factor["family"], "spa": spa,
            "_series": series}
