"""Read one raw per-symbol file (CSV, CSV.gz or parquet) into a frame with standard column names.

Every problem is either handled by one of the rules below (and counted in :class:`RawInfo`, which
lands in the asset metadata) or raised as :class:`InputError` naming the file, the problem and
the fix. ``docs/real_data.md`` lists the same rules with examples.

Files and symbols

- A raw file is ``<raw_dir>/<SYMBOL>.csv|.csv.gz|.parquet|.pq`` (suffix case-insensitive). The
  symbol is the file stem upper-cased and validated by
  :func:`lstm_assets.core.storage.normalize_symbol` before it is ever used in a path: ``brk.b.csv``
  is ``BRK.B``; an exchange prefix is dropped (``NYSE:LMT.csv`` is ``LMT``); a name such as
  ``a..b.csv`` or ``%2e%2e.csv`` is refused (and listed by :func:`invalid_raw_files`), so a symbol
  can never point outside its folder. Hidden files (``.name``, e.g. temp files) are ignored.
- Two files for one symbol (``BRK.B.csv`` and ``brk.b.csv``, or ``ABC.csv`` and ``ABC.parquet``)
  fail that symbol: the project will not guess which one is current.
- An entry named like a raw file that cannot be read (a directory named ``X.csv``, a broken link,
  a file without read permission, a broken ``.gz``, a corrupt parquet) still becomes a symbol, so
  its partition fails with a clear message instead of the file being silently ignored.
- A symbolic link whose target resolves outside the raw folder is refused without being opened
  (not read, hashed or sniffed): its symbol fails with "is a link to outside the data folder"
  and :func:`invalid_raw_files` lists it. A link to a file inside the folder is read as usual.

Reading

- Empty files and header-only files are errors. A first line that looks like data (it starts with
  a date or a number) is an error: the file has no header.
- Error messages quote a file's header (its column names) and values only when that header names
  a date or a close column (a price file); any other file is "not a price file (no header with a
  date and a close column)", and nothing of it is quoted.
- Text encoding: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252.
  Binary content (an Excel or zip file renamed ``.csv``, a parquet file named ``.csv``) is an error.
- The delimiter is sniffed from the header line (``,`` ``;`` tab ``|``). With ``;`` or tab, a
  decimal comma (``101,25``) is recognised.
- Lines with the wrong number of fields are skipped and counted (``bad_lines``); more than 10% of
  the lines (and more than 5) is an error.
- Parquet files whose date is the index are read with the index as the date column.

Columns

- Names are matched case-insensitively; any run of characters other than letters and digits
  becomes ``_`` (``Adj. Close`` -> ``adj_close``). Aliases: ``date``/``timestamp``/``datetime``/
  ``time``/``day``/``trade_date``; ``close``/``price``/``last``; ``adj_close``/``adjusted_close``;
  ``volume``/``vol``. Columns without a name (e.g. a saved pandas index) are dropped, unless
  the file has no date column and the unnamed one holds dates.
- When both ``close`` and ``adj_close`` hold numbers the adjusted close is used and
  open/high/low are scaled by the same factor, so splits and dividends do not look like crashes.
- Text columns that are not numbers (e.g. ``Name``) are dropped and reported. In a numeric column
  ``$``/``€``/``£`` and thousands separators (``1,234``) are removed; the remaining junk strings
  (``#VALUE!``) become missing and are counted (``junk_cells``); ``""``, ``NA``, ``#N/A``,
  ``null``, ``-`` are plain missing values. A column more than half junk is treated as text and
  dropped; when that column is the close, it is an error.
- ``inf``/``-inf`` become missing (counted as ``inf_cells``); the cleaning rules then apply.

Dates

- ISO dates (``2017-08-11``, with or without time or offset; the local wall-clock date is kept),
  ``YYYYMMDD`` numbers and epoch seconds/milliseconds are read as they are.
- Mixed formats in one column are parsed value by value. ``dd/mm/yyyy`` vs ``mm/dd/yyyy`` is
  decided once for the whole column: day first when some first field is above 12, otherwise
  month first (a note in ``notes`` says so when the column is ambiguous).
- Excel serial dates (day 0 = 1899-12-30; 41134 = 2012-08-13; 1 .. 73050 = 1900 .. 2099) are
  converted with a note, or refused with ``excel_dates=refuse``. Four-digit whole numbers are
  years, not serials. A fraction is the time of day (41134.5 = noon).
- Rows whose date cannot be parsed are dropped later (counted); more than half of them is an error.

Intraday bars

- A date column with more than one distinct time of day on some calendar day (local exchange
  time: the wall-clock time the file states) holds intraday bars. With ``intraday=aggregate``
  (the default) they become one row a day: first open, max high, min low, last close (in time
  order), summed volume, the last value of every other column; bars with a repeated timestamp keep
  the last line. A note says how many bars became how many days. ``intraday=refuse`` fails the
  file. A daily file whose timestamps all carry one time (``00:00``, ``16:00``) is not intraday.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lstm_assets.core.settings import Settings
from lstm_assets.core.storage import InputError, normalize_symbol

_EXCHANGE_PREFIX = re.compile(r"^[A-Za-z]{2,10}:([^:]+)$")
RAW_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
UNSUPPORTED_SUFFIXES = (".xlsx", ".xls", ".tsv", ".zip", ".json", ".feather")
ALIASES = {
    "date": ("date", "timestamp", "datetime", "time", "day", "trade_date", "index"),
    "open": ("open", "open_price", "o"),
    "high": ("high", "high_price", "h"),
    "low": ("low", "low_price", "l"),
    "close": ("close", "close_price", "price", "last", "c"),
    "adj_close": ("adj_close", "adjusted_close", "adjclose", "adj_close_price"),
    "volume": ("volume", "vol", "v"),
}
NULL_VALUES = ["", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "#N/A", "-"]
MAX_BAD_LINE_SHARE = 0.1
HEAD_BYTES = 1 << 16
EMPTY_FIX = "write a header line and at least one row per trading day, or remove the file"
NOT_PRICE_FILE = "not a price file (no header with a date and a close column)"
NOT_PRICE_FIX = ("supply daily prices as CSV or parquet whose first line names the columns, "
                 "e.g. date,open,high,low,close,volume")
_PRICE_HEADER_NAMES = frozenset(ALIASES["date"] + ALIASES["close"] + ALIASES["adj_close"])
INTRADAY_CHOICES = ("aggregate", "refuse")
EXCEL_DATE_CHOICES = ("convert", "refuse")


@dataclass
class RawInfo:
    """What reading one raw file found and did (all of it goes into the asset metadata)."""

    path: str
    rows: int = 0
    columns_found: list[str] = field(default_factory=list)
    columns_dropped: dict[str, str] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    junk_cells: int = 0
    junk_by_column: dict[str, int] = field(default_factory=dict)
    inf_cells: int = 0
    bad_lines: int = 0
    delimiter: str = ""
    encoding: str = ""
    notes: list[str] = field(default_factory=list)


# ---- files and symbols ------------------------------------------------------------------------

_SUFFIXES_LONGEST_FIRST = tuple(sorted(RAW_SUFFIXES, key=len, reverse=True))


def _raw_suffix(name: str) -> str | None:
    low = name.lower()
    for suf in _SUFFIXES_LONGEST_FIRST:
        if low.endswith(suf):
            return suf
    return None


def symbol_of(path: Path) -> str:
    """The validated symbol of a raw file name (``brk.b.csv`` -> ``BRK.B``)."""
    suf = _raw_suffix(path.name)
    if suf is None:
        raise InputError(path, f"unsupported file type {path.suffix!r}",
                         f"use one of {', '.join(RAW_SUFFIXES)}")
    stem = path.name[: -len(suf)]
    prefixed = _EXCHANGE_PREFIX.match(stem)
    if prefixed:  # NYSE:LMT.csv -> LMT (the exchange is not part of the symbol)
        stem = prefixed.group(1)
    try:
        return normalize_symbol(stem)
    except InputError as e:
        raise InputError(path, e.problem, e.fix) from e


def link_outside(path: Path, folder: Path | None = None) -> Path | None:
    """The resolved target of ``path`` when it is a symbolic link that leads outside ``folder``
    (default: the folder ``path`` is in), else None. Only links are followed: the target is
    never opened."""
    if not os.path.islink(path):
        return None
    base = os.path.realpath(folder if folder is not None else Path(path).parent)
    target = os.path.realpath(path)
    try:
        inside = os.path.commonpath([base, target]) == base
    except ValueError:  # another drive
        inside = False
    return None if inside else Path(target)


def check_inside(path: Path, folder: Path | None = None) -> None:
    """InputError when ``path`` is a link to outside ``folder`` (see :func:`link_outside`)."""
    target = link_outside(path, folder)
    if target is not None:
        where = Path(folder if folder is not None else Path(path).parent)
        raise InputError(path, f"is a link to outside the data folder {where} (to {target})",
                         f"copy the file into {where}, or point --raw-dir at the folder that "
                         f"holds it ({target.parent})")


def _raw_entries(folder: Path, symbol: str | None = None) -> list[Path]:
    """Non-hidden entries of ``folder`` named like a raw file (files, folders, broken links).

    With ``symbol`` (normalised), only those that may belong to it: an ASCII name whose
    symbol is ``symbol`` holds it, in any case (the symbol is the stem, upper-cased), so other
    ASCII names are passed over without parsing them; a name with other characters is kept.
    """
    if not folder.is_dir():
        return []
    part = symbol.lower() if symbol is not None else ""
    names = sorted(name for name in os.listdir(folder)
                   if not name.startswith(".") and (not name.isascii() or part in name.lower()))
    return [folder / name for name in names if _raw_suffix(name) is not None]


def _by_symbol(folder: Path, symbol: str | None = None) -> dict[str, list[Path]]:
    """Symbol -> its raw-looking entries (sorted by name); with ``symbol``, only that one's."""
    out: dict[str, list[Path]] = {}
    for p in _raw_entries(folder, symbol):
        try:
            sym = symbol_of(p)
        except InputError:
            continue
        out.setdefault(sym, []).append(p)
    return out


