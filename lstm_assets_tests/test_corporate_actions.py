"""Splits, reverse splits and price jumps in raw price files (``core.corporate_actions`` and the
clean stage's rules 3a and 8): detected, back-adjusted or excluded, and recorded.

Every test name contains ``corporate_action``: ``pytest -k corporate_action`` selects them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_assets.core.clean import DATA_ADJUSTMENTS_KEY, EXCLUDED_LABEL, clean_frame
from lstm_assets.core.corporate_actions import excluded_rows, find_splits, nearest_ratio
from lstm_assets.core.ingest import read_raw
from lstm_assets.core.report import _data_adjustments_lines
from lstm_assets.core.sequences import build_sequences
from lstm_assets.core.settings import Settings
from lstm_assets.core.stages import Layout, run_clean, run_symbol
from lstm_assets.core.storage import InputError, parquet_metadata, read_json

TODAY = pd.Timestamp("2024-06-28")
DAY = 450  # the file row of the split or jump: inside the clean frame, after the warm-up


def bars(n: int = 600, seed: int = 0, vol: float = 0.015) -> pd.DataFrame:
    """~n business days of a random walk as a raw OHLCV file (real files' header)."""
    rng = np.random.default_rng(seed)
    close = 40 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.004, n))
    return pd.DataFrame({
        "Date": pd.bdate_range("2014-01-02", periods=n).strftime("%Y-%m-%d"),
        "Open": open_,
        "High": np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.005, n))),
        "Low": np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.005, n))),
        "Close": close,
        "Volume": np.round(1e6 * np.exp(rng.normal(0, 0.3, n))),
    })


def shifted(df: pd.DataFrame, day: int, price: float, volume: float = 1.0) -> pd.DataFrame:
    """``df`` with prices times ``price`` and volume times ``volume`` from row ``day`` on (an
    unadjusted split: price 1/7, volume 7 for 7:1; a crash: price 0.55, volume 1)."""
    out = df.copy()
    for col in ("Open", "High", "Low", "Close"):
        out.loc[day:, col] *= price
    out.loc[day:, "Volume"] = np.round(out.loc[day:, "Volume"] * volume)
    return out


def clean(tmp_path: Path, df: pd.DataFrame, settings: Settings,
          name: str = "XYZ.csv") -> tuple[pd.DataFrame, dict]:
    p = tmp_path / name
    df.to_csv(p, index=False)
    raw, _ = read_raw(p)
    return clean_frame(raw, settings, str(p), today=TODAY)


def max_abs_log_return(frame: pd.DataFrame) -> float:
    return float(np.abs(np.diff(np.log(frame["close"].to_numpy()))).max())


def row_of(frame: pd.DataFrame, date: str) -> int:
    return int(np.flatnonzero(frame["date"] == pd.Timestamp(date))[0])


def date_of(df: pd.DataFrame, day: int) -> str:
    return str(df["Date"].iloc[day])


# ---- splits -------------------------------------------------------------------------------------

def test_corporate_action_split_7_for_1_adjusted(tmp_path: Path, tiny: Settings) -> None:
    base = bars()
    frame, info = clean(tmp_path, shifted(base, DAY, 1 / 7, 7), tiny)
    assert info["corporate_actions"] == [{"date": date_of(base, DAY), "kind": "split",
                                          "ratio": 7.0, "volume_confirmed": True}]
    assert info["price_jumps"] == []
    assert max_abs_log_return(frame) < 0.2  # the adjusted close is continuous
    # back-adjusted: the rows before the split are divided by 7 (volume x 7), so the whole
    # series is the unsplit one in post-split units, and so are its labels
    ref, _ = clean(tmp_path, base, tiny, "REF.csv")
    np.testing.assert_allclose(frame["close"].to_numpy(), ref["close"].to_numpy() / 7, rtol=1e-9)
    np.testing.assert_allclose(frame["low"].to_numpy(), ref["low"].to_numpy() / 7, rtol=1e-9)
    np.testing.assert_allclose(frame["volume"].to_numpy(), ref["volume"].to_numpy() * 7)
    np.testing.assert_array_equal(frame["label"].to_numpy(), ref["label"].to_numpy())


def test_corporate_action_reverse_split_1_for_5(tmp_path: Path, tiny: Settings) -> None:
    base = bars(seed=1)
    frame, info = clean(tmp_path, shifted(base, DAY, 5.0, 1 / 5), tiny)
    assert info["corporate_actions"] == [{"date": date_of(base, DAY), "kind": "reverse split",
                                          "ratio": 0.2, "volume_confirmed": True}]
    assert info["price_jumps"] == []
    assert max_abs_log_return(frame) < 0.2


