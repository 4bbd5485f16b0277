"""Cleaning rules, labels, split + embargo, scaler fit on train only, windows as views."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstm_assets.core.clean import clean_frame, feature_columns
from lstm_assets.core.features import technical_features
from lstm_assets.core.ingest import read_raw
from lstm_assets.core.sequences import build_sequences, window_view
from lstm_assets.core.settings import Settings
from lstm_assets.core.splits import split_bounds
from lstm_assets.core.storage import InputError


def ohlcv(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame({
        "date": pd.bdate_range("2015-01-01", periods=n),
        "open": close * (1 + rng.normal(0, 0.002, n)),
        "high": close * 1.01, "low": close * 0.99, "close": close,
        "volume": rng.integers(1000, 2000, n).astype(float),
    })


def test_clean_sorts_dedupes_and_keeps_last_conflict(tiny: Settings) -> None:
    df = ohlcv()
    dup_exact = df.iloc[[250]]
    conflict = df.iloc[[300]].assign(close=df["close"].iloc[300] * 1.5)
    messy = pd.concat([df.iloc[::-1], dup_exact, conflict])  # reversed order + duplicates
    frame, info = clean_frame(messy, tiny)
    assert info["was_unsorted"]
    assert info["rows_exact_duplicate"] == 1
    assert info["rows_conflicting_duplicate"] == 1
    assert frame["date"].is_monotonic_increasing and frame["date"].is_unique
    d60 = df["date"].iloc[300]
    kept = frame.loc[frame["date"] == d60, "close"].item()
    assert kept == pytest.approx(conflict["close"].item())


def test_clean_has_no_nan_or_inf_and_drops_future_rows(tiny: Settings) -> None:
    df = ohlcv()
    df["feat_a"] = np.random.default_rng(1).normal(size=len(df))
    df.loc[100:102, "feat_a"] = np.nan  # short gap: forward-filled
    df.loc[200, "feat_a"] = np.inf
    df["all_nan"] = np.nan
    future = df.iloc[[-1]].assign(date=pd.Timestamp.today().normalize() + pd.Timedelta(days=30))
    frame, info = clean_frame(pd.concat([df, future]).replace([np.inf], np.nan), tiny)
    feats = feature_columns(frame)
    assert "all_nan" not in feats and "all_nan" in info["columns_dropped"]
    assert np.isfinite(frame[feats].to_numpy()).all()
    assert info["rows_future_date"] == 1
    assert set(frame["label"].unique()) <= {-1, 0, 1, 2}


def test_leakage_label_band_fit_on_train_only(tiny: Settings) -> None:
    frame, info = clean_frame(ohlcv(600), tiny)
    b = split_bounds(len(frame), tiny)
    train = frame["label"].to_numpy()[b.train_start:b.train_end]
    assert np.mean(train == 1) == pytest.approx(tiny.flat_share, abs=0.02)
    # changing the test period's prices cannot change k (it is fit on train only)
    raw2 = ohlcv(600)
    raw2.loc[500:, ["open", "high", "low", "close"]] *= 3.0
    frame2, info2 = clean_frame(raw2, tiny)
    assert info2["label_rule"]["k"] == pytest.approx(info["label_rule"]["k"])
    assert frame["label"].iloc[-1] == -1  # the last day's future is unknown


def test_abs_fixed_rule_is_the_old_scripts_band(tiny: Settings) -> None:
    s = tiny.replace(flat_rule="abs_fixed", flat_abs=0.001)
    frame, _ = clean_frame(ohlcv(), s)
    lab = frame[frame["label"] >= 0]
    assert (lab.loc[lab["label"] == 1, "fwd_return"].abs() <= 0.001).all()


def test_leakage_embargo_no_label_overlap() -> None:
    s = Settings(lookback=30, horizon=5, embargo=2)
    b = split_bounds(1000, s)
    assert b is not None
    gap = s.effective_gap()
    assert gap == 5
    # the last train label's price window [t, t+h] ends before the first val sample's begins
    assert b.train_end - 1 + s.horizon < b.val_start
    assert b.val_end - 1 + s.horizon < b.test_start
    assert b.val_start - b.train_end == gap and b.test_start - b.val_end == gap
    assert b.test_end == 1000 - s.horizon and b.train_start == s.lookback - 1


def test_short_history_is_a_clear_error(tiny: Settings) -> None:
    with pytest.raises(InputError, match="history too short"):
        clean_frame(ohlcv(60), tiny, path="x.csv")


def test_leakage_scaler_fit_on_train_only(tiny: Settings) -> None:
    frame, _ = clean_frame(ohlcv(600), tiny)
    seq, _ = build_sequences(frame, tiny)
    frame2 = frame.copy()
    feats = feature_columns(frame)
    frame2.loc[seq.bounds.train_end:, feats] = frame2.loc[seq.bounds.train_end:, feats] * 7 + 3
    seq2, _ = build_sequences(frame2, tiny)
    np.testing.assert_allclose(seq.mean, seq2.mean)
    np.testing.assert_allclose(seq.scale, seq2.scale)
    train_x = seq.X[: seq.bounds.train_end]
    assert np.abs(train_x.mean(0)).max() < 1e-3


def test_constant_feature_does_not_divide_by_zero(tiny: Settings) -> None:
    df = ohlcv(600)
    df["const"] = 5.0
    frame, _ = clean_frame(df, tiny)
    seq, info = build_sequences(frame, tiny)
    assert "const" in info["constant_features"]
    assert np.isfinite(seq.X).all()


def test_windows_are_views_not_copies(tiny: Settings) -> None:
    frame, _ = clean_frame(ohlcv(600), tiny)
    seq, _ = build_sequences(frame, tiny)
    w = window_view(seq.X, tiny.lookback)
    assert np.shares_memory(w, seq.X)
    assert w.shape == (len(seq.X) - tiny.lookback + 1, tiny.lookback, seq.X.shape[1])
    t = 40
    np.testing.assert_array_equal(w[t - tiny.lookback + 1], seq.X[t - tiny.lookback + 1: t + 1])


def test_sequence_file_at_most_1_5x_matrix(tmp_path, tiny: Settings) -> None:
    frame, _ = clean_frame(ohlcv(600), tiny)
    seq, _ = build_sequences(frame, tiny)
    p = tmp_path / "s.npz"
    seq.save(p)
    assert p.stat().st_size <= 1.5 * seq.X.nbytes


def test_leakage_features_use_past_only() -> None:
    """Changing every price after day t changes no technical feature at or before day t."""
    df = ohlcv(500)
    base = technical_features(df.drop(columns="date"))
    t = 350
    shifted = df.copy()
    rng = np.random.default_rng(5)
    shifted.loc[t + 1:, ["open", "high", "low", "close"]] *= rng.uniform(0.5, 2.0, (500 - t - 1, 1))
    shifted.loc[t + 1:, "volume"] *= 10
    after = technical_features(shifted.drop(columns="date"))
    pd.testing.assert_frame_equal(base.iloc[: t + 1], after.iloc[: t + 1])
    assert not base.iloc[t + 1:].equals(after.iloc[t + 1:])


def test_read_raw_aliases_and_junk(tmp_path) -> None:
    df = ohlcv(50)
    df = df.rename(columns={"date": "Date", "close": "Close", "open": "Open"})
    df["Adj Close"] = df["Close"] / 2
    df["Junk"] = df["volume"].astype(str)
    df.loc[3, "Junk"] = "#VALUE!"
    p = tmp_path / "ABC.csv"
    df.to_csv(p, index=False)
    out, info = read_raw(p)
    assert {"date", "close", "open", "Junk".lower()} <= set(out.columns)
    np.testing.assert_allclose(out["close"], df["Adj Close"])  # adjusted close preferred
    assert info.junk_cells == 1