def list_raw_files(folder: Path) -> dict[str, Path]:
    """Symbol -> raw file for every entry in ``folder`` named ``SYMBOL.<raw suffix>``.

    Hidden and temp files are ignored. Names that are not valid symbols are skipped here (and
    reported by :func:`invalid_raw_files`), so one badly named file never blocks the others.
    Unreadable entries, links to outside ``folder`` and duplicate symbols are kept: their
    partition fails with a clear message (see :func:`find_raw_file` and :func:`read_raw`).
    """
    return {sym: paths[0] for sym, paths in _by_symbol(Path(folder)).items()}


def find_raw_file(folder: Path, symbol: str) -> Path:
    """The one raw file of ``symbol`` in ``folder``; InputError when none or several, or when it
    is a link to outside ``folder`` (refused unopened)."""
    folder = Path(folder)
    sym = normalize_symbol(symbol)
    paths = _by_symbol(folder, sym).get(sym, [])
    if not paths:
        raise InputError(folder / f"{sym}.csv", f"no raw file for symbol {sym} in {folder}",
                         f"put {sym}.csv (or .csv.gz / .parquet) in {folder}")
    if len(paths) > 1:
        names = ", ".join(p.name for p in paths)
        raise InputError(paths[0], f"{len(paths)} raw files map to symbol {sym}: {names}",
                         "keep exactly one file per symbol (delete or rename the others)")
    check_inside(paths[0], folder)
    return paths[0]


