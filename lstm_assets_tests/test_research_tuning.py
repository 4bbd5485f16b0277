"""The settings search of the model comparison (``core/research/tuning.py``): trials proposed by
Optuna's seeded sampler, scored on validation dates only (never a test date), the best by
validation IC refit, and every trial counted in the significance correction. Tiny demo data
and networks (one OpenMP/BLAS thread, see ``test_research_compare.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from lstm_assets import compare_cli
from lstm_assets.core.demo import DemoSpec, generate
from lstm_assets.core.research import report, tuning
from lstm_assets.core.research.compare import CompareSpec, Comparison
from lstm_assets.core.research.panel import (
    build_panel,
    pooled_set,
    read_frames,
    walk_forward_folds,
)
from lstm_assets.core.settings import Settings

TINY = Settings(lookback=10, hidden_size=8, num_layers=1, max_epochs=2, batch_size=64,
                bootstrap_samples=50, device="cpu", num_threads=1)
FAST: dict[str, Any] = {"max_epochs": 2, "early_stop_patience": 1}
SPEC = CompareSpec(families=("lstm",), folds=2, n_resamples=50, tune_trials=2, seed=3)


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def frames5(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """5 signal demo symbols x 3 years (no defects), read by the pipeline's own code."""
    root = tmp_path_factory.mktemp("tune5")
    generate(root / "raw", DemoSpec(symbols=5, years=3, seed=7, defect_share=0.0))
    return read_frames(root / "raw", TINY)


def test_tuning_trials_come_from_the_seed() -> None:
    """Optuna's seeded sampler: trial 0 is the base, then distinct configurations of the
    space, the same for the same seed and scores; a fixed knob is not searched."""
    base = Settings(hidden_size=32, lookback=20, dropout=0.1, learning_rate=2e-3)
    calls: list[dict[str, Any]] = []

    def score(knobs: dict[str, Any]) -> float:
        calls.append(knobs)
        return -abs(knobs["hidden_size"] - 64) - 100 * knobs["dropout"]

    trials = tuning.optimize(base, 6, 0, score)
    assert calls == trials  # each configuration scored once, in order
    assert trials == tuning.optimize(base, 6, 0, score)  # the same seed, the same trials
    assert trials != tuning.optimize(base, 6, 1, score)
    assert len(trials) == 7
    assert trials[0] == {"hidden_size": 32, "lookback": 20, "dropout": 0.1,
                         "input_group_lasso": 5.0, "learning_rate": 2e-3}
    keys = {tuple(t.values()) for t in trials}
    assert len(keys) == 7  # distinct, none repeats the defaults
    for t in trials[1:]:
        assert set(t) == set(tuning.KNOBS)
        assert all(t[k] in tuning.SPACE[k] for k in tuning.KNOBS)
    # past the random start-up, TPE follows the best trials: the last 10 of 30 trials find the
    # best hidden size and no dropout more often than random draws (1 in 9) would (seeds 0-4:
    # 3-6 of the last 10, against 0-3 of the first 10 random ones)
    many = tuning.optimize(base, 29, 0, score)
    late = sum(t["hidden_size"] == 64 and t["dropout"] == 0.0 for t in many[20:])
    early = sum(t["hidden_size"] == 64 and t["dropout"] == 0.0 for t in many[1:11])
    assert late >= 3 and late > early, (early, late)
    # a non-finite score is a failed trial, and the search goes on
    nan_trials = tuning.optimize(base, 3, 0, lambda k: float("nan"))
    assert len({tuple(t.values()) for t in nan_trials}) == 4
    # a knob fixed by --set is not searched; a base value outside the grid is trial 0's own
    fixed = tuning.optimize(base.replace(hidden_size=48), 5, 0, score, fixed={"hidden_size"})
    assert {t["hidden_size"] for t in fixed} == {48}
    odd = tuning.knob_choices(base.replace(dropout=0.2))
    assert odd["dropout"] == (0.0, 0.1, 0.2, 0.3) and "hidden_size" in odd
    with pytest.raises(ValueError, match="search space holds 323 other"):
        tuning.optimize(base, 324, 0, score)
    with pytest.raises(ValueError, match="tune_trials must be >= 0"):
        CompareSpec(tune_trials=-1)


