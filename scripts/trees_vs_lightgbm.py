"""scikit-learn's histogram gradient boosting (the comparison's ``hgb`` family) against LightGBM:
the same tree features, walk-forward folds, defaults (learning rate 0.1, 31 leaves) and early
stopping on the validation dates. Prints each one's pooled rank IC, t, accuracy and fit time.
Run it on demo data, never to choose anything on real prices. LightGBM is not a project
dependency: install it into the venv first (``.venv/bin/pip install lightgbm``).

    .venv/bin/lstm-assets demo-data --mode weak --symbols 164 --years 5 --out /tmp/weak/raw
    .venv/bin/python scripts/trees_vs_lightgbm.py /tmp/weak/raw
"""

import sys
import time

import lightgbm as lgb
import numpy as np
from threadpoolctl import threadpool_limits

from lstm_assets.core.research import families as fam
from lstm_assets.core.research import stats
from lstm_assets.core.research.compare import POOLED_SETTINGS
from lstm_assets.core.research.panel import (
    build_panel,
    pooled_set,
    read_frames,
    walk_forward_folds,
)
from lstm_assets.core.settings import Settings


def fit_hgb(Ftr: np.ndarray, ytr: np.ndarray, Fva: np.ndarray, yva: np.ndarray,
            Fte: np.ndarray) -> np.ndarray:
    model = fam.fit_trees(Ftr, ytr, Fva, yva, seed=0, balanced=False)
    return fam.predict_trees(model, Fte)


def fit_lgbm(Ftr: np.ndarray, ytr: np.ndarray, Fva: np.ndarray, yva: np.ndarray,
             Fte: np.ndarray) -> np.ndarray:
    clf = lgb.LGBMClassifier(n_estimators=100, learning_rate=0.1, num_leaves=31,
                             random_state=0, n_jobs=2, verbose=-1)
    # patience 20 rounds, as hgb's 2 chunks of 10
    clf.fit(Ftr, ytr, eval_set=[(Fva, yva)], eval_metric="multi_logloss",
            callbacks=[lgb.early_stopping(20, verbose=False)])
    return clf.predict_proba(Fte, num_iteration=clf.best_iteration_)


def main(raw: str) -> None:
    s = Settings(num_threads=2).replace(**POOLED_SETTINGS)
    panel = build_panel(read_frames(raw, s), s)
    folds = walk_forward_folds(np.unique(np.concatenate(panel.dates)), s, 4)
    fits = {"hgb": fit_hgb, "lgbm": fit_lgbm}
    out: dict[str, list[tuple[np.ndarray, ...]]] = {k: [] for k in fits}
    seconds = dict.fromkeys(fits, 0.0)
    for fold in folds:
        pset = pooled_set(panel, fold, s)
        X = pset.X[:, :-1]
        tr, va, te = (pset.end_rows(k) for k in ("train", "val", "test"))
        Ftr, Fva, Fte = (fam.tree_features(X, r) for r in (tr, va, te))
        ytr, yva, yte = (pset.y[r].astype(np.int64) for r in (tr, va, te))
        for name, fit in fits.items():
            t = time.perf_counter()
            with threadpool_limits(2):
                proba = fit(Ftr, ytr, Fva, yva, Fte)
            seconds[name] += time.perf_counter() - t
            out[name].append((pset.dates[te], proba, pset.fwd[te], yte))
    for name, parts in out.items():
        dates, proba, fwd, y = (np.concatenate(col) for col in zip(*parts, strict=True))
        ic = stats.ic_summary(stats.daily_rank_ic(dates, proba[:, 2] - proba[:, 0], fwd))
        print(f"{name}: IC {ic['mean']:+.4f} t {ic['t']:+.2f} accuracy "
              f"{np.mean(proba.argmax(1) == y):.3f}; fitting {seconds[name]:.1f} s over "
              f"{len(folds)} folds")


if __name__ == "__main__":
    main(sys.argv[1])