def invalid_raw_files(folder: Path) -> list[str]:
    """One message per raw-looking file that cannot become a symbol, shares its symbol, or is a
    link to outside ``folder``."""
    folder = Path(folder)
    bad: list[str] = []
    if not folder.is_dir():
        return bad
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if _raw_suffix(p.name) is None:
            if p.name.lower().endswith(UNSUPPORTED_SUFFIXES):
                bad.append(str(InputError(p, f"unsupported file type {p.suffix!r}",
                                          "export it as SYMBOL.csv (or .csv.gz / .parquet)")))
            continue
        try:
            symbol_of(p)
            check_inside(p, folder)
        except InputError as e:
            bad.append(str(e))
    for sym, paths in _by_symbol(folder).items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            bad.append(str(InputError(paths[0], f"{len(paths)} raw files map to symbol {sym}: "
                                      f"{names}", "keep exactly one file per symbol")))
    return bad


# ---- reading ---------------------------------------------------------------------------------

def _norm(name: object) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


def _sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def _directory_error(path: Path) -> InputError:
    return InputError(path, "is a directory, not a file",
                      "remove or rename the folder; a raw file must be a plain file")


def _permission_error(path: Path) -> InputError:
    return InputError(path, "permission denied: this user cannot read the file",
                      f"make it readable (chmod a+r {path}) or run as its owner")