def test_tuning_search_never_sees_a_test_date(frames5: dict[str, pd.DataFrame],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole comparison with a search: every set the search trains or scores on ends
    before the first test date, and the chosen trial is the one with the best validation IC."""
    seen: list[tuple[np.datetime64, int, np.ndarray]] = []
    real = tuning.train_models

    def spy(seqs: list[Any], settings: Settings, **kw: Any) -> Any:
        (ps,) = seqs
        rows = np.concatenate([ps.end_rows(s) for s in ("train", "val", "test")])
        seen.append((ps.dates.max(), len(ps.end_rows("test")), ps.dates[rows]))
        return real(seqs, settings, **kw)

    monkeypatch.setattr(tuning, "train_models", spy)
    settings = TINY.replace(**FAST)
    cmp = Comparison(frames5, settings, SPEC, FAST)
    steps: list[int] = []
    cmp.progress = lambda text, step: steps.append(step)
    result = cmp.run()
    assert sum(steps) == cmp.steps() == 2 * 2 + 3  # folds x (factors, lstm) + 3 trials
    (run,) = result["runs"]
    folds = walk_forward_folds(build_panel(frames5, settings).all_dates,
                               settings.replace(lookback=20), 2, 1)
    assert [f"{f.test[0]} .. {f.test[1]}" for f in folds] == [f["test"] for f in run["folds"]]
    first_test = min(f.test[0] for f in folds)
    assert len(seen) == 3  # one fit per trial, no other fit went through the search
    for last, n_test, dates in seen:
        assert n_test == 0 and last < first_test and dates.max() <= folds[0].val[1]
    search = run["tuning"]["lstm"]
    assert search["fold"] == 1 and search["n_trials"] == 3 == len(search["trials"])
    assert search["trials"][0]["settings"] == {k: getattr(cmp.pooled, k) for k in tuning.KNOBS}
    assert len({tuple(t["settings"].values()) for t in search["trials"]}) == 3
    scores = [(t["val_ic"], -t["val_log_loss"]) for t in search["trials"]]
    assert search["chosen"] == max(range(3), key=lambda i: scores[i])
    assert search["chosen_settings"] == search["trials"][search["chosen"]]["settings"]
    assert all(np.isfinite(t["val_ic"]) and t["val_dates"] >= 20 for t in search["trials"])
    assert result["tuning"]["n_trials"] == 3 and result["tuning"]["families"] == ["lstm"]

    # every trial counts: 1 family x 1 horizon x 1 target x 3 trials; corrected p >= raw p
    assert result["configurations_tried"] == 3
    sig = run["significance"]
    assert sig["family"] == "lstm" and sig["configurations"] == 3
    assert sig["p_bonferroni"] >= sig["p_sidak"] >= sig["p_raw"]
    assert sig["p_bonferroni"] == pytest.approx(min(1.0, 3 * sig["p_raw"]))
    md = report.markdown(result)
    assert "3 configurations were tried on validation dates only; p-values are corrected for " \
           "them" in md
    assert "### Tuning" in md and md.count("**chosen**") == 1
    assert "corrected for 3 configurations" in report.verdict(run, 3)

    # the search refuses a set or a fold that reaches the test dates
    panel = build_panel(frames5, settings)
    with pytest.raises(RuntimeError, match="first test date"):
        tuning._check_no_test(pooled_set(panel, folds[0], settings), first_test)
    with pytest.raises(RuntimeError, match="would see test dates"):
        tuning.search("lstm", panel, folds[1], first_test, settings, 2, 0, 0)


def test_tuning_off_counts_families_and_cli_flag(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    compare_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["compare", "--raw-dir", str(tmp_path), "--tune", "4"])
    assert compare_cli.spec_of(args).tune_trials == 4
    args = parser.parse_args(["compare", "--raw-dir", str(tmp_path)])
    assert compare_cli.spec_of(args).tune_trials == 0
    frames = {f"S{i}": pd.DataFrame() for i in range(5)}
    off = Comparison(frames, TINY, CompareSpec(families=("lstm", "gru", "lgbm", "ensemble")))
    assert off.tuned == () and off.configurations() == 4
    on = Comparison(frames, TINY, CompareSpec(families=("lstm", "gru", "lgbm", "ensemble"),
                                              tune_trials=4))
    assert on.tuned == ("lstm", "gru") and on.configurations() == 2 * 5 + 2
