"""The figure a comparison chooses each pooled family's size by on validation dates.

A family is judged on test by the mean daily rank IC of its score P(UP) - P(DOWN); its size (a
network's epoch, the trees' rounds, the linear model's L2 strength) is chosen on the fold's
validation dates by the same figure (:mod:`~lstm_assets.core.research.compare` says why not the
validation loss).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import nn

from lstm_assets.core.research import stats
from lstm_assets.core.research.families import ValScore, predict_windows
from lstm_assets.core.research.panel import PanelSet


def validation_ic(pset: PanelSet) -> ValScore:
    """``score(proba, keep)``: the mean daily rank IC of P(UP) - P(DOWN) against the forward
    return over ``pset``'s validation rows (those ``keep`` marks), the figure the comparison
    judges a family by on test, so each family's size (boosting rounds, epochs) is chosen by
    it on validation dates. NaN when no date has an IC."""
    va = pset.end_rows("val")
    dates, fwd = pset.dates[va], pset.fwd[va]

    def score(proba: np.ndarray, keep: np.ndarray) -> float:
        ic = stats.daily_rank_ic(dates[keep], proba[:, 2] - proba[:, 0], fwd[keep])
        return float(ic.mean()) if len(ic) else float("nan")

    return score


def net_validation_ic(pset: PanelSet) -> Callable[[nn.Module], float]:
    """:func:`validation_ic` of a network's predictions of ``pset``'s validation windows: the
    ``val_score`` the comparison gives the training loop."""
    score = validation_ic(pset)
    va = pset.end_rows("val")
    every = np.ones(len(va), dtype=bool)
    return lambda net: score(predict_windows(net, pset.X, va, pset.lookback), every)