def _reason(e: Exception) -> str:
    """The first line of a reader's error, without the bits of file content some readers quote
    in it (gzip's first bytes, a CSV row, a cell value)."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else e.__class__.__name__
    first = re.sub(r"\s*\(?\bb(['\"]).*?\1\)?", "", first)  # Not a gzipped file (b'ro')
    first = re.sub(r"(got \d+(?: columns?)?):.*", r"\1", first)  # ..., got 3: <the row>
    return re.sub(r"(invalid value)\s+(['\"]).*?\2", r"\1", first)[:200]


def _gzip_error(path: Path, e: Exception) -> InputError:
    return InputError(path, f"not a valid gzip file, truncated or corrupt ({_reason(e)})",
                      "re-compress it with gzip, or store it uncompressed as "
                      f"{path.name[:-3]}")


def _check_plain_file(path: Path) -> None:
    """A link to outside its folder, a missing file, a broken link, a directory or an empty file
    is an error. Only metadata is looked at: nothing is opened."""
    check_inside(path)
    if not path.exists():
        problem = "is a broken link" if path.is_symlink() else "the file does not exist"
        raise InputError(path, problem, "check the raw folder")
    if path.is_dir():
        raise _directory_error(path)
    if path.stat().st_size == 0:
        raise InputError(path, "the file is empty", EMPTY_FIX)


def _read_head(path: Path) -> bytes:
    """The first bytes of the (decompressed) file; errors become InputError with a fix."""
    gz = path.name.lower().endswith(".gz")
    try:
        if gz:
            with gzip.open(path, "rb") as fh:
                return fh.read(HEAD_BYTES)
        with open(path, "rb") as fh:
            return fh.read(HEAD_BYTES)
    except PermissionError as e:
        raise _permission_error(path) from e
    except IsADirectoryError as e:
        raise _directory_error(path) from e
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise _gzip_error(path, e) from e
    except OSError as e:
        raise InputError(path, f"cannot read the file ({e.__class__.__name__}: {e})",
                         "check that the file exists and is readable") from e


def _encoding(head: bytes) -> str:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        head.decode("utf-8")
        return "utf8"
    except UnicodeDecodeError as e:
        if e.start > len(head) - 4:  # a multi-byte character cut by the head limit
            return "utf8"
        return "cp1252"


def _looks_like_value(text: str) -> bool:
    t = text.strip().strip('"').strip()
    if not t:
        return False
    if re.fullmatch(r"[-+]?\d+([.,]\d+)?([eE][-+]?\d+)?", t):
        return True
    return bool(re.fullmatch(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T].*)?", t))


@dataclass(frozen=True)
class _CsvFormat:
    """How to parse one CSV file, as sniffed from its first bytes."""

    encoding: str
    delimiter: str
    decimal: str
    names: list[str]


def _head_text(path: Path) -> tuple[str, str]:
    """The decoded first bytes of a CSV and their encoding; binary or empty content is an error."""
    head = _read_head(path)
    if head.startswith(b"PAR1"):
        raise InputError(path, "is a parquet file with a .csv name",
                         f"rename it to {path.name.split('.')[0]}.parquet")
    if head.startswith(b"PK\x03\x04"):
        raise InputError(path, "is a zip or Excel file, not a CSV",
                         "open it in the spreadsheet and export it as CSV")
    enc = _encoding(head)
    if enc != "utf-16" and b"\x00" in head:
        raise InputError(path, "holds binary data, not text", "export it as a plain CSV file")
    text = head.decode(enc, errors="replace").lstrip("\ufeff")
    if not text.strip():
        raise InputError(path, "the file is empty", EMPTY_FIX)
    return text, enc


def _sniff_csv(path: Path, info: RawInfo) -> _CsvFormat:
    """Encoding, delimiter, decimal mark and column names of a CSV; no header line is an error."""
    text, enc = _head_text(path)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = lines[0]
    delim = _sniff_delimiter(header)
    names = next(csv.reader([header], delimiter=delim))
    if names and _looks_like_value(names[0]):
        # not quoted: a file without a header is not known to be a price file
        raise InputError(path, "no header line: the first line looks like data (it starts with "
                         f"a date or a number; {len(names)} field(s))",
                         "add a header line first, e.g. date,open,high,low,close,volume")
    decimal = "."
    if delim in (";", "\t") and any(re.search(r"\d,\d", ln) for ln in lines[1:50]):
        decimal = ","
        info.notes.append("decimal comma detected (e.g. 101,25)")
    info.delimiter, info.encoding = delim, enc
    return _CsvFormat(encoding=enc, delimiter=delim, decimal=decimal, names=names)


def _arrow_csv(path: Path, fmt: _CsvFormat,
               default_type: pa.DataType | None) -> tuple[pa.Table, list[int]]:
    """One pyarrow read of the CSV: the table and the line numbers of the rows it skipped
    (rows with the wrong number of fields)."""
    # dates stay text here: pyarrow would turn "…T20:00-05:00" into the next day in UTC
    date_types = {n: pa.string() for n in fmt.names if _norm(n) in ALIASES["date"]}
    bad: list[int] = []

    def skip_bad(row: Any) -> str:
        bad.append(row.number or 0)
        return "skip"

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    # a file object, not a path: pyarrow never reads a name like NYSE:LMT.csv as a URI
    with opener(path, "rb") as fh:
        table = pacsv.read_csv(
            fh,
            # one thread: as fast for a file of a few MB (measured), and the other cores
            # stay free for other symbols' processes instead of waiting on each other
            read_options=pacsv.ReadOptions(encoding=fmt.encoding, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=fmt.delimiter,
                                             invalid_row_handler=skip_bad),
            convert_options=pacsv.ConvertOptions(
                strings_can_be_null=True, null_values=NULL_VALUES, decimal_point=fmt.decimal,
                default_column_type=default_type, column_types=date_types),
        )
    return table, bad


def _parse_csv(path: Path, fmt: _CsvFormat) -> tuple[pa.Table, list[int]]:
    """:func:`_arrow_csv` with its errors turned into InputError with a fix."""
    try:
        try:
            return _arrow_csv(path, fmt, None)
        except pa.ArrowInvalid as e:
            if "conversion error" not in str(e).lower():
                raise
            # the type was guessed from the first block and a later block has junk: read as text
            return _arrow_csv(path, fmt, pa.string())
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise _gzip_error(path, e) from e
    except (pa.ArrowException, OSError, UnicodeError) as e:
        raise InputError(path, f"not a readable CSV ({_reason(e)})",
                         "save it as a plain CSV with one header line and the same number of "
                         "fields on every row") from e


def _count_bad_lines(path: Path, rows: int, bad: list[int], info: RawInfo) -> None:
    """Record the skipped lines in ``info``; more than 10% of the lines (and 5) is an error."""
    info.bad_lines = len(bad)
    if not bad:
        return
    total = rows + len(bad)
    if len(bad) > 5 and len(bad) > MAX_BAD_LINE_SHARE * total:
        raise InputError(path, f"{len(bad)} of {total} lines have the wrong number of fields "
                         f"(first at line {min(bad)})",
                         "make every line have as many fields as the header (check the "
                         "delimiter and quoting)")
    info.notes.append(f"skipped {len(bad)} line(s) with the wrong number of fields "
                      f"(first at line {min(bad)})")


def _read_csv(path: Path, info: RawInfo) -> pd.DataFrame:
    fmt = _sniff_csv(path, info)
    table, bad = _parse_csv(path, fmt)
    _count_bad_lines(path, table.num_rows, bad, info)
    return table.to_pandas()


def _read_parquet(path: Path) -> pd.DataFrame:
    if path.is_dir():
        raise _directory_error(path)
    try:
        with open(path, "rb") as fh:  # a file object: the name is never read as a URI
            df = pq.read_table(fh).to_pandas()
    except PermissionError as e:
        raise _permission_error(path) from e
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InputError(path, "not a readable parquet file, corrupt or truncated "
                         f"({_reason(e)})",
                         "re-export the file from its source, or replace it with a CSV") from e
    idx = df.index
    if isinstance(idx, pd.RangeIndex):
        return df
    if idx.name is None and pd.api.types.is_integer_dtype(idx.dtype):
        return df.reset_index(drop=True)  # a plain row number: not data
    return df.reset_index()  # the date (or another column) was stored as the index


# ---- columns ---------------------------------------------------------------------------------

def _price_header(columns: list[str]) -> bool:
    """Whether a header names a date or a close column (aliases included): only then is the file
    taken for a price file whose column names an error message may quote."""
    return any(_norm(c) in _PRICE_HEADER_NAMES for c in columns)


def _not_price_file(path: Path) -> InputError:
    return InputError(path, NOT_PRICE_FILE, NOT_PRICE_FIX)


def _holds_dates(s: pd.Series) -> bool:
    """More than half of the values are ISO dates."""
    as_dates = pd.to_datetime(s.astype("string"), format="ISO8601", errors="coerce")
    return bool(as_dates.notna().mean() > 0.5)


def _drop_unnamed_columns(df: pd.DataFrame, info: RawInfo) -> pd.DataFrame:
    """Drop the columns without a name (e.g. a saved pandas index), except that the first one
    becomes ``date`` when the file has no date column and that column holds dates."""
    norm = [_norm(c) for c in df.columns]
    unnamed = [str(c) for c, n in zip(df.columns, norm, strict=True)
               if not n or re.fullmatch(r"unnamed_\d+|level_\d+|index_level_\d+", n)]
    if unnamed and not set(norm) & set(ALIASES["date"]) and _holds_dates(df[unnamed[0]]):
        # a frame saved with its date index: the unnamed first column holds the dates
        first = unnamed.pop(0)
        df = df.rename(columns={first: "date"})
        info.renamed[first or "(no name)"] = "date"
    for c in unnamed:
        info.columns_dropped[c or "(no name)"] = "no column name"
    return df.drop(columns=unnamed)


def _alias_renames(columns: pd.Index) -> dict[str, str]:
    """{alias: standard name} for each standard name missing from ``columns`` (first alias in
    :data:`ALIASES` order that is present wins)."""
    rename: dict[str, str] = {}
    for std, aliases in ALIASES.items():
        if std in columns:
            continue
        hit = next((n for n in aliases if n in columns and n not in rename), None)
        if hit is not None:
            rename[hit] = std
    return rename


def _standard_names(df: pd.DataFrame, path: Path,
                    info: RawInfo) -> tuple[pd.DataFrame, dict[str, str]]:
    """Normalised, alias-mapped column names (recorded in ``info.renamed``).

    Returns the renamed frame and {column: its name in the file}, for the metadata.
    Two columns with the same normalised name are an error.
    """
    original = {_norm(c): str(c) for c in df.columns if c != "date"}
    df.columns = [_norm(c) for c in df.columns]
    if df.columns.duplicated().any():
        if not _price_header(info.columns_found):
            raise _not_price_file(path)
        dups = sorted(set(df.columns[df.columns.duplicated()]))
        raise InputError(path, f"duplicate column names after normalising case: {dups}",
                         "give every column a distinct name")
    rename = _alias_renames(df.columns)
    df = df.rename(columns=rename)
    back = {v: k for k, v in rename.items()}
    file_name = {c: original.get(back.get(c, c), c) for c in df.columns}  # used -> file's name
    info.renamed.update({f: c for c, f in file_name.items() if f != c})
    return df, file_name


def _with_date_column(df: pd.DataFrame, path: Path, info: RawInfo,
                      file_name: dict[str, str]) -> pd.DataFrame:
    """Without a column named like a date, the one datetime column is the date; else an error."""
    if "date" in df.columns:
        return df
    dt = [c for c in df.columns if pd.api.types.is_datetime64_any_dtype(df[c])]
    if len(dt) != 1:
        if not _price_header(info.columns_found):
            raise _not_price_file(path)
        raise InputError(path, f"no date column (looked for {', '.join(ALIASES['date'])}); "
                         f"columns are {info.columns_found}",
                         "name the date column 'date'")
    info.renamed[file_name[dt[0]]] = "date"
    return df.rename(columns={dt[0]: "date"})


def _require_close(df: pd.DataFrame, path: Path, info: RawInfo) -> None:
    if "close" not in df.columns and "adj_close" not in df.columns:
        if not _price_header(info.columns_found):
            raise _not_price_file(path)
        raise InputError(path, "no close price column (looked for "
                         f"{', '.join(ALIASES['close'] + ALIASES['adj_close'])}); columns are "
                         f"{info.columns_found}",
                         "add a 'close' column with the daily closing price")


def _to_number(s: pd.Series) -> pd.Series:
    """Strings -> float: currency signs and thousands separators removed, junk -> NaN."""
    txt = s.astype("string").str.strip()
    txt = txt.str.replace(r"^([-+]?)[$€£]", r"\1", regex=True)
    thousands = txt.str.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d*)?", na=False)
    txt = txt.where(~thousands, txt.str.replace(",", "", regex=False))
    return pd.to_numeric(txt, errors="coerce").astype("float64")


def _text_to_number(s: pd.Series, col: str, path: Path, info: RawInfo) -> pd.Series | None:
    """A text column as float64 with its junk cells counted in ``info``, or None when more than
    half of its values are junk (a text column; an error when it is the close)."""
    num = _to_number(s)
    present = s.notna() & (s.astype("string").str.strip() != "")
    junk_mask = present & num.isna()
    junk = int(junk_mask.sum())
    if present.sum() and junk > 0.5 * present.sum():
        if col in ("close", "adj_close"):
            # a price file (its date and close columns were found): a few values may be quoted
            examples = list(dict.fromkeys(s[junk_mask].astype(str)))[:3]
            raise InputError(path, f"the {col} column holds text, not numbers "
                             f"({junk} of {int(present.sum())} values, e.g. {examples})",
                             "store the closing price as plain numbers (e.g. 101.25)")
        return None
    if junk:
        info.junk_by_column[col] = junk
    info.junk_cells += junk
    return num


def _float_columns(df: pd.DataFrame, path: Path, info: RawInfo,
                   file_name: dict[str, str]) -> pd.DataFrame:
    """Every column but ``date`` as float64; text columns are dropped (:func:`_text_to_number`)."""
    # float64 columns (most of them) are already what we want: no lookup, no copy, no setitem
    for col in [c for c, t in df.dtypes.items() if c != "date" and t != np.float64]:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            df[col] = s.astype("float64")
            continue
        num = _text_to_number(s, col, path, info)
        if num is None:
            info.columns_dropped[file_name[col]] = "text, not numbers"
            df = df.drop(columns=col)
        else:
            df[col] = num
    return df


def _adjusted_close(df: pd.DataFrame, info: RawInfo, file_name: dict[str, str]) -> pd.DataFrame:
    """``adj_close`` becomes the close when it holds numbers, with open/high/low scaled by the
    same factor; an ``adj_close`` without numbers is dropped when there is a close."""
    if "adj_close" not in df.columns:
        return df
    if "close" in df.columns:
        if df["adj_close"].notna().sum() == 0:
            info.columns_dropped[file_name["adj_close"]] = "no numbers; close used"
            return df.drop(columns="adj_close")
        factor = df["adj_close"] / df["close"]
        for col in ("open", "high", "low"):
            if col in df.columns:
                df[col] = df[col] * factor
        df = df.drop(columns="close")
        info.notes.append("used adj_close as close and scaled open/high/low to it")
        info.columns_dropped[file_name["close"]] = "replaced by adj_close"
    info.renamed = {k: v for k, v in info.renamed.items() if v != "adj_close"}
    info.renamed[file_name["adj_close"]] = "close"
    return df.rename(columns={"adj_close": "close"})


def _inf_to_missing(df: pd.DataFrame, info: RawInfo) -> pd.DataFrame:
    """inf/-inf in the numeric columns -> NaN, counted in ``info.inf_cells``."""
    num_cols = [c for c in df.columns if c != "date"]
    inf = np.isinf(df[num_cols].to_numpy(dtype="float64"))
    info.inf_cells = int(inf.sum())
    if info.inf_cells:
        df[num_cols] = df[num_cols].replace([np.inf, -np.inf], np.nan)
        info.notes.append(f"{info.inf_cells} inf value(s) treated as missing")
    return df


def read_options(settings: Settings | None = None) -> tuple[str, str]:
    """The settings that change what :func:`read_raw` returns, checked: ``(intraday,
    excel_dates)`` (None: the defaults). An unknown value is a ValueError naming the setting."""
    s = settings if settings is not None else Settings()
    for name, value, choices in (("intraday", s.intraday, INTRADAY_CHOICES),
                                 ("excel_dates", s.excel_dates, EXCEL_DATE_CHOICES)):
        if value not in choices:
            raise ValueError(f"setting {name}={value!r}: expected one of {', '.join(choices)}")
    return s.intraday, s.excel_dates


def read_raw(path: Path, settings: Settings | None = None) -> tuple[pd.DataFrame, RawInfo]:
    """Read and standardise one raw file. Returns the frame (``date`` + numeric columns).

    ``date`` is a datetime column of calendar days (NaT where a value could not be parsed), one
    row per bar of the file, or per day when the file holds intraday bars; ``close`` is always
    present; any other column is float64. ``settings`` (None: the defaults) decide what happens
    to intraday bars (``intraday``) and Excel serial dates (``excel_dates``). See the module
    docstring for every rule.
    """
    path = Path(path)
    intraday, excel_dates = read_options(settings)
    info = RawInfo(path=str(path))
    _check_plain_file(path)
    is_parquet = path.name.lower().endswith((".parquet", ".pq"))
    df = _read_parquet(path) if is_parquet else _read_csv(path, info)
    info.columns_found = [str(c) for c in df.columns]
    if len(df) == 0:
        raise InputError(path, "the file has a header but no data rows",
                         "add rows (one per trading day) or remove the file")
    df = _drop_unnamed_columns(df, info)
    df, file_name = _standard_names(df, path, info)
    df = _with_date_column(df, path, info, file_name)
    _require_close(df, path, info)
    df = _float_columns(df, path, info, file_name)
    df = _adjusted_close(df, info, file_name)
    df = _inf_to_missing(df, info)
    df["date"] = _parse_dates(df["date"], path, info, excel_dates)
    df = _daily_bars(df, path, info, intraday)
    # a column that was dropped is reported as dropped only, not also as renamed
    info.renamed = {k: v for k, v in info.renamed.items() if k not in info.columns_dropped}
    info.rows = len(df)
    return df.reset_index(drop=True), info


# ---- dates -----------------------------------------------------------------------------------

_OFFSET = r"(\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|UTC|GMT|[+-]\d{2}:?\d{2})$"
_DMY = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2,4})$")


# YYYYMMDD or epoch; Excel serials (grouped: pandas anchors a fullmatch pattern at both ends
# of the whole string, not of each alternative)
_NUMERIC_DATE = r"(?:\d{8,13}(?:\.0*)?|\d{1,5}(?:\.\d*)?)"
_EXCEL_DAY0 = pd.Timestamp("1899-12-30")
_EXCEL_END = 73051  # 2100-01-01


def _digit_text_to_numbers(s: pd.Series) -> pd.Series:
    """A text column of numbers only (``20170811``, epoch, Excel serials such as ``41134.5``) as
    numbers; any other unchanged, years (``2015``: four digits, no fraction) too."""
    if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return s
    # a value with "-" is not YYYYMMDD/epoch: a literal-substring test (an Arrow kernel on a
    # string column) is much cheaper than the regex below, and skips only what cannot match
    if isinstance(s.dtype, pd.StringDtype) and s.str.contains("-", regex=False).any():
        return s
    txt = s.dropna().astype("string").str.strip()
    if not len(txt) or not txt.str.fullmatch(_NUMERIC_DATE).all():
        return s
    if txt.str.fullmatch(r"\d{4}").all():  # years: read as text dates, as ever
        return s
    return pd.to_numeric(s.astype("string").str.strip(), errors="coerce")


def _excel_range(v: pd.Series) -> pd.Series:
    """Which values lie in Excel's serial-date range (1900 .. 2099)."""
    return (v >= 1) & (v < _EXCEL_END)


