"""The comparison's tree family (``lgbm``: LightGBM, ``families.fit_trees``) against
scikit-learn's histogram gradient boosting on the same tree features, walk-forward folds,
defaults (learning rate 0.1, 31 leaves, 20 rows a leaf, 255 bins) and early stopping on the
validation dates (the mean daily rank IC of the validation rows, 20 rounds of patience, at
most 200, each cut at its best round). Prints each one's pooled rank IC, t, accuracy and fit
time: the measurement behind the family's choice of library. Run it on demo data, never to
choose anything on real prices.

    .venv/bin/lstm-assets demo-data --mode weak --symbols 164 --years 5 --out /tmp/weak/raw
    .venv/bin/python scripts/trees_vs_lightgbm.py /tmp/weak/raw
"""

import sys
import time
from collections.abc import Callable

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from lstm_assets.core.research import families as fam
from lstm_assets.core.research import selection, stats
from lstm_assets.core.research.compare import POOLED_SETTINGS
from lstm_assets.core.research.panel import (
    build_panel,
    pooled_set,
    read_frames,
    walk_forward_folds,
)
from lstm_assets.core.settings import Settings

Score = Callable[[np.ndarray, np.ndarray], float]


def fit_hgb(Ftr: np.ndarray, ytr: np.ndarray, Fva: np.ndarray, yva: np.ndarray,
            Fte: np.ndarray, val_ic: Score) -> tuple[np.ndarray, int]:
    """scikit-learn's boosting, stopped by the same validation score and patience as
    ``fit_trees`` and cut at its best round."""
    keep = np.ones(len(yva), dtype=bool)

    def scorer(est: HistGradientBoostingClassifier, X: np.ndarray, y: np.ndarray) -> float:
        if len(y) != len(yva):  # the training sample sklearn also scores: not used to stop
            return 0.0
        return val_ic(fam._full_proba(est.classes_, est.predict_proba(X)), keep)

    model = HistGradientBoostingClassifier(
        max_iter=fam.TREE_MAX_ROUNDS, learning_rate=0.1, max_leaf_nodes=31,
        early_stopping=True, n_iter_no_change=fam.TREE_PATIENCE, tol=0.0, scoring=scorer,
        random_state=0)
    model.fit(Ftr, ytr, X_val=Fva, y_val=yva)
    best = int(np.argmax(model.validation_score_[1:]))  # [0]: before the first round
    proba = next(p for k, p in enumerate(model.staged_predict_proba(Fte)) if k == best)
    return fam._full_proba(model.classes_, proba), best + 1


def fit_lgbm(Ftr: np.ndarray, ytr: np.ndarray, Fva: np.ndarray, yva: np.ndarray,
             Fte: np.ndarray, val_ic: Score) -> tuple[np.ndarray, int]:
    model = fam.fit_trees(Ftr, ytr, Fva, yva, seed=0, val_score=val_ic)
    return fam.predict_trees(model, Fte), int(model.best_iteration_)


def main(raw: str) -> None:
    s = Settings(num_threads=2).replace(**POOLED_SETTINGS)
    panel = build_panel(read_frames(raw, s), s)
    folds = walk_forward_folds(np.unique(np.concatenate(panel.dates)), s, 4)
    fits = {"sklearn hgb": fit_hgb, "lgbm": fit_lgbm}
    out: dict[str, list[tuple[np.ndarray, ...]]] = {k: [] for k in fits}
    seconds = dict.fromkeys(fits, 0.0)
    rounds: dict[str, list[int]] = {k: [] for k in fits}
    for fold in folds:
        pset = pooled_set(panel, fold, s)
        X = pset.X[:, :-1]
        tr, va, te = (pset.end_rows(k) for k in ("train", "val", "test"))
        Ftr, Fva, Fte = (fam.tree_features(X, r) for r in (tr, va, te))
        ytr, yva, yte = (pset.y[r].astype(np.int64) for r in (tr, va, te))
        val_ic = selection.validation_ic(pset)

        for name, fit in fits.items():
            t = time.perf_counter()
            with threadpool_limits(2):
                proba, best = fit(Ftr, ytr, Fva, yva, Fte, val_ic)
            seconds[name] += time.perf_counter() - t
            rounds[name].append(best)
            out[name].append((pset.dates[te], proba, pset.fwd[te], yte))
    for name, parts in out.items():
        dates, proba, fwd, y = (np.concatenate(col) for col in zip(*parts, strict=True))
        ic = stats.ic_summary(stats.daily_rank_ic(dates, proba[:, 2] - proba[:, 0], fwd))
        print(f"{name}: IC {ic['mean']:+.4f} t {ic['t']:+.2f} accuracy "
              f"{np.mean(proba.argmax(1) == y):.3f}; best rounds {rounds[name]}; fitting "
              f"{seconds[name]:.1f} s over {len(folds)} folds")


if __name__ == "__main__":
    main(sys.argv[1])
