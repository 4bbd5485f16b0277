"""``weak`` demo mode: the ``signal`` mode's pattern, shared by every symbol, at a strength whose
best achievable accuracy is only a few points above the majority class.

The gap is measured with the project's own code: each raw file goes through
:func:`~lstm_assets.core.ingest.read_raw` and :func:`~lstm_assets.core.clean.clean_frame` with
the default settings (3 classes, the default FLAT band fit on the train split), and
:func:`~lstm_assets.core.evaluate.oracle_proba` gives the Bayes class probabilities of every
labelled day from the generator's truth. The oracle's accuracy is its expected accuracy (the mean
of its largest class probability, the figure the evaluation reports); the majority class's is the
share of the most frequent label. :func:`universe_gap` is the measurement behind
:data:`~lstm_assets.core.demo.WEAK_SIGNAL_STRENGTH` (run on ``signal`` mode at several
``signal_strength`` values: a ``signal`` spec at that strength writes the same files as ``weak``
mode).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_assets import cli
from lstm_assets.core.clean import clean_frame
from lstm_assets.core.demo import MODES, WEAK_SIGNAL_STRENGTH, DemoSpec, generate
from lstm_assets.core.evaluate import load_truth, oracle_proba
from lstm_assets.core.ingest import list_raw_files, read_raw
from lstm_assets.core.settings import Settings


@dataclass(frozen=True)
class Gap:
    """Oracle minus majority-class accuracy on every labelled day, in points."""

    per_symbol: dict[str, float]
    pooled: float
    """The oracle's accuracy over all days of all symbols minus that of the class most frequent
    over all of them (what one model pooled over the symbols could at best gain on it)."""
    oracle: float
    majority: float
    days: int


def oracle_gap(raw: Path, settings: Settings | None = None) -> Gap:
    """The oracle-minus-majority gap of every demo file in ``raw`` (truth in its sibling
    ``demo_truth``), per symbol and pooled."""
    settings = settings or Settings()
    per_symbol: dict[str, float] = {}
    best: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for sym, path in sorted(list_raw_files(raw).items()):
        frame, _ = clean_frame(read_raw(path, settings)[0], settings, str(path))
        rows = frame[frame["label"] >= 0]
        truth = load_truth(raw.parent / "demo_truth", sym)
        assert truth is not None
        proba = oracle_proba(frame, truth, rows["date"].to_numpy())
        assert proba is not None
        y = rows["label"].to_numpy().astype(int)
        per_symbol[sym] = 100 * (proba.max(1).mean() - np.bincount(y, minlength=3).max() / len(y))
        best.append(proba.max(1))
        labels.append(y)
    y_all = np.concatenate(labels)
    oracle = float(np.concatenate(best).mean())
    majority = float(np.bincount(y_all, minlength=3).max() / len(y_all))
    return Gap(per_symbol, 100 * (oracle - majority), oracle, majority, len(y_all))


def universe_gap(root: Path, spec: DemoSpec) -> Gap:
    """Generate ``spec`` (no defects, parquet: quick to read) under ``root`` and measure it."""
    raw = root / spec.mode / "raw"
    generate(raw, replace(spec, defect_share=0.0, fmt="parquet"))
    return oracle_gap(raw)


def test_weak_signal_oracle_a_few_points_above_majority(tmp_path: Path) -> None:
    """20 symbols x 5 years: the weak pattern lifts the oracle 1-6 points above the majority
    class when pooled; the signal mode's pattern lifts it far more."""
    weak = universe_gap(tmp_path, DemoSpec(symbols=20, years=5, seed=3, mode="weak"))
    assert weak.days > 20 * 3 * 252  # about 4 years a symbol after the indicators' warm-up
    assert 1.0 < weak.pooled < 6.0, weak
    assert max(weak.per_symbol.values()) < 10.0, weak.per_symbol
    signal = universe_gap(tmp_path, DemoSpec(symbols=4, years=5, seed=3, mode="signal"))
    assert signal.pooled > 3 * weak.pooled and signal.pooled > 15.0, signal


# Figures of the ``signal`` and ``null`` modes' output for one small spec: a change to their
# random streams (or to what they plant) changes them.
FINGERPRINT_SPEC = DemoSpec(symbols=2, years=2, seed=5, defect_share=0.5)
FINGERPRINT: dict[str, dict[str, object]] = {
    "signal": {
        "SYN001": {"rows": 504, "open": 14657.7021815, "high": 14923.2873425,
                   "low": 14375.1055055, "close": 14639.8588535, "volume": 1014693362.0,
                   "micro_order_flow": -16.1088881705, "fwd_mean": -0.44181994901420146,
                   "fwd_std": 8.498707518868784, "defects": []},
        "SYN002": {"rows": 509, "open": 30038.723744, "high": 30548.871192,
                   "low": 29545.105432, "close": 30064.02357, "volume": 1085370444.0,
                   "micro_order_flow": -12.27434978258, "fwd_mean": -0.2187371382464044,
                   "fwd_std": 7.27970463076673,
                   "defects": ["duplicate_dates", "junk_strings", "nan_runs", "unsorted_dates"]},
    },
    "null": {
        "SYN001": {"rows": 504, "open": 15333.44863, "high": 15539.091641, "low": 15124.067619,
                   "close": 15329.770271, "volume": 729808879.0,
                   "micro_order_flow": -16.1088881705, "fwd_mean": 0.1197619047619048,
                   "fwd_std": 8.498707518868784, "defects": []},
        "SYN002": {"rows": 509, "open": 45495.029493, "high": 46051.946545,
                   "low": 44979.078518, "close": 45550.690529, "volume": 752046675.0,
                   "micro_order_flow": -12.27434978258, "fwd_mean": 0.1197619047619048,
                   "fwd_std": 7.27970463076673,
                   "defects": ["duplicate_dates", "junk_strings", "nan_runs", "unsorted_dates"]},
    },
}
PRICE_COLUMNS = ("open", "high", "low", "close", "volume", "micro_order_flow")