def _excel_serials(v: pd.Series, med: float) -> bool:
    """Mostly numbers in Excel's serial-date range, and not years (all whole, 1000 .. 2999)."""
    if not 1 <= med < _EXCEL_END:
        return False
    present = v.dropna()
    if _excel_range(present).mean() <= 0.5:
        return False
    return not bool(((present % 1 == 0) & (present >= 1000) & (present < 3000)).all())


def _excel_dates(v: pd.Series, path: Path, info: RawInfo, excel_dates: str) -> pd.Series:
    """Excel serial dates (day 0 = 1899-12-30; a fraction is the time of day) as timestamps, or
    an InputError with ``excel_dates=refuse``. Values out of 1900 .. 2099 become NaT."""
    ok = v.where(_excel_range(v))
    first = float(ok.dropna().iloc[0])
    day = (_EXCEL_DAY0 + pd.Timedelta(days=int(first))).date()
    if excel_dates == "refuse":
        raise InputError(path, f"the date column holds Excel serial dates (e.g. {first:g} = "
                         f"{day})", "format the column as dates (YYYY-MM-DD) before exporting, "
                         "or convert them with --set excel_dates=convert")
    info.notes.append(f"date column holds Excel serial dates (e.g. {first:g} = {day}); converted")
    return (_EXCEL_DAY0 + pd.to_timedelta(ok * 86400.0, unit="s")).dt.round("ms")


