"""The catalogue of bad raw inputs (issue 4): each is handled by a documented rule or fails alone.

Every test here is an input-handling test, so ``pytest -k bad_input`` selects this module. Each
catalogue entry has its own test named ``test_bad_input_<entry>``; failures must raise
:class:`InputError` whose message names the file, the problem and the fix (``Fix: ...``). The
rules are in the docstrings of ``core/ingest.py`` and ``core/clean.py`` and in docs/real_data.md.
"""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_assets.core.clean import clean_frame, feature_columns
from lstm_assets.core.features import TECH_NAMES
from lstm_assets.core.ingest import (
    find_raw_file,
    invalid_raw_files,
    list_raw_files,
    read_raw,
    symbol_of,
)
from lstm_assets.core.sequences import SequenceSet, build_sequences
from lstm_assets.core.settings import Settings
from lstm_assets.core.splits import min_rows
from lstm_assets.core.stages import Layout, run_clean, run_raw
from lstm_assets.core.storage import InputError, Warehouse, normalize_symbol, symbol_path

TODAY = pd.Timestamp("2024-06-28")


def prices(n: int = 400, seed: int = 0, start: str = "2015-01-02") -> pd.DataFrame:
    """Real-looking daily bars with the real files' header: Date,Open,High,Low,Close,Volume."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.015, n)))
    open_ = close * (1 + rng.normal(0, 0.004, n))
    return pd.DataFrame({
        "Date": pd.bdate_range(start, periods=n).strftime("%Y-%m-%d"),
        "Open": open_.round(2),
        "High": (np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))).round(2),
        "Low": (np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))).round(2),
        "Close": close.round(2),
        "Volume": rng.integers(100_000, 2_000_000, n),
        "Name": "XYZ",
    })


def check_error(err: InputError | BaseException, path: Path | str, *words: str) -> str:
    """The message names the file, says the problem (``words``) and gives a fix."""
    msg = str(err)
    assert isinstance(err, InputError), msg
    assert str(path) in msg or Path(path).name in msg, msg
    for w in words:
        assert re.search(w, msg, re.IGNORECASE), f"{w!r} not in {msg!r}"
    assert "Fix: " in msg and len(err.fix) > 10, msg
    return msg


def read_and_clean(path: Path, settings: Settings) -> tuple[pd.DataFrame, dict]:
    raw, _ = read_raw(path)
    return clean_frame(raw, settings, str(path), today=TODAY)


# ---- the catalogue: core functions -------------------------------------------------------------

def test_bad_input_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "EMPTY.csv"
    p.write_text("")
    with pytest.raises(InputError) as e:
        read_raw(p)
    check_error(e.value, p, "empty")
    blank = tmp_path / "BLANK.csv"
    blank.write_text("\n\n  \n")
    with pytest.raises(InputError) as e:
        read_raw(blank)
    check_error(e.value, blank, "empty")


def test_bad_input_header_only(tmp_path: Path) -> None:
    p = tmp_path / "AMT.csv"  # exactly like the real AMT.csv
    p.write_text("Date,Open,High,Low,Close,Volume,Name\n")
    with pytest.raises(InputError) as e:
        read_raw(p)
    check_error(e.value, p, "header but no data rows", "add rows")


def test_bad_input_no_header(tmp_path: Path) -> None:
    p = tmp_path / "NOHEAD.csv"
    prices(50).to_csv(p, index=False, header=False)
    with pytest.raises(InputError) as e:
        read_raw(p)
    check_error(e.value, p, "no header line", "add a header line")


def test_bad_input_non_numeric_junk(tmp_path: Path, tiny: Settings) -> None:
    """Rule: a few junk strings become missing (counted); a close that is text is an error."""
    df = prices().astype({"Open": object, "Close": object})
    df.loc[10, "Open"] = "#VALUE!"
    df.loc[20, "Close"] = "n/a?"
    df.loc[30, "Close"] = "$1,234.50"  # currency and thousands separator: still a number
    p = tmp_path / "JUNK.csv"
    df.to_csv(p, index=False)
    raw, info = read_raw(p)
    assert info.junk_cells == 2 and info.junk_by_column == {"open": 1, "close": 1}
    assert raw["close"].iloc[30] == pytest.approx(1234.5)
    assert info.columns_dropped == {"Name": "text, not numbers"}
    frame, cinfo = clean_frame(raw, tiny, str(p), today=TODAY)
    assert cinfo["rows_no_close"] == 1  # the junk close row cannot be labelled: dropped
    assert np.isfinite(frame[feature_columns(frame)].to_numpy()).all()

    df["Close"] = "abc"
    bad = tmp_path / "TEXT.csv"
    df.to_csv(bad, index=False)
    with pytest.raises(InputError) as e:
        read_raw(bad)
    check_error(e.value, bad, "close column holds text", "abc", "plain numbers")


def test_bad_input_junk_after_first_block(tmp_path: Path) -> None:
    """A junk value far down a big file (after the CSV reader guessed the type) is still junk."""
    df = prices(30_000).astype({"Volume": object})
    df.loc[29_000, "Volume"] = "n.a."
    p = tmp_path / "BIG.csv"
    df.to_csv(p, index=False)
    raw, info = read_raw(p)
    assert info.junk_by_column == {"volume": 1} and raw["volume"].isna().sum() == 1


def test_bad_input_no_usable_close_column(tmp_path: Path, tiny: Settings) -> None:
    p = tmp_path / "NOCLOSE.csv"
    prices().drop(columns="Close").to_csv(p, index=False)
    with pytest.raises(InputError) as e:
        read_raw(p)
    check_error(e.value, p, "no close price column", "add a 'close' column")
    for label, value in (("missing", ""), ("not positive", "0")):
        q = tmp_path / f"ZERO{label[:3].upper()}.csv"
        prices().assign(Close=value).to_csv(q, index=False)
        with pytest.raises(InputError) as e:
            read_and_clean(q, tiny)
        check_error(e.value, q, "no row has a usable close", "positive prices")


def test_bad_input_all_nan_column(tmp_path: Path, tiny: Settings) -> None:
    """Rule: a column with no values is dropped and reported; the symbol still cleans."""
    p = tmp_path / "ALLNAN.csv"
    prices().assign(Dividend=np.nan, Volume=np.nan).to_csv(p, index=False)
    frame, info = read_and_clean(p, tiny)
    assert info["columns_dropped"]["dividend"] == "no values"
    assert "dividend" not in frame.columns
    assert info["columns_dropped"]["tech_volume_z_20"] == "no values"  # volume features too
    assert np.isfinite(frame[feature_columns(frame)].to_numpy()).all()


def test_bad_input_duplicate_dates_conflicting(tmp_path: Path, tiny: Settings) -> None:
    """Rule: exact duplicates are dropped; differing rows on one date keep the last line."""
    df = prices()
    fix = df.iloc[[200]].assign(Close=df["Close"].iloc[200] * 1.1)
    p = tmp_path / "DUP.csv"
    pd.concat([df, df.iloc[[100]], fix]).to_csv(p, index=False)
    frame, info = read_and_clean(p, tiny)
    assert info["rows_exact_duplicate"] == 1 and info["rows_conflicting_duplicate"] == 1
    assert info["conflicting_dates"] == [df["Date"].iloc[200]]
    assert frame["date"].is_unique
    d = pd.Timestamp(df["Date"].iloc[200])
    assert frame.loc[frame["date"] == d, "close"].item() == pytest.approx(fix["Close"].item())


def test_bad_input_unsorted_dates(tmp_path: Path, tiny: Settings) -> None:
    df = prices()
    p = tmp_path / "UNSORTED.csv"
    df.sample(frac=1, random_state=3).to_csv(p, index=False)
    frame, info = read_and_clean(p, tiny)
    assert info["was_unsorted"] and frame["date"].is_monotonic_increasing
    q = tmp_path / "SORTED.csv"
    df.to_csv(q, index=False)
    ref, _ = read_and_clean(q, tiny)
    pd.testing.assert_frame_equal(frame, ref)


def test_bad_input_future_dates(tmp_path: Path, tiny: Settings) -> None:
    """Rule: rows dated after today are dropped and counted; only-future rows are an error."""
    df = prices(400, start="2023-01-02")  # runs past TODAY (2024-06-28)
    p = tmp_path / "FUTURE.csv"
    df.to_csv(p, index=False)
    frame, info = read_and_clean(p, tiny)
    assert info["rows_future_date"] > 0
    assert frame["date"].max() <= TODAY
    q = tmp_path / "ALLFUTURE.csv"
    prices(200, start="2099-01-01").to_csv(q, index=False)
    with pytest.raises(InputError) as e:
        read_and_clean(q, tiny)
    check_error(e.value, q, "after today", "past trading dates")


def test_bad_input_mixed_date_formats(tmp_path: Path, tiny: Settings) -> None:
    """Rule: mixed formats are parsed value by value; dd/mm vs mm/dd is decided per column."""
    df = prices()
    d = pd.to_datetime(df["Date"])
    mixed = df["Date"].copy()
    mixed[1::3] = d[1::3].dt.strftime("%m/%d/%Y")
    mixed[2::3] = d[2::3].dt.strftime("%b %d, %Y")
    p = tmp_path / "MIXED.csv"
    df.assign(Date=mixed).to_csv(p, index=False)
    raw, info = read_raw(p)
    assert (raw["date"] == d).all()
    assert any("mixed formats" in n for n in info.notes)

    dayfirst = df.assign(Date=d.dt.strftime("%d/%m/%Y"))  # has days > 12: read day first
    q = tmp_path / "DMY.csv"
    dayfirst.to_csv(q, index=False)
    raw, _ = read_raw(q)
    assert (raw["date"] == d).all()

    junk = df.assign(Date="someday")
    r = tmp_path / "NODATE.csv"
    junk.to_csv(r, index=False)
    with pytest.raises(InputError) as e:
        read_raw(r)
    check_error(e.value, r, "dates could not be parsed", "someday", "YYYY-MM-DD")


@pytest.mark.parametrize("kind", ["epoch_s", "epoch_ms", "yyyymmdd", "offsets", "utf16"])
def test_bad_input_date_encodings(tmp_path: Path, kind: str) -> None:
    """Rule: epoch seconds/ms and YYYYMMDD numbers are dates; a UTC offset after a time keeps
    the local calendar date (an evening print at -05:00 is not the next day)."""
    d = pd.bdate_range("2020-01-01", periods=30)
    secs = (d - pd.Timestamp(0)) // pd.Timedelta("1s")
    col = {"epoch_s": secs, "epoch_ms": secs * 1000, "yyyymmdd": d.strftime("%Y%m%d"),
           "offsets": [f"{x:%Y-%m-%d}T20:00:00{'-05:00' if i % 2 else '+09:00'}"
                       for i, x in enumerate(d)],
           "utf16": d.strftime("%Y-%m-%d")}[kind]
    p = tmp_path / "D.csv"
    pd.DataFrame({"timestamp": col, "close": np.arange(30.0) + 1}).to_csv(
        p, index=False, encoding="utf-16" if kind == "utf16" else "utf-8")
    raw, _ = read_raw(p)
    assert raw["date"].tolist() == list(d)


def test_bad_input_semicolon_delimiter(tmp_path: Path, tiny: Settings) -> None:
    df = prices()
    p = tmp_path / "SEMI.csv"
    df.to_csv(p, index=False, sep=";")
    raw, info = read_raw(p)
    assert info.delimiter == ";" and raw["close"].tolist() == df["Close"].tolist()
    q = tmp_path / "EURO.csv"  # the European flavour: ';' with decimal commas
    df.to_csv(q, index=False, sep=";", decimal=",")
    raw2, info2 = read_raw(q)
    np.testing.assert_allclose(raw2["close"], df["Close"])
    assert any("decimal comma" in n for n in info2.notes)
    read_and_clean(q, tiny)


def test_bad_input_parquet_date_index(tmp_path: Path, tiny: Settings) -> None:
    df = prices().drop(columns="Name")
    df["Date"] = pd.to_datetime(df["Date"])
    p = tmp_path / "PQIDX.parquet"
    df.set_index("Date").to_parquet(p)
    raw, _ = read_raw(p)
    assert (raw["date"] == df["Date"]).all()
    q = tmp_path / "PQIDX2.parquet"  # an unnamed DatetimeIndex
    df.set_index("Date").rename_axis(None).to_parquet(q)
    raw2, _ = read_raw(q)
    assert (raw2["date"] == df["Date"]).all()
    read_and_clean(q, tiny)


def test_bad_input_history_too_short(tmp_path: Path, tiny: Settings) -> None:
    need = min_rows(tiny)
    p = tmp_path / "BHF.csv"  # like the real BHF.csv: about 20 rows
    prices(20).to_csv(p, index=False)
    with pytest.raises(InputError) as e:
        read_and_clean(p, tiny)
    msg = check_error(e.value, p, "history too short", "lookback 10", f"at least {need}")
    assert "20 trading day" in msg
    # Rule: a history just long enough drops long-warm-up indicators instead of failing
    q = tmp_path / "SHORT.csv"
    prices(need + 12).to_csv(q, index=False)
    frame, info = read_and_clean(q, tiny)
    assert len(frame) >= need
    assert any("warm-up" in why for why in info["columns_dropped"].values())
    build_sequences(frame, tiny)


def test_bad_input_constant_feature_over_train(tmp_path: Path, tiny: Settings) -> None:
    """Rule: a feature constant over the train rows gets scale 1: no divide-by-zero, finite X."""
    df = prices(500).assign(Flag=0.0)
    df.loc[420:, "Flag"] = 1.0  # constant over the train split, changes in the test split
    p = tmp_path / "CONST.csv"
    df.to_csv(p, index=False)
    frame, _ = read_and_clean(p, tiny)
    seq, info = build_sequences(frame, tiny)
    assert "flag" in info["constant_features"]
    j = seq.features.index("flag")
    assert seq.scale[j] == 1.0 and np.isfinite(seq.X).all()
    assert np.abs(seq.X).max() <= 10.0


def test_bad_input_inf_values(tmp_path: Path, tiny: Settings) -> None:
    df = prices().astype({"Close": object, "High": object})
    df.loc[50, "Close"] = "inf"
    df.loc[60, "High"] = "-inf"
    p = tmp_path / "INF.csv"
    df.to_csv(p, index=False)
    raw, info = read_raw(p)
    assert info.inf_cells == 2 and not np.isinf(raw.drop(columns="date").to_numpy()).any()
    frame, cinfo = clean_frame(raw, tiny, str(p), today=TODAY)
    assert cinfo["rows_no_close"] == 1
    assert cinfo["ohlc_cells_filled_from_close"]["high"] == 1
    assert np.isfinite(frame[feature_columns(frame)].to_numpy()).all()


def test_bad_input_corporate_action_unadjusted_split(tmp_path: Path, tiny: Settings) -> None:
    """Rule: a one-day move by a split ratio (here 7:1: price 1/7, volume x7) is back-adjusted
    and noted in ``corporate_actions``; the file passes with a continuous close."""
    df = prices()
    for col in ("Open", "High", "Low", "Close"):
        df.loc[300:, col] = (df.loc[300:, col] / 7).round(4)
    df.loc[300:, "Volume"] *= 7
    p = tmp_path / "SPLIT.csv"
    df.to_csv(p, index=False)
    frame, info = read_and_clean(p, tiny)
    assert info["corporate_actions"] == [{"date": df["Date"][300], "kind": "split",
                                          "ratio": 7.0, "volume_confirmed": True}]
    assert info["price_jumps"] == []
    assert np.abs(np.diff(np.log(frame["close"].to_numpy()))).max() < 0.2
    build_sequences(frame, tiny)


def test_bad_input_corporate_action_jump_with_policy_fail(tmp_path: Path,
                                                          tiny: Settings) -> None:
    """Rule: a price jump that is no split (here -45%) is excluded by default; with
    ``jump_policy=fail`` it fails, naming the date and the move."""
    df = prices()
    for col in ("Open", "High", "Low", "Close"):
        df.loc[300:, col] = (df.loc[300:, col] * 0.55).round(2)
    p = tmp_path / "JUMP.csv"
    df.to_csv(p, index=False)
    _, info = read_and_clean(p, tiny)
    assert [(j["date"], j["policy"]) for j in info["price_jumps"]] == [
        (df["Date"][300], "exclude")]
    with pytest.raises(InputError) as e:
        read_and_clean(p, tiny.replace(jump_policy="fail"))
    check_error(e.value, p, "price jump on " + df["Date"][300], "no split ratio",
                "jump_policy=exclude")

def test_bad_input_symbol_with_dot_or_lowercase(tmp_path: Path, tiny: Settings) -> None:
    raw_dir, wh = tmp_path / "raw", tmp_path / "wh"
    raw_dir.mkdir()
    prices().to_csv(raw_dir / "brk.b.csv", index=False)
    assert symbol_of(raw_dir / "brk.b.csv") == "BRK.B"
    assert symbol_of(raw_dir / "NYSE:lmt.csv") == "LMT"  # an exchange prefix is dropped
    assert symbol_of(raw_dir / "BRK-B.CSV.GZ") == "BRK-B"
    assert list(list_raw_files(raw_dir)) == ["BRK.B"]
    layout = Layout.from_dirs(raw_dir, wh)
    for sym in ("BRK.B", "brk.b", " Brk.B "):
        assert find_raw_file(raw_dir, sym) == raw_dir / "brk.b.csv"
    # find_raw_file looks only at names that may hold the symbol: an exchange prefix, and a
    # non-ASCII name whose upper case is the symbol ("ſ".upper() == "S"), are still found
    for name, sym in (("NYSE:lmt.csv", "LMT"), ("\u017fpy.csv", "SPY")):
        prices().to_csv(raw_dir / name, index=False)
        assert find_raw_file(raw_dir, sym) == raw_dir / name
        (raw_dir / name).unlink()
    meta = run_clean(layout, "brk.b", tiny)
    assert Path(meta["path"]) == wh / "clean_frames" / "BRK.B.parquet"
    assert pd.read_parquet(meta["path"])["close"].notna().all()
    # Rule: two files for one symbol fail that symbol (which one is current is not guessed)
    prices(seed=1).to_csv(raw_dir / "BRK.B.csv", index=False)
    assert list(list_raw_files(raw_dir)) == ["BRK.B"]
    with pytest.raises(InputError) as e:
        run_raw(layout, "BRK.B")
    check_error(e.value, "BRK.B.csv", "2 raw files map to symbol BRK.B", "brk.b.csv",
                "exactly one file")
    assert any("BRK.B" in m for m in invalid_raw_files(raw_dir))


@pytest.mark.parametrize("name", ["../etc/passwd", "..", "a/b", "a\\b", "/abs", "~root",
                                  "x" * 21, "", ".hidden", "A B", "%2e%2e"])
def test_bad_input_symbol_path_traversal(tmp_path: Path, name: str) -> None:
    """A symbol is validated before it becomes a path; nothing is read or written outside."""
    with pytest.raises(InputError) as e:
        normalize_symbol(name)
    assert "not a valid symbol" in str(e.value) and "Fix: " in str(e.value)
    wh = Warehouse(tmp_path / "wh")
    for make in (wh.clean_frame, wh.sequences, wh.model, wh.checkpoint, wh.report):
        with pytest.raises(InputError):
            make(name)
    with pytest.raises(InputError):
        symbol_path(tmp_path, name, ".csv")
    with pytest.raises(InputError):
        find_raw_file(tmp_path, name)
    assert not list((tmp_path / "wh").glob("**/*"))


def test_bad_input_file_name_path_traversal(tmp_path: Path, tiny: Settings) -> None:
    """Raw files whose name is no valid symbol are skipped (and reported), never used."""
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    good = prices()
    good.to_csv(raw_dir / "GOOD.csv", index=False)
    for bad in ("a..b.csv", "%2e%2e%2fetc.csv", "a b.csv", "~$GOOD.csv", "x" * 30 + ".csv",
                "NYSE:..:GOOD.csv"):
        good.to_csv(raw_dir / bad, index=False)
    for hidden in ("...csv", "..%2fetc.csv", ".GOOD.csv.tmp", ".GOOD.csv"):  # ignored
        good.to_csv(raw_dir / hidden, index=False)
    (raw_dir / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    assert list(list_raw_files(raw_dir)) == ["GOOD"]
    msgs = invalid_raw_files(raw_dir)
    assert len(msgs) == 7 and all("Fix: " in m for m in msgs)
    assert any("sheet.xlsx" in m and "unsupported" in m for m in msgs)
    with pytest.raises(InputError):
        run_raw(Layout.from_dirs(raw_dir, tmp_path / "wh"), "../raw/GOOD")


def test_bad_input_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run as root, who can read a chmod-000 file: so unreadable means a directory named
    X.csv, a broken .gz, a broken link, and a permission error injected where the file is opened.
    """
    d = tmp_path / "DIR.csv"
    d.mkdir()
    assert "DIR" in list_raw_files(tmp_path)  # kept, so its partition fails visibly
    with pytest.raises(InputError) as e:
        read_raw(d)
    check_error(e.value, d, "is a directory", "remove or rename")

    g = tmp_path / "GZ.csv.gz"
    g.write_bytes(b"this is not gzip data at all")
    with pytest.raises(InputError) as e:
        read_raw(g)
    check_error(e.value, g, "not a valid gzip file", "re-compress")
    t = tmp_path / "TRUNC.csv.gz"
    t.write_bytes(gzip.compress(prices(3000).to_csv(index=False).encode())[:5000])
    with pytest.raises(InputError) as e:
        read_raw(t)
    check_error(e.value, t, "not a valid gzip file, truncated", "re-compress")

    link = tmp_path / "LINK.csv"
    link.symlink_to(tmp_path / "gone.csv")
    with pytest.raises(InputError) as e:
        read_raw(link)
    check_error(e.value, link, "broken link")

    p = tmp_path / "LOCKED.csv"
    prices().to_csv(p, index=False)
    p.chmod(0)
    real_open = open

    def denied(file: object, *args: object, **kwargs: object) -> object:
        if Path(str(file)) == p and os.geteuid() == 0:  # what a non-root user would get
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(InputError) as e:
        read_raw(p)
    check_error(e.value, p, "permission denied", "chmod a\\+r")