def fingerprint(raw: Path) -> dict[str, object]:
    """Row count and column sums of each raw file (order-free: defects shuffle rows), sums of
    its truth, and the manifest's defects."""
    manifest = json.loads((raw.parent / "demo_truth" / "manifest.json").read_text())
    out: dict[str, object] = {}
    for sym, path in sorted(list_raw_files(raw).items()):
        df = pd.read_csv(path, usecols=list(PRICE_COLUMNS))
        truth = pd.read_parquet(raw.parent / "demo_truth" / f"{sym}.parquet")
        out[sym] = {"rows": len(df), **{c: float(df[c].sum()) for c in PRICE_COLUMNS},
                    "fwd_mean": float(truth["fwd_mean"].sum()),
                    "fwd_std": float(truth["fwd_std"].sum()),
                    "defects": manifest["symbols"][sym]["defects"]}
    return out


def _same(got: dict[str, object], want: dict[str, object]) -> None:
    assert got.keys() == want.keys()
    for sym, g in got.items():
        w = want[sym]
        assert isinstance(g, dict) and isinstance(w, dict)
        assert g["rows"] == w["rows"] and g["defects"] == w["defects"], sym
        for key in (*PRICE_COLUMNS, "fwd_mean", "fwd_std"):
            assert g[key] == pytest.approx(w[key], rel=1e-9, abs=1e-12), (sym, key)


def test_weak_signal_modes_unchanged(tmp_path: Path) -> None:
    """``signal`` and ``null`` mode write the recorded figures; ``weak`` mode writes exactly
    what ``signal`` mode writes at the weak strength (the same streams), and its prices differ
    from ``null`` mode's by the planted mean alone."""
    raws = {}
    for mode in MODES:
        raws[mode] = tmp_path / mode / "raw"
        generate(raws[mode], replace(FINGERPRINT_SPEC, mode=mode))
    for mode in ("signal", "null"):
        _same(fingerprint(raws[mode]), FINGERPRINT[mode])  # type: ignore[arg-type]
    same_strength = tmp_path / "same" / "raw"
    generate(same_strength, replace(FINGERPRINT_SPEC, signal_strength=WEAK_SIGNAL_STRENGTH))
    for sym, path in list_raw_files(raws["weak"]).items():
        assert path.read_bytes() == (same_strength / path.name).read_bytes(), sym
    # a clean symbol: log(close) of weak minus null mode is the running sum of the planted mean
    spec = DemoSpec(symbols=1, years=2, seed=5, defect_share=0.0)
    closes, means = {}, {}
    for mode in ("weak", "null"):
        raw = tmp_path / f"clean_{mode}" / "raw"
        generate(raw, replace(spec, mode=mode))
        closes[mode] = np.log(pd.read_csv(raw / "SYN001.csv")["close"].to_numpy())
        means[mode] = pd.read_parquet(raw.parent / "demo_truth" / "SYN001.parquet")["fwd_mean"]
    planted = (means["weak"] - means["null"]).to_numpy()[:-1]
    assert np.abs(planted).max() > 0
    np.testing.assert_allclose(closes["weak"] - closes["null"], np.r_[0.0, np.cumsum(planted)],
                               atol=1e-5)


def test_weak_signal_unknown_mode_is_refused_naming_the_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'signal', 'weak', 'null'"):
        generate(tmp_path / "raw", DemoSpec(symbols=1, years=2, mode="strong"))
    with pytest.raises(SystemExit):
        cli.main(["demo-data", "--mode", "strong", "--out", str(tmp_path / "raw")])


def test_weak_signal_cli_writes_files_and_records_the_mode(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    rc = cli.main(["demo-data", "--mode", "weak", "--symbols", "2", "--years", "2",
                   "--seed", "5", "--out", str(raw)])
    assert rc == 0
    assert sorted(p.name for p in raw.iterdir()) == ["SYN001.csv", "SYN002.csv"]
    manifest = json.loads((tmp_path / "demo_truth" / "manifest.json").read_text())
    assert manifest["spec"]["mode"] == "weak"
    assert manifest["spec"]["signal_strength"] == WEAK_SIGNAL_STRENGTH
    assert sorted(manifest["symbols"]) == ["SYN001", "SYN002"]