def _dates_from_numbers(s: pd.Series, path: Path, info: RawInfo,
                        excel_dates: str = "convert") -> pd.Series:
    """``YYYYMMDD`` numbers, epoch seconds, epoch milliseconds or Excel serial dates (told apart
    by the median)."""
    v = s.astype("float64")
    med = float(np.nanmedian(v)) if v.notna().any() else 0.0
    if 1e7 <= med < 1e8:  # 20170811
        return pd.to_datetime(v.astype("Int64").astype("string"), format="%Y%m%d",
                              errors="coerce")
    if med >= 1e11:
        info.notes.append("dates read as epoch milliseconds")
        return pd.to_datetime(v, unit="ms", errors="coerce")
    if med >= 1e8:
        info.notes.append("dates read as epoch seconds")
        return pd.to_datetime(v, unit="s", errors="coerce")
    if _excel_serials(v, med):
        return _excel_dates(v, path, info, excel_dates)
    raise InputError(path, f"the date column holds numbers ({v.dropna().iloc[0]:g} ...) "
                     "that are neither YYYYMMDD, epoch seconds nor Excel serial dates",
                     "write dates as YYYY-MM-DD")


def _mixed_format_dates(txt: pd.Series, info: RawInfo) -> pd.Series:
    """Dates parsed value by value; dd/mm vs mm/dd is decided once for the whole column."""
    m = txt.str.extract(_DMY).astype("float64")
    dayfirst = bool((m[0] > 12).any())
    if not dayfirst and not (m[1] > 12).any() and m[0].notna().any():
        info.notes.append("ambiguous dd/mm vs mm/dd dates read month first")
    try:
        out = pd.to_datetime(txt, format="mixed", dayfirst=dayfirst, errors="coerce")
    except (ValueError, TypeError):  # e.g. time zone names mixed in
        out = pd.to_datetime(txt, format="mixed", dayfirst=dayfirst, errors="coerce", utc=True)
    info.notes.append("dates in mixed formats were parsed value by value")
    return out