def test_bad_input_corrupt_parquet(tmp_path: Path) -> None:
    p = tmp_path / "JUNK.parquet"
    p.write_bytes(os.urandom(2048))
    with pytest.raises(InputError) as e:
        read_raw(p)
    check_error(e.value, p, "not a readable parquet file", "re-export")
    good = tmp_path / "full.parquet"
    prices().to_parquet(good)
    q = tmp_path / "TRUNC.parquet"
    q.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(InputError) as e:
        read_raw(q)
    check_error(e.value, q, "corrupt or truncated")


def test_bad_input_wrong_file_kind(tmp_path: Path, tiny: Settings) -> None:
    """A parquet or Excel file named .csv, binary junk, ragged lines, Windows-1252 text."""
    pq_as_csv = tmp_path / "PQ.csv"
    prices().to_parquet(pq_as_csv)
    with pytest.raises(InputError) as e:
        read_raw(pq_as_csv)
    check_error(e.value, pq_as_csv, "parquet file with a .csv name", "PQ.parquet")
    xl = tmp_path / "XL.csv"
    xl.write_bytes(b"PK\x03\x04" + os.urandom(300))
    with pytest.raises(InputError) as e:
        read_raw(xl)
    check_error(e.value, xl, "Excel", "export it as CSV")

    ragged = tmp_path / "RAGGED.csv"
    text = prices().to_csv(index=False).splitlines()
    text[5] += ",extra,fields"
    ragged.write_text("\n".join(text) + "\n")
    raw, info = read_raw(ragged)
    assert info.bad_lines == 1 and len(raw) == 399
    assert "first at line 6" in info.notes[-1]  # the header is line 1
    text = [ln + ",x" if i % 3 == 0 else ln for i, ln in enumerate(text)]
    ragged.write_text("\n".join(text) + "\n")
    with pytest.raises(InputError) as e:
        read_raw(ragged)
    check_error(e.value, ragged, "wrong number of fields", "delimiter")

    latin = tmp_path / "LATIN.csv"
    prices().assign(Name="Société Générale").to_csv(latin, index=False, encoding="cp1252")
    raw, info = read_raw(latin)
    assert info.encoding == "cp1252" and len(raw) == 400