def test_corporate_action_split_without_volume_move(tmp_path: Path, tiny: Settings) -> None:
    """A 2:1 split whose volume did not move (e.g. already adjusted) is still detected."""
    base = bars(seed=2)
    frame, info = clean(tmp_path, shifted(base, DAY, 0.5, 1.0), tiny)
    assert info["corporate_actions"] == [{"date": date_of(base, DAY), "kind": "split",
                                          "ratio": 2.0, "volume_confirmed": False}]
    assert max_abs_log_return(frame) < 0.2


def test_corporate_action_splits_compound(tmp_path: Path, tiny: Settings) -> None:
    base = bars(seed=3)
    df = shifted(shifted(base, 420, 1 / 3, 3), 500, 0.5, 2)
    frame, info = clean(tmp_path, df, tiny)
    assert [(a["date"], a["ratio"]) for a in info["corporate_actions"]] == [
        (date_of(base, 420), 3.0), (date_of(base, 500), 2.0)]
    ref, _ = clean(tmp_path, base, tiny, "REF.csv")
    np.testing.assert_allclose(frame["close"].to_numpy(), ref["close"].to_numpy() / 6, rtol=1e-9)


def test_corporate_action_adj_close_file_needs_no_adjustment(tmp_path: Path,
                                                             tiny: Settings) -> None:
    """A file with ``Adj Close`` uses it (ingest): the split is not in it, nothing to adjust."""
    base = bars(seed=4)
    df = shifted(base, DAY, 1 / 7, 7).assign(**{"Adj Close": base["Close"] / 7})
    frame, info = clean(tmp_path, df, tiny)
    assert info["corporate_actions"] == [] and info["price_jumps"] == []
    assert max_abs_log_return(frame) < 0.2


def test_corporate_action_normal_file_has_none(tmp_path: Path, tiny: Settings) -> None:
    frame, info = clean(tmp_path, bars(seed=5), tiny)
    assert info["corporate_actions"] == [] and info["price_jumps"] == []


def test_corporate_action_crash_at_the_open_only_is_a_split() -> None:
    """A 50% fall that opened near the previous close (an intraday crash) is no 2:1 split; the
    same fall that shows at the open is. Ratios match within the tolerance only."""
    s = Settings()
    close = np.r_[np.full(50, 100.0), np.full(50, 50.0)] * np.exp(
        np.random.default_rng(0).normal(0, 0.01, 100))
    gap_open = np.r_[close[:1], close[:-1]]
    gap_open[50] = close[50]  # opens at the new level
    assert [x.pos for x in find_splits(close, gap_open, None, s)] == [50]
    intraday = gap_open.copy()
    intraday[50] = close[49] * 0.99  # opens at the old level, falls during the day
    assert find_splits(close, intraday, None, s) == []
    ratios = nearest_ratio(np.array([7.1, 6.7, 1.82, 0.2, 0.5 * 1.04]), 0.03)
    np.testing.assert_array_equal(np.isnan(ratios), [False, True, True, False, True])
    assert ratios[0] == 7.0 and ratios[3] == 0.2


def test_corporate_action_bad_print_is_no_split(tmp_path: Path, tiny: Settings) -> None:
    """A close x1.5 for one day and back the next (a bad print: both moves are split ratios)
    is no split: nothing is adjusted, both days are price jumps."""
    base = bars(seed=9)
    df = base.copy()
    df.loc[DAY, "Close"] *= 1.5
    frame, info = clean(tmp_path, df, tiny)
    assert info["corporate_actions"] == []
    assert [x["date"] for x in info["price_jumps"]] == [date_of(base, DAY), date_of(base, DAY + 1)]
    ref, _ = clean(tmp_path, base, tiny, "REF.csv")
    j = row_of(frame, date_of(base, DAY))
    np.testing.assert_allclose(frame["close"].to_numpy()[:j], ref["close"].to_numpy()[:j])
    # a 3-day bad print by 7x is no split either
    df = base.copy()
    df.loc[DAY:DAY + 2, ["Open", "High", "Low", "Close"]] /= 7
    _, info = clean(tmp_path, df, tiny, "BAD3.csv")
    assert info["corporate_actions"] == [] and len(info["price_jumps"]) == 2

# ---- price jumps --------------------------------------------------------------------------------

