"""Raw files that used to read silently wrong: intraday bars, links to outside the raw folder,
Excel serial dates.

The rules are in the docstring of ``core/ingest.py`` and in docs/real_data.md. ``-k intraday``,
``-k symlink`` and ``-k excel_dates`` select each group.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lstm_assets.core.clean import clean_frame
from lstm_assets.core.ingest import (
    find_raw_file,
    invalid_raw_files,
    list_raw_files,
    read_raw,
)
from lstm_assets.core.settings import Settings
from lstm_assets.core.stages import Layout, file_hash, run_clean, run_raw
from lstm_assets.core.storage import InputError

SECRET = "root:x:0:0:root:/root:/bin/bash"
TODAY = pd.Timestamp("2024-06-28")


# ---- intraday bars -----------------------------------------------------------------------------

def two_bars_a_day(days: int = 3, start: str = "2015-03-02") -> pd.DataFrame:
    """Two bars a day (10:00 and 15:30) with distinct values, the later bar of every other day
    written first (the file is not in time order)."""
    rows = []
    for i, day in enumerate(pd.bdate_range(start, periods=days)):
        d = day.strftime("%Y-%m-%d")
        am = {"Date": f"{d} 10:00", "Open": 100 + i, "High": 105 + i, "Low": 99 + i,
              "Close": 101 + i, "Volume": 1000 + i, "Flag": 1.0}
        pm = {"Date": f"{d} 15:30", "Open": 101.5 + i, "High": 104 + i, "Low": 97 + i,
              "Close": 102.5 + i, "Volume": 3000 + i, "Flag": 2.0}
        rows += [pm, am] if i % 2 else [am, pm]
    return pd.DataFrame(rows)


def test_intraday_two_bars_a_day_aggregated(tmp_path: Path) -> None:
    """First open, max high, min low, last close in time order, summed volume, last of the rest."""
    p = tmp_path / "BARS.csv"
    two_bars_a_day().to_csv(p, index=False)
    raw, info = read_raw(p)
    days = pd.bdate_range("2015-03-02", periods=3)
    assert raw["date"].tolist() == list(days)
    i = np.arange(3.0)
    np.testing.assert_array_equal(raw["open"], 100 + i)
    np.testing.assert_array_equal(raw["high"], 105 + i)
    np.testing.assert_array_equal(raw["low"], 97 + i)
    np.testing.assert_array_equal(raw["close"], 102.5 + i)
    np.testing.assert_array_equal(raw["volume"], 4000 + 2 * i)
    np.testing.assert_array_equal(raw["flag"], [2.0, 2.0, 2.0])
    assert info.rows == 3
    assert any("6 bars became 3 daily bars" in n for n in info.notes), info.notes


def test_intraday_epoch_and_offset_timestamps(tmp_path: Path) -> None:
    """Epoch seconds are intraday too; with a UTC offset the local (exchange) day counts, so an
    evening bar at -05:00 stays on its own day."""
    df = two_bars_a_day(days=4)
    stamps = pd.to_datetime(df["Date"])
    epoch = tmp_path / "EPOCH.csv"
    df.assign(Date=(stamps - pd.Timestamp(0)) // pd.Timedelta("1s")).to_csv(epoch, index=False)
    raw, info = read_raw(epoch)
    assert len(raw) == 4 and raw["volume"].iloc[0] == 4000
    assert any("8 bars became 4 daily bars" in n for n in info.notes)

    evening = stamps + pd.Timedelta(hours=6)  # 16:00 and 21:30 local time, -05:00
    off = tmp_path / "OFFSET.csv"
    df.assign(Date=evening.dt.strftime("%Y-%m-%dT%H:%M:00-05:00")).to_csv(off, index=False)
    raw, _ = read_raw(off)
    assert raw["date"].tolist() == list(pd.bdate_range("2015-03-02", periods=4))
    np.testing.assert_array_equal(raw["close"], 102.5 + np.arange(4.0))


def test_intraday_refuse_setting_gives_the_message(tmp_path: Path) -> None:
    p = tmp_path / "BARS.csv"
    two_bars_a_day().to_csv(p, index=False)
    with pytest.raises(InputError) as e:
        read_raw(p, Settings(intraday="refuse"))
    msg = str(e.value)
    assert str(p) in msg and "intraday bars (6 bars on 3 days)" in msg
    assert "--set intraday=aggregate" in e.value.fix and "daily bars" in e.value.fix
    with pytest.raises(ValueError, match="intraday='hourly'"):
        read_raw(p, Settings(intraday="hourly"))


def test_intraday_daily_file_with_constant_time_is_not_intraday(tmp_path: Path) -> None:
    """Timestamps that all carry 16:00, or one bar a day at varying times, are daily bars."""
    days = pd.bdate_range("2015-03-02", periods=30)
    base = pd.DataFrame({"date": days.strftime("%Y-%m-%d 16:00"), "close": np.arange(30.0) + 1,
                         "volume": 10.0})
    p = tmp_path / "DAILY.csv"
    base.to_csv(p, index=False)
    for settings in (None, Settings(intraday="refuse")):
        raw, info = read_raw(p, settings)
        assert raw["date"].tolist() == list(days) and len(raw) == 30
        assert not any("intraday" in n for n in info.notes)
    q = tmp_path / "HALFDAYS.csv"
    varied = days.strftime("%Y-%m-%d 16:00").where(np.arange(30) % 7 != 3,
                                                  days.strftime("%Y-%m-%d 13:00"))
    base.assign(date=varied).to_csv(q, index=False)
    raw, _ = read_raw(q, Settings(intraday="refuse"))
    assert raw["date"].tolist() == list(days)


def test_intraday_file_cleans_without_conflicting_duplicates(tmp_path: Path,
                                                             tiny: Settings) -> None:
    """The clean stage sees one row a day (before: one bar kept, the other dropped silently)."""
    p = tmp_path / "LONG.csv"
    two_bars_a_day(days=260, start="2022-01-03").to_csv(p, index=False)
    raw, _ = read_raw(p)
    _, info = clean_frame(raw, tiny, str(p), today=TODAY)
    assert info["rows_conflicting_duplicate"] == 0 and info["rows_exact_duplicate"] == 0


def test_intraday_raw_parse_cache_keyed_on_reading_settings(tmp_path: Path,
                                                           tiny: Settings) -> None:
    """run_raw's kept parse (default settings) is not reused by a run_clean under other
    reading settings; run_raw passes its settings to the reader."""
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    two_bars_a_day(days=5).to_csv(raw_dir / "BARS.csv", index=False)
    layout = Layout.from_dirs(raw_dir, tmp_path / "wh")
    meta = run_raw(layout, "BARS")
    assert meta["rows"] == 5 and meta["duplicate_dates"] == 0
    assert any("10 bars became 5 daily bars" in n for n in meta["notes"])
    refuse = tiny.replace(intraday="refuse")
    with pytest.raises(InputError, match="intraday bars"):
        run_clean(layout, "BARS", refuse)
    with pytest.raises(InputError, match="intraday bars"):
        run_raw(layout, "BARS", refuse)


# ---- links to outside the raw folder -----------------------------------------------------------

_OPENED: list[list[str]] = []  # while a test records: the paths opened (one list per test)
_HOOKED: list[bool] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _OPENED and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
        _OPENED[-1].append(os.fsdecode(args[0]))


@pytest.fixture
def opened() -> Iterator[list[str]]:
    """Every path opened through Python (``open``, ``Path.open``, ``gzip.open``, ``os.open``:
    the ``open`` audit event) while the test runs. An audit hook cannot be removed: it is
    added once and records only inside this fixture."""
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED.append(True)
    paths: list[str] = []
    _OPENED.append(paths)
    try:
        yield paths
    finally:
        _OPENED.remove(paths)


def _secret_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder / "passwd"
    secret.write_text(f"{SECRET}\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    return secret


def test_symlink_to_outside_the_raw_folder_is_refused_unopened(
        tmp_path: Path, opened: list[str], caplog: pytest.LogCaptureFixture) -> None:
    from lstm_assets.defs.automation import OUTSIDE_LINK, scan_raw

    caplog.set_level(logging.DEBUG)
    secret = _secret_file(tmp_path / "outside")
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / "LEAK.csv").symlink_to(secret)
    (raw_dir / "REL.csv").symlink_to(Path("..") / "outside" / "passwd")
    layout = Layout.from_dirs(raw_dir, tmp_path / "wh")
    opened.clear()  # writing the secret opened it

    # listed (so the symbol fails visibly) and reported
    assert sorted(list_raw_files(raw_dir)) == ["LEAK", "REL"]
    messages = invalid_raw_files(raw_dir)
    assert len(messages) == 2
    errors: list[InputError] = []
    for sym in ("LEAK", "REL"):
        link = raw_dir / f"{sym}.csv"
        calls: list[tuple[Any, tuple[Any, ...]]] = [
            (find_raw_file, (raw_dir, sym)), (read_raw, (link,)), (run_raw, (layout, sym)),
            (run_clean, (layout, sym, Settings())), (file_hash, (link, raw_dir))]
        for fn, args in calls:
            with pytest.raises(InputError) as e:
                fn(*args)
            errors.append(e.value)
    scan = scan_raw(list_raw_files(raw_dir), {})
    assert scan.state["LEAK"][2] == OUTSIDE_LINK and not scan.new and not scan.changed

    for err in errors:
        assert "is a link to outside the data folder" in err.problem, err
        assert "copy the file into" in err.fix and "--raw-dir" in err.fix
    texts = messages + [str(e) for e in errors] + [r.getMessage() for r in caplog.records]
    assert not [t for t in texts if "root:x" in t or "daemon" in t]
    real = os.path.realpath(secret)
    assert not [p for p in opened if os.path.realpath(p) == real], opened
    with open(raw_dir / "LEAK.csv") as fh:  # the recorder works: opening the link is seen
        fh.read(1)
    assert [p for p in opened if os.path.realpath(p) == real]


def test_symlink_inside_the_raw_folder_is_read(tmp_path: Path) -> None:
    """Links whose target is inside the raw folder work, also when the folder itself is a link."""
    real_dir = tmp_path / "real"
    (real_dir / "data").mkdir(parents=True)
    df = pd.DataFrame({"date": pd.bdate_range("2020-01-01", periods=20).strftime("%Y-%m-%d"),
                       "close": np.arange(20.0) + 1})
    df.to_csv(real_dir / "data" / "abc_source.csv", index=False)
    (real_dir / "ABC.csv").symlink_to(Path("data") / "abc_source.csv")
    (real_dir / "XYZ.csv").symlink_to(real_dir / "data" / "abc_source.csv")
    raw_dir = tmp_path / "raw"
    raw_dir.symlink_to(real_dir)
    for folder in (real_dir, raw_dir):
        assert sorted(list_raw_files(folder)) == ["ABC", "XYZ"]
        assert invalid_raw_files(folder) == []
        meta = run_raw(Layout.from_dirs(folder, tmp_path / "wh"), "ABC")
        assert meta["rows"] == 20
        assert meta["content_hash"] == file_hash(real_dir / "data" / "abc_source.csv")
        raw, _ = read_raw(find_raw_file(folder, "XYZ"))
        assert len(raw) == 20


def test_symlink_target_content_never_quoted_when_copied_in(tmp_path: Path) -> None:
    """A file that is not a price file is never quoted in an error: neither with a header that
    names no date or close column, nor with a first line that looks like data."""
    raw_dir = tmp_path / "raw"
    secret = _secret_file(raw_dir / "sub")
    (raw_dir / "COPY.csv").write_bytes(secret.read_bytes())
    with pytest.raises(InputError) as e:
        read_raw(raw_dir / "COPY.csv")
    assert e.value.problem == "not a price file (no header with a date and a close column)"
    assert "root:x" not in str(e.value)
    assert not [m for m in invalid_raw_files(raw_dir) if "root:x" in m]
    (raw_dir / "DUPS.csv").write_text("secret,Secret\n1,2\n")
    with pytest.raises(InputError, match="not a price file") as e:
        read_raw(raw_dir / "DUPS.csv")
    assert "secret" not in e.value.problem.lower() and "1" not in e.value.problem
    (raw_dir / "DIGITS.csv").write_text("12345,hunter2\n23456,opensesame\n")
    with pytest.raises(InputError, match="no header line") as e:
        read_raw(raw_dir / "DIGITS.csv")
    assert "hunter2" not in e.value.problem and "12345" not in e.value.problem
    (raw_dir / "GZ.csv.gz").write_text(SECRET)
    with pytest.raises(InputError, match="not a valid gzip file") as e:
        read_raw(raw_dir / "GZ.csv.gz")
    assert "b'" not in e.value.problem and "'ro'" not in e.value.problem, e.value.problem


# ---- Excel serial dates ------------------------------------------------------------------------

def excel_serials(n: int = 30, start: int = 41134) -> np.ndarray:
    return np.arange(start, start + n)


def test_excel_dates_converted_with_a_note(tmp_path: Path) -> None:
    serials = excel_serials()
    want = [pd.Timestamp("1899-12-30") + pd.Timedelta(days=int(s)) for s in serials]
    assert want[0] == pd.Timestamp("2012-08-13")  # Excel: =DATE(2012,8,13) is 41134
    df = pd.DataFrame({"Date": serials, "Close": np.arange(30.0) + 1})
    p = tmp_path / "XL.csv"
    df.to_csv(p, index=False)
    q = tmp_path / "XL.parquet"
    df.astype({"Date": "float64"}).to_parquet(q)
    for path in (p, q):
        raw, info = read_raw(path)
        assert raw["date"].tolist() == want
        assert "date column holds Excel serial dates (e.g. 41134 = 2012-08-13); converted" in \
            info.notes


def test_excel_dates_fractions_are_intraday_bars(tmp_path: Path) -> None:
    """41134.5 is noon: two serials a day are two bars of one day (the intraday rule)."""
    serials = np.repeat(excel_serials(5), 2) + np.tile([10 / 24, 15.5 / 24], 5)
    p = tmp_path / "XLBARS.csv"
    pd.DataFrame({"Date": serials.round(6), "Close": np.arange(10.0),
                  "Volume": 1.0}).to_csv(p, index=False)
    raw, info = read_raw(p)
    assert raw["date"].tolist() == [pd.Timestamp("2012-08-13") + pd.Timedelta(days=i)
                                    for i in range(5)]
    np.testing.assert_array_equal(raw["close"], [1.0, 3.0, 5.0, 7.0, 9.0])
    np.testing.assert_array_equal(raw["volume"], 2.0)
    assert any("Excel serial dates" in n for n in info.notes)
    assert any("10 bars became 5 daily bars" in n for n in info.notes)


def test_excel_dates_refuse_names_them(tmp_path: Path) -> None:
    p = tmp_path / "XL.csv"
    pd.DataFrame({"Date": excel_serials(), "Close": 1.0}).to_csv(p, index=False)
    with pytest.raises(InputError) as e:
        read_raw(p, Settings(excel_dates="refuse"))
    assert str(p) in str(e.value)
    assert "Excel serial dates (e.g. 41134 = 2012-08-13)" in e.value.problem
    assert "--set excel_dates=convert" in e.value.fix


def test_excel_dates_yyyymmdd_epoch_and_years_unchanged(tmp_path: Path) -> None:
    """YYYYMMDD integers and epoch seconds read as before; four-digit years are no serials."""
    days = pd.bdate_range("2015-03-02", periods=30)
    for name, col in (("YMD", days.strftime("%Y%m%d").astype(int)),
                      ("EPOCH", (days - pd.Timestamp(0)) // pd.Timedelta("1s"))):
        p = tmp_path / f"{name}.csv"
        pd.DataFrame({"date": col, "close": np.arange(30.0) + 1}).to_csv(p, index=False)
        raw, info = read_raw(p)
        assert raw["date"].tolist() == list(days)
        assert not any("Excel" in n for n in info.notes)
    p = tmp_path / "YEARS.csv"
    pd.DataFrame({"date": np.arange(2001, 2031), "close": 1.0}).to_csv(p, index=False)
    raw, info = read_raw(p)
    assert raw["date"].tolist() == [pd.Timestamp(f"{y}-01-01") for y in range(2001, 2031)]
    assert not any("Excel" in n for n in info.notes)
