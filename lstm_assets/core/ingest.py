"""Read one raw per-symbol file (CSV, CSV.gz or parquet) into a frame with standard column names.

Rules (each problem either handled here as written, or raised as :class:`InputError` naming the
file, the problem and the fix):

- Column names are matched case-insensitively after trimming; spaces and dashes become ``_``.
  Aliases: ``date``/``timestamp``/``datetime``/``time``/``day``; ``close``/``price``/``last``;
  ``adj_close``/``adjusted_close``; ``volume``/``vol``. When both ``close`` and ``adj_close``
  exist the adjusted close is used and open/high/low are scaled by the same factor (splits and
  dividends then do not look like crashes).
- The delimiter is sniffed (``,`` ``;`` tab ``|``); ``.gz`` files are decompressed.
- Parquet files whose date is the index are read with the index as the date column.
- Text columns that are not numbers (e.g. ``Name``) are dropped and reported; a numeric column
  with a few junk strings keeps its numbers, the junk becomes missing (counted).
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lstm_assets.core.storage import InputError, normalize_symbol

RAW_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
ALIASES = {
    "date": ("date", "timestamp", "datetime", "time", "day", "trade_date", "index"),
    "open": ("open", "open_price", "o"),
    "high": ("high", "high_price", "h"),
    "low": ("low", "low_price", "l"),
    "close": ("close", "close_price", "price", "last", "c"),
    "adj_close": ("adj_close", "adjusted_close", "adjclose", "adj_close_price"),
    "volume": ("volume", "vol", "v"),
}


@dataclass
class RawInfo:
    path: str
    rows: int = 0
    columns_found: list[str] = field(default_factory=list)
    columns_dropped: dict[str, str] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    junk_cells: int = 0
    notes: list[str] = field(default_factory=list)


def symbol_of(path: Path) -> str:
    name = path.name
    for suf in sorted(RAW_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suf):
            return normalize_symbol(name[: -len(suf)])
    raise InputError(path, f"unsupported file type {path.suffix!r}",
                     f"use one of {', '.join(RAW_SUFFIXES)}")


def list_raw_files(folder: Path) -> dict[str, Path]:
    """Symbol -> file for every raw file in ``folder`` (hidden and temp files ignored).

    Files whose name is not a valid symbol are skipped here (and reported by
    :func:`invalid_raw_files`), so one badly named file never blocks the others.
    """
    out: dict[str, Path] = {}
    if not folder.exists():
        return out
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if not p.name.lower().endswith(RAW_SUFFIXES):
            continue
        try:
            sym = symbol_of(p)
        except InputError:
            continue
        if sym in out:  # e.g. brk.b.csv and BRK.B.csv: the first (sorted) wins, deterministic
            continue
        out[sym] = p
    return out


def invalid_raw_files(folder: Path) -> list[str]:
    bad = []
    for p in sorted(folder.iterdir()) if folder.exists() else []:
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(RAW_SUFFIXES):
            try:
                symbol_of(p)
            except InputError as e:
                bad.append(str(e))
    return bad


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def _sniff_delimiter(head: str) -> str:
    first = head.splitlines()[0] if head else ""
    counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def _read_csv(path: Path) -> pd.DataFrame:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", errors="replace") as fh:
            head = fh.read(4096)
    except (OSError, EOFError) as e:
        raise InputError(path, f"cannot read the file ({e.__class__.__name__}: {e})",
                         "check that the file exists, is readable and is not a broken .gz") from e
    if not head.strip():
        raise InputError(path, "the file is empty", "write a header line and at least one row "
                         "per trading day, or remove the file")
    delim = _sniff_delimiter(head)
    try:
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=delim),
            convert_options=pacsv.ConvertOptions(
                strings_can_be_null=True,
                null_values=["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "#N/A"],
            ),
        )
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(path, f"not a readable CSV ({e})",
                         "save it as a plain CSV with one header line and the same number of "
                         "fields on every row") from e
    return table.to_pandas()


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        df = pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(path, f"not a readable parquet file ({e})",
                         "re-export the file, or replace it with a CSV") from e
    if not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index()  # the date was stored as the index
    return df


def read_raw(path: Path) -> tuple[pd.DataFrame, RawInfo]:
    """Read and standardise one raw file. Returns the frame (``date`` + numeric columns)."""
    path = Path(path)
    info = RawInfo(path=str(path))
    if not path.exists():
        raise InputError(path, "the file does not exist", "check the raw folder")
    if path.stat().st_size == 0:
        raise InputError(path, "the file is empty", "write a header line and at least one row "
                         "per trading day, or remove the file")
    low = path.name.lower()
    df = _read_parquet(path) if low.endswith((".parquet", ".pq")) else _read_csv(path)
    info.columns_found = [str(c) for c in df.columns]
    if len(df) == 0:
        raise InputError(path, "the file has a header but no data rows",
                         "add rows (one per trading day) or remove the file")

    df.columns = [_norm(c) for c in df.columns]
    rename: dict[str, str] = {}
    for std, names in ALIASES.items():
        for n in names:
            if n in df.columns and std not in rename.values() and n not in rename:
                rename[n] = std
                break
    df = df.rename(columns=rename)
    info.renamed = {k: v for k, v in rename.items() if k != v}
    if df.columns.duplicated().any():
        dups = sorted(set(df.columns[df.columns.duplicated()]))
        raise InputError(path, f"duplicate column names after normalising: {dups}",
                         "give every column a distinct name")
    if "date" not in df.columns:
        raise InputError(path, f"no date column (looked for {', '.join(ALIASES['date'])})",
                         "name the date column 'date'")
    if "close" not in df.columns and "adj_close" not in df.columns:
        raise InputError(path, "no close price column (looked for "
                         f"{', '.join(ALIASES['close'] + ALIASES['adj_close'])})",
                         "add a 'close' column with the daily closing price")

    # numbers: junk strings become missing (counted); text columns that are not numbers go
    for col in [c for c in df.columns if c != "date"]:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            df[col] = s.astype("float64")
            continue
        num = pd.to_numeric(s, errors="coerce")
        present = s.notna() & (s.astype(str).str.strip() != "")
        junk = int((present & num.isna()).sum())
        if present.sum() and junk > 0.5 * present.sum():
            info.columns_dropped[col] = "text, not numbers"
            df = df.drop(columns=col)
            continue
        info.junk_cells += junk
        df[col] = num.astype("float64")
    if "close" not in df.columns and "adj_close" not in df.columns:
        raise InputError(path, "the close column holds no numbers",
                         "store the closing price as plain numbers (e.g. 101.25)")

    if "adj_close" in df.columns:
        if "close" in df.columns:
            factor = df["adj_close"] / df["close"]
            for col in ("open", "high", "low"):
                if col in df.columns:
                    df[col] = df[col] * factor
            df = df.drop(columns="close")
            info.notes.append("used adj_close as close and scaled open/high/low to it")
        df = df.rename(columns={"adj_close": "close"})
    df["date"] = _parse_dates(df["date"], path, info)
    df = df.replace([np.inf, -np.inf], np.nan)
    info.rows = len(df)
    return df, info


def _parse_dates(s: pd.Series, path: Path, info: RawInfo) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        out = pd.to_datetime(s)
    else:
        txt = s.astype("string").str.strip()
        try:
            out = pd.to_datetime(txt, format="ISO8601")
        except (ValueError, TypeError):
            # mixed formats: each value parsed on its own (month first for 01/02/2020)
            out = pd.to_datetime(txt, format="mixed", errors="coerce")
            info.notes.append("dates in mixed formats were parsed value by value")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert(None)
    bad = int(out.isna().sum())
    if bad and bad > 0.5 * len(out):
        raise InputError(path, f"{bad} of {len(out)} dates could not be parsed",
                         "write dates as YYYY-MM-DD")
    if bad:
        info.notes.append(f"dropped {bad} rows whose date could not be parsed")
    return out.dt.normalize()