def _dates_from_text(s: pd.Series, info: RawInfo) -> pd.Series:
    """ISO 8601 dates, else :func:`_mixed_format_dates`."""
    txt = s.astype("string").str.strip()
    # a UTC offset after a time is dropped: the local (exchange) calendar date is the day
    # (the offset rule needs a ":"; a string column without one skips the regex)
    if not isinstance(s.dtype, pd.StringDtype) or s.str.contains(":", regex=False).any():
        txt = txt.str.replace(_OFFSET, r"\1", regex=True)
    try:
        return pd.to_datetime(txt, format="ISO8601")
    except (ValueError, TypeError):
        return _mixed_format_dates(txt, info)


def _local_dates(out: pd.Series) -> pd.Series:
    """Tz-naive datetimes that keep the local (exchange) calendar date."""
    if not pd.api.types.is_datetime64_any_dtype(out):  # several UTC offsets in one column
        out = pd.to_datetime(out, utc=True, errors="coerce")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_localize(None)
    return out


def _check_unparsed_dates(out: pd.Series, s: pd.Series, path: Path, info: RawInfo) -> None:
    """More than half of the dates unparsed (NaT in ``out``) is an error; fewer is a note."""
    bad = int(out.isna().sum())
    if bad and bad > 0.5 * len(out):
        examples = list(dict.fromkeys(s[out.isna()].dropna().astype(str)))[:3]
        raise InputError(path, f"{bad} of {len(out)} dates could not be parsed (e.g. {examples})",
                         "write dates as YYYY-MM-DD")
    if bad:
        info.notes.append(f"{bad} row(s) with an unparseable date will be dropped")