def test_bad_input_intraday_bars(tmp_path: Path) -> None:
    """Rule: several bars a day become daily bars (first open, max high, min low, last close,
    summed volume), with a note; ``intraday=refuse`` fails the file."""
    p = tmp_path / "BARS.csv"
    pd.DataFrame({"Date": ["2015-03-02 10:00", "2015-03-02 15:30", "2015-03-03 15:30",
                           "2015-03-03 10:00"],
                  "Open": [10.0, 11.0, 13.0, 12.0], "High": [12.0, 11.5, 13.5, 14.0],
                  "Low": [9.0, 10.5, 12.5, 11.0], "Close": [11.0, 11.2, 13.1, 13.0],
                  "Volume": [100, 200, 400, 300]}).to_csv(p, index=False)
    raw, info = read_raw(p)
    assert raw[["open", "high", "low", "close", "volume"]].to_numpy().tolist() == [
        [10.0, 12.0, 9.0, 11.2, 300.0], [12.0, 14.0, 11.0, 13.1, 700.0]]
    assert any("4 bars became 2 daily bars" in n for n in info.notes)
    with pytest.raises(InputError) as e:
        read_raw(p, Settings(intraday="refuse"))
    check_error(e.value, p, r"intraday bars \(4 bars on 2 days\)", "--set intraday=aggregate")