def crash_file() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A random walk and the same walk with a -45% day (no split ratio near 1/0.55 = 1.82)."""
    base = bars(seed=6)
    return base, shifted(base, DAY, 0.55, 1.0)


@pytest.mark.parametrize("horizon", [1, 3])
def test_corporate_action_jump_excluded(tmp_path: Path, tiny: Settings, horizon: int) -> None:
    settings = tiny.replace(horizon=horizon)
    base, df = crash_file()
    frame, info = clean(tmp_path, df, settings)
    assert info["corporate_actions"] == []
    assert [(x["date"], x["policy"]) for x in info["price_jumps"]] == [
        (date_of(base, DAY), "exclude")]
    assert info["price_jumps"][0]["log_return"] == pytest.approx(np.log(0.55), abs=0.1)
    j, h, lb, n = row_of(frame, date_of(base, DAY)), horizon, settings.lookback, len(frame)
    window = np.zeros(n, dtype=bool)
    window[j - h:j + lb] = True
    np.testing.assert_array_equal(excluded_rows(np.array([j]), n, h, lb), window)
    label = frame["label"].to_numpy()
    assert (label[window] == EXCLUDED_LABEL).all() and frame["fwd_return"][window].isna().all()
    # no other row lost its label: only the last h rows and the volatility warm-up have none
    other = ~window & ~frame["vol_est"].isna().to_numpy()
    other[n - h:] = False
    assert (label[other] >= 0).all()
    # no training, validation or test sample ends in the excluded rows
    seq, _ = build_sequences(frame, settings)
    for split in ("train", "val", "test"):
        assert not window[seq.end_rows(split)].any(), split
    # the FLAT band is not inflated after the jump: vol_est as without the jump
    ref, _ = clean(tmp_path, base, settings, "REF.csv")
    keep, _ = clean(tmp_path, df, settings.replace(jump_policy="keep"), "KEEP.csv")
    after = slice(j + 2, j + 15)
    np.testing.assert_allclose(frame["vol_est"].to_numpy()[after],
                               ref["vol_est"].to_numpy()[after], rtol=0.15)
    assert (keep["vol_est"].to_numpy()[after] > 3 * ref["vol_est"].to_numpy()[after]).all()


def test_corporate_action_jump_in_train_split_left_out_of_the_scaler(tmp_path: Path,
                                                                     tiny: Settings) -> None:
    """A jump inside the train split: the rows it spoils (label EXCLUDED_LABEL) are left out
    of the scaler's fit, so the 1-day return's scale is that of the file without the jump."""
    base = bars(seed=6)
    df = shifted(base, 150, 0.55, 1.0)
    frame, info = clean(tmp_path, df, tiny)
    seq, _ = build_sequences(frame, tiny)
    j = row_of(frame, date_of(base, 150))
    assert j < seq.bounds.train_end and (frame["label"].to_numpy()[j] == EXCLUDED_LABEL)
    ref_seq, _ = build_sequences(clean(tmp_path, base, tiny, "REF.csv")[0], tiny)
    kept = clean(tmp_path, df, tiny.replace(jump_policy="keep"), "KEEP.csv")[0]
    keep_seq, _ = build_sequences(kept, tiny)
    col = seq.features.index("tech_ret_1")
    assert seq.scale[col] == pytest.approx(ref_seq.scale[col], rel=0.05)
    assert keep_seq.scale[col] > 1.5 * ref_seq.scale[col]  # what the jump does when kept
    # the parquet path (the sequences stage) fits the same scaler
    layout = Layout.from_dirs(tmp_path / "raw", tmp_path / "wh")
    (tmp_path / "raw").mkdir()
    df.to_csv(tmp_path / "raw" / "XYZ.csv", index=False)
    run_clean(layout, "XYZ", tiny)
    from lstm_assets.core.sequences import build_sequences_from_parquet
    stage_seq, _ = build_sequences_from_parquet(layout.warehouse.clean_frame("XYZ"), tiny)
    assert stage_seq.scale[col] == pytest.approx(ref_seq.scale[col], rel=0.05)


def test_corporate_action_jump_kept(tmp_path: Path, tiny: Settings) -> None:
    base, df = crash_file()
    frame, info = clean(tmp_path, df, tiny.replace(jump_policy="keep"))
    assert [(x["date"], x["policy"]) for x in info["price_jumps"]] == [
        (date_of(base, DAY), "keep")]
    j = row_of(frame, date_of(base, DAY))
    label = frame["label"].to_numpy()
    assert (label[j - 1:j + tiny.lookback] >= 0).all()
    assert label[j - 1] == 0  # the crash itself is a DOWN label


def test_corporate_action_jump_fails(tmp_path: Path, tiny: Settings) -> None:
    base, df = crash_file()
    with pytest.raises(InputError) as e:
        clean(tmp_path, df, tiny.replace(jump_policy="fail"), "CRASH.csv")
    msg = str(e.value)
    assert "CRASH.csv" in msg and date_of(base, DAY) in msg and "price jump" in msg
    assert "jump_policy=exclude" in e.value.fix


def test_corporate_action_sigma_rule(tmp_path: Path, tiny: Settings) -> None:
    """A move below jump_log_return but beyond jump_sigmas robust std is a jump too."""
    base = bars(seed=7, vol=0.005)  # robust std ~0.005: a -20% day is ~45 of them
    _, info = clean(tmp_path, shifted(base, DAY, 0.8), tiny)
    assert [x["date"] for x in info["price_jumps"]] == [date_of(base, DAY)]
    _, info = clean(tmp_path, shifted(base, DAY, 0.8), tiny.replace(jump_sigmas=0), "OFF.csv")
    assert info["price_jumps"] == []


# ---- recorded with the clean frame and in the report ---------------------------------------------

def test_corporate_action_recorded_in_clean_frame_file(tmp_path: Path, tiny: Settings) -> None:
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    base = bars(seed=8)
    shifted(shifted(base, DAY, 1 / 7, 7), 520, 0.55).to_csv(raw_dir / "SPL.csv", index=False)
    layout = Layout.from_dirs(raw_dir, tmp_path / "wh")
    meta = run_clean(layout, "SPL", tiny)
    stored = parquet_metadata(layout.warehouse.clean_frame("SPL"), DATA_ADJUSTMENTS_KEY)
    assert stored == {"corporate_actions": meta["corporate_actions"],
                      "price_jumps": meta["price_jumps"]}
    assert [a["ratio"] for a in stored["corporate_actions"]] == [7.0]
    assert [x["date"] for x in stored["price_jumps"]] == [date_of(base, 520)]
    text = "\n".join(_data_adjustments_lines({"data_adjustments": stored}))
    assert "split 7:1" in text and date_of(base, 520) in text and "left out" in text
    none = "\n".join(_data_adjustments_lines(
        {"data_adjustments": {"corporate_actions": [], "price_jumps": []}}))
    assert "Data adjustments: none" in none
    assert _data_adjustments_lines({}) == []


def test_corporate_action_in_evaluation_report(tmp_path: Path, tiny: Settings) -> None:
    """The symbol's report (JSON and Markdown) lists the split and the jump of its raw file."""
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    base = bars(seed=10)
    shifted(shifted(base, DAY, 0.5, 2), 520, 0.55).to_csv(raw_dir / "SPL.csv", index=False)
    base.to_csv(raw_dir / "CALM.csv", index=False)
    layout = Layout.from_dirs(raw_dir, tmp_path / "wh")
    for sym in ("SPL", "CALM"):
        run_symbol(layout, sym, tiny)
    rep = read_json(layout.warehouse.report("SPL"))
    assert [(a["date"], a["ratio"]) for a in rep["data_adjustments"]["corporate_actions"]] == [
        (date_of(base, DAY), 2.0)]
    assert [x["date"] for x in rep["data_adjustments"]["price_jumps"]] == [date_of(base, 520)]
    md = layout.warehouse.report("SPL", ".md").read_text()
    assert "Data adjustments:" in md and "split 2:1" in md and date_of(base, 520) in md
    calm = layout.warehouse.report("CALM", ".md").read_text()
    assert "Data adjustments: none" in calm


def test_corporate_action_jump_in_latest_window_abstains(tmp_path: Path, tiny: Settings) -> None:
    """A jump in the last ``lookback`` days: the model never trained on such a window, so the
    next-day signal abstains and says why; without the jump it does not say so."""
    from lstm_assets.core.signals import ABSTAIN, latest_signals

    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    base = bars(seed=11)
    n = len(base)
    shifted(base, n - 5, 0.55).to_csv(raw_dir / "LATE.csv", index=False)
    base.to_csv(raw_dir / "CALM.csv", index=False)
    layout = Layout.from_dirs(raw_dir, tmp_path / "wh")
    for sym in ("LATE", "CALM"):
        run_symbol(layout, sym, tiny)
    table = latest_signals(layout.warehouse, tiny)
    rows = table.frame.set_index("symbol")
    assert rows.loc["LATE", "signal"] == ABSTAIN
    assert "price jump" in rows.loc["LATE", "reason"]
    calm = rows.loc["CALM"]
    assert calm["reason"] is None or "price jump" not in str(calm["reason"])