def _parse_dates(s: pd.Series, path: Path, info: RawInfo,
                 excel_dates: str = "convert") -> pd.Series:
    """Dates -> tz-naive local timestamps, times of day kept (NaT where unparseable); the calendar
    day is taken by :func:`_daily_bars`. Rules: module docstring."""
    s = _digit_text_to_numbers(s)
    if pd.api.types.is_datetime64_any_dtype(s):
        out = s
    elif pd.api.types.is_numeric_dtype(s):
        out = _dates_from_numbers(s, path, info, excel_dates)
    else:
        out = _dates_from_text(s, info)
    out = _local_dates(out)
    _check_unparsed_dates(out, s, path, info)
    return out


# ---- intraday bars ---------------------------------------------------------------------------

# how the bars of one day become its daily bar; any other column: its last value of the day
_BAR_RULES = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


def _stamp_ticks(stamps: pd.Series) -> tuple[np.ndarray, int]:
    """The timestamps that are not NaT as integers in their unit, and the ticks per day."""
    arr = stamps.to_numpy()
    ticks = arr[~np.isnat(arr)].view("i8")
    return ticks, int(np.timedelta64(1, "D") // np.timedelta64(1, np.datetime_data(arr.dtype)[0]))


def _bars_per_day(ticks: np.ndarray, per_day: int) -> tuple[int, int] | None:
    """``(bars, days)`` when some calendar day holds bars at more than one time of day, else
    None (one bar a day, at whatever time)."""
    day = np.unique(ticks) // per_day  # sorted: the bars of one day are neighbours
    if not (day[1:] == day[:-1]).any():
        return None
    return len(ticks), len(np.unique(day))


def _aggregate_bars(df: pd.DataFrame, info: RawInfo, bars: int) -> pd.DataFrame:
    """Intraday bars -> one row a day (:data:`_BAR_RULES`, in time order). Bars with a repeated
    timestamp keep the last line; rows without a date are kept as they are (dropped, counted,
    by the clean stage)."""
    undated = df[df["date"].isna()]
    dated = df[df["date"].notna()].sort_values("date", kind="stable")
    repeated = dated["date"].duplicated(keep="last")
    if repeated.any():
        info.notes.append(f"{int(repeated.sum())} intraday bar(s) with a repeated timestamp "
                          "dropped (the last line kept)")
        dated = dated[~repeated]
    groups = dated.drop(columns="date").groupby(dated["date"].dt.normalize().rename("date"))
    daily = pd.DataFrame({
        col: groups[col].sum(min_count=1) if _BAR_RULES.get(col) == "sum"
        else getattr(groups[col], _BAR_RULES.get(col, "last"))()
        for col in df.columns if col != "date"}).reset_index()[list(df.columns)]
    info.notes.append(f"intraday bars aggregated: {bars} bars became {len(daily)} daily bars "
                      "(first open, max high, min low, last close, summed volume, last value "
                      "of other columns)")
    return pd.concat([daily, undated], ignore_index=True) if len(undated) else daily


def _daily_bars(df: pd.DataFrame, path: Path, info: RawInfo, intraday: str) -> pd.DataFrame:
    """``date`` as calendar days: a file of intraday bars is aggregated to days or refused
    (``intraday``); any other keeps its rows."""
    ticks, per_day = _stamp_ticks(df["date"])
    tod = ticks % per_day
    if not len(tod) or (tod == tod[0]).all():  # a daily file: one pass, no copy at midnight
        if len(tod) and tod[0]:
            df["date"] = df["date"].dt.normalize()
        return df
    found = _bars_per_day(ticks, per_day)
    if found is None:
        df["date"] = df["date"].dt.normalize()
        return df
    bars, days = found
    if intraday == "refuse":
        raise InputError(path, f"the file holds intraday bars ({bars} bars on {days} days)",
                         "supply daily bars, or aggregate them to days with "
                         "--set intraday=aggregate")
    return _aggregate_bars(df, info, bars)