def test_bad_input_link_outside_raw_folder(tmp_path: Path) -> None:
    """Rule: a symlink to a file outside the raw folder is refused without being opened; a link
    to a file inside the folder is read."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    prices().to_csv(outside / "ABC.csv", index=False)
    raw_dir = tmp_path / "raw"
    (raw_dir / "data").mkdir(parents=True)
    (raw_dir / "ABC.csv").symlink_to(outside / "ABC.csv")
    prices().to_csv(raw_dir / "data" / "in.csv", index=False)
    (raw_dir / "IN.csv").symlink_to(Path("data") / "in.csv")
    assert sorted(list_raw_files(raw_dir)) == ["ABC", "IN"]  # the symbol fails visibly
    with pytest.raises(InputError) as e:
        run_raw(Layout.from_dirs(raw_dir, tmp_path / "wh"), "ABC")
    check_error(e.value, "ABC.csv", "link to outside the data folder", "copy the file into",
                "--raw-dir")
    with pytest.raises(InputError) as e:
        read_raw(raw_dir / "ABC.csv")
    check_error(e.value, "ABC.csv", "link to outside the data folder")
    assert [m for m in invalid_raw_files(raw_dir) if "ABC.csv" in m and "outside" in m]
    assert run_raw(Layout.from_dirs(raw_dir, tmp_path / "wh"), "IN")["rows"] == 400


def test_bad_input_excel_serial_dates(tmp_path: Path) -> None:
    """Rule: Excel serial dates (41134 = 2012-08-13) are converted, with a note;
    ``excel_dates=refuse`` fails the file. YYYYMMDD numbers are not serials."""
    p = tmp_path / "XL.csv"
    pd.DataFrame({"Date": np.arange(41134, 41164), "Close": np.arange(30.0) + 1}).to_csv(
        p, index=False)
    raw, info = read_raw(p)
    assert raw["date"].tolist() == list(pd.date_range("2012-08-13", "2012-09-11"))
    assert "date column holds Excel serial dates (e.g. 41134 = 2012-08-13); converted" in \
        info.notes
    with pytest.raises(InputError) as e:
        read_raw(p, Settings(excel_dates="refuse"))
    check_error(e.value, p, "Excel serial dates", "--set excel_dates=convert")


def test_bad_input_not_a_price_file(tmp_path: Path) -> None:
    """Rule: a file whose header names no date or close column is "not a price file", and
    nothing of its content is quoted."""
    p = tmp_path / "NOTES.csv"
    p.write_text("root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/sh\n")
    with pytest.raises(InputError) as e:
        read_raw(p)
    msg = check_error(e.value, p, "not a price file", "first line names the columns")
    assert "root" not in e.value.problem and "/bin/" not in msg


# ---- OHLCV-only input in every supported format, with the found/derived/dropped metadata -------

@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet"])
def test_ohlcv_only_any_format_and_aliases(tmp_path: Path, tiny: Settings,
                                                     fmt: str) -> None:
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    df = prices().rename(columns={"Date": "timestamp", "Close": "CLOSE", "Volume": "vol"})
    df["Adj Close"] = df["CLOSE"] * 0.5  # e.g. a 2:1 split later: the adjusted series is used
    path = raw_dir / f"ABC.{fmt}"
    if fmt == "parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False, compression="gzip" if fmt.endswith("gz") else None)
    layout = Layout.from_dirs(raw_dir, tmp_path / "wh")
    meta = run_clean(layout, "abc", tiny)
    assert meta["columns_found"] == list(df.columns)
    assert meta["columns_renamed"] == {"timestamp": "date", "Open": "open", "High": "high",
                                       "Low": "low", "vol": "volume", "Adj Close": "close"}
    assert meta["columns_dropped"]["Name"] == "text, not numbers"
    assert meta["columns_dropped"]["CLOSE"] == "replaced by adj_close"
    assert set(meta["columns_derived"]) <= set(TECH_NAMES) and len(meta["columns_derived"]) > 40
    assert set(meta["feature_columns"]) == set(meta["columns_derived"])
    frame = pd.read_parquet(meta["path"])
    np.testing.assert_allclose(frame["close"], df["Adj Close"].iloc[-len(frame):])
    rmeta = run_raw(layout, "ABC")
    assert rmeta["rows"] == 400 and rmeta["columns_found"] == list(df.columns)


# ---- nothing lost: a failed clean leaves the previous good artifact ---------------------------

def test_failed_clean_keeps_previous_clean_frame(tmp_path: Path,
                                                           tiny: Settings) -> None:
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    src = raw_dir / "KEEP.csv"
    prices().to_csv(src, index=False)
    layout = Layout.from_dirs(raw_dir, tmp_path / "wh")
    out = Path(run_clean(layout, "KEEP", tiny)["path"])
    before = out.read_bytes()
    for bad in ("", "Date,Open,High,Low,Close,Volume\n", prices(30).to_csv(index=False)):
        src.write_text(bad)
        with pytest.raises(InputError):
            run_clean(layout, "KEEP", tiny)
        assert out.read_bytes() == before
        assert len(pd.read_parquet(out)) > 100
    assert [p.name for p in out.parent.iterdir()] == ["KEEP.parquet"]  # no temp files left


# ---- no pickle on any load path ----------------------------------------------------------------

def test_no_pickle_payload_in_warehouse_runs(tmp_path: Path, tiny: Settings) -> None:
    """A warehouse file crafted to run code when unpickled is refused, and the code never runs."""
    import pickle

    import torch

    from lstm_assets.core.train import fit

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    npz = tmp_path / "seq.npz"
    np.savez(npz, X=np.array([Payload()], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        SequenceSet.load(npz)

    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    prices().to_csv(raw_dir / "PK.csv", index=False)
    frame, _ = read_and_clean(raw_dir / "PK.csv", tiny)
    seq, _ = build_sequences(frame, tiny)
    ck = tmp_path / "ck.pt"
    torch.save({"fingerprint": "x", "model": Payload()}, ck)
    try:
        res = fit(seq, tiny.replace(max_epochs=1), checkpoint=ck, fingerprint="x")
        assert res.resumed_from_epoch == 0  # (an unreadable checkpoint may also be ignored)
    except pickle.UnpicklingError:
        pass
    assert not marker.exists()


def test_no_unpickling_load_path_in_source() -> None:
    """Every load in the package is pickle-free: np.load allow_pickle=False, torch.load
    weights_only=True, and no pickle/joblib/dill/read_pickle at all."""
    root = Path(__file__).resolve().parents[1] / "lstm_assets"
    for py in root.rglob("*.py"):
        src = py.read_text()
        assert not re.search(r"^\s*(import|from)\s+(pickle|cPickle|joblib|dill|cloudpickle)\b",
                             src, re.M), py
        assert "read_pickle" not in src and "allow_pickle=True" not in src, py
        for call in re.finditer(r"\b(np|numpy)\.load\(([^)]*)\)", src):
            assert "allow_pickle=False" in call.group(2), (py, call.group(0))
        for call in re.finditer(r"\btorch\.load\(([^)]*)\)", src):
            assert "weights_only=True" in call.group(1), (py, call.group(0))


# ---- the Dagster layer: a bad symbol fails its own partition, a good one in the folder works --

def _resources(raw: Path, wh: Path) -> dict[str, object]:
    from lstm_assets.defs.resources import LstmSettings, PathsResource

    return {
        "settings": LstmSettings(lookback=10, hidden_size=8, num_layers=1, max_epochs=2,
                                 bootstrap_samples=50, device="cpu"),
        "paths": PathsResource(raw_dir=str(raw), warehouse_dir=str(wh), truth_dir=""),
    }


def _unique(defs: list[object]) -> list[object]:
    """Asset definitions without repeats (several assets may share one multi-asset step)."""
    return list({id(d): d for d in defs}.values())


def failed_stage(failure: object) -> str:
    """The asset whose stage failed: the failure's ``stage`` metadata, else the step key."""
    data = failure.step_failure_data.user_failure_data  # type: ignore[attr-defined]
    stage = data.metadata.get("stage")
    return str(stage.value) if stage is not None else failure.step_key  # type: ignore[attr-defined]


