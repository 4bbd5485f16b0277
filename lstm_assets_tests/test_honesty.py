"""Oracle and null checks on demo data: the pipeline learns what is there, and nothing else.

Small configs (2 symbols instead of 8, the default LSTM) so they run in CI on a CPU in a few
minutes; tolerances are sized for that. ``lstm-assets honesty`` runs the same checks at full size.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lstm_assets.core.settings import Settings
from lstm_assets.core.stages.honesty import check_demo, format_summary

# Calibrated on this exact config (default LSTM, 2 symbols x 20 years, seed 3): the model scored
# 66.8% against an oracle of 67.9% (1.1 points below) and a best baseline of 37.3% (logistic
# regression on the last day). Before the input group lasso (settings.input_group_lasso) it
# scored 52.6%: the LSTM memorized its ~2,850 training windows through the ~90 features that
# carry no signal. A model that learns nothing sits ~33 points below the oracle.
ORACLE_TOL = 0.05  # the issue's 3 points, plus the sampling noise of 2 symbols' test windows
BASELINE_MARGIN = 0.15  # the model must beat every baseline's mean accuracy by at least this
NULL_TOL = 0.03  # on null data: model minus majority, 2 points + sampling noise of 2 symbols

SMALL = Settings(max_epochs=40, bootstrap_samples=100, device="cpu")


@pytest.mark.slow
def test_oracle_model_near_oracle_and_above_baselines(tmp_path: Path) -> None:
    res = check_demo(tmp_path, "signal", SMALL, symbols=2, years=20, seed=3)
    m = res["mean"]
    print(format_summary(res))
    assert m["oracle"] - m["model"] < ORACLE_TOL, res
    for base in ("majority", "prior", "logreg_last"):
        assert m["model"] - m[base] > BASELINE_MARGIN, (base, res)


@pytest.mark.slow
def test_null_model_does_not_beat_majority(tmp_path: Path) -> None:
    res = check_demo(tmp_path, "null", SMALL, symbols=2, years=20, seed=3)
    m = res["mean"]
    print(format_summary(res))
    assert m["model"] - m["majority"] <= NULL_TOL, res


def test_leakage_null_demo_features_do_not_predict_next_return(tmp_path: Path) -> None:
    """On null data no column of any file may correlate with the next day's return.

    (It once did: a per-symbol seed that replayed the market stream put the next day's market
    shock into the first symbol's opening gap.)"""
    import numpy as np
    import pandas as pd

    from lstm_assets.core.demo import DemoSpec, generate

    generate(tmp_path / "raw", DemoSpec(symbols=3, years=8, seed=3, mode="null",
                                        defect_share=0.0))
    for f in sorted((tmp_path / "raw").glob("*.csv")):
        df = pd.read_csv(f)
        fwd = np.log(df["close"]).diff().shift(-1)
        # price levels are not model inputs (and drift, so they correlate with anything by chance)
        feats = df.drop(columns=["date", "open", "high", "low", "close", "volume"])
        corr = feats.iloc[300:-1].corrwith(fwd.iloc[300:-1]).abs()
        # ~2,000 days: chance correlations stay near 0.02 (max of ~300 about 0.07); the leak
        # this guards against was 0.47
        assert corr.max() < 0.15, (f.name, corr.sort_values().tail(3).to_dict())