def test_bad_input_partitions_fail_alone_in_dagster(tmp_path: Path) -> None:
    import dagster as dg

    from lstm_assets.defs import assets

    raw_dir, wh = tmp_path / "raw", tmp_path / "wh"
    raw_dir.mkdir()
    prices().to_csv(raw_dir / "GOOD.csv", index=False)
    (raw_dir / "AMT.csv").write_text("Date,Open,High,Low,Close,Volume,Name\n")
    prices(20).to_csv(raw_dir / "BHF.csv", index=False)
    (raw_dir / "DIR.csv").mkdir()
    (raw_dir / "CORRUPT.parquet").write_bytes(b"PAR1" + os.urandom(500))
    cases = {
        "AMT": ("raw_features", "AMT.csv", "header but no data rows"),
        "BHF": ("clean_frames", "BHF.csv", "history too short"),
        "DIR": ("raw_features", "DIR.csv", "is a directory"),
        "CORRUPT": ("raw_features", "CORRUPT.parquet", "not a readable parquet"),
        "../GOOD": ("raw_features", "../GOOD", "not a valid symbol"),
    }
    selection = ["raw_features", "clean_frames"]
    chain = _unique([assets.raw_features, assets.clean_frames])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", ["GOOD", *cases])
        for key, (stage, fname, problem) in cases.items():
            res = dg.materialize(chain, partition_key=key, instance=instance, selection=selection,
                                 resources=_resources(raw_dir, wh), raise_on_error=False)
            assert not res.success
            failure = next(e for e in res.all_events if e.is_step_failure)
            data = failure.step_failure_data.user_failure_data
            assert failed_stage(failure) == stage
            assert fname in data.description and problem in data.description
            assert "Fix:" in data.description
            assert data.metadata["fix"].value and data.metadata["problem"].value
            assert not [m for m in res.get_asset_materialization_events()
                        if m.asset_key.to_user_string() == stage]
        ok = dg.materialize(chain, partition_key="GOOD", instance=instance, selection=selection,
                            resources=_resources(raw_dir, wh))
        assert ok.success
        meta = {m.asset_key.to_user_string(): m.materialization.metadata
                for m in ok.get_asset_materialization_events()}
    assert meta["clean_frames"]["columns_found"].value[0] == "Date"
    assert "tech_rsi_14" in meta["clean_frames"]["columns_derived"].value
    assert meta["clean_frames"]["columns_dropped"].value["Name"] == "text, not numbers"
    assert sorted(p.name for p in (wh / "clean_frames").iterdir()) == ["GOOD.parquet"]
