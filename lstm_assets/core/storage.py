"""Where artifacts live, how they are written (atomically) and read (never with pickle).

Layout under the warehouse base (default ``data/warehouse``)::

    clean_frames/<SYMBOL>.parquet
    sequence_tensors/<SYMBOL>.npz          X (float32 2-D), y, dates, bounds; allow_pickle=False
    lstm_model/<SYMBOL>.safetensors        weights + JSON config in the safetensors header
    lstm_model/<SYMBOL>.json               the same config, for people
    evaluation_report/<SYMBOL>.{json,md,png}
    leaderboard.{json,md,parquet}
    checkpoints/<SYMBOL>.pt                per-epoch training checkpoint (weights_only load)

Every local write goes to a temporary file in the target folder and is moved into place with
``os.replace``: a killed run leaves the previous good file readable, never a partial one.

The base may also be an object-store URL, e.g. ``s3://bucket/prefix`` (needs the ``scaleout``
extra: universal-pathlib + s3fs). Paths are then :class:`upath.UPath` objects; a write is one
PUT of a finished file (S3 makes an object visible whole or not at all), and reads go through
:func:`read_bytes` / :func:`read_parquet` / :func:`read_npz` / :func:`local_file`. Credentials
come from the usual AWS chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, a profile, an
instance or pod role); the endpoint from ``LSTM_S3_ENDPOINT``, ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL`` (MinIO, a local ``moto_server``), the region from ``AWS_REGION`` /
``AWS_DEFAULT_REGION``. Local paths never import upath or s3fs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lstm_assets.core.config import ProjectConfig

try:  # the reader class pyarrow.parquet.ParquetFile wraps; it takes a memory pool, the file not
    from pyarrow._parquet import ParquetReader
except ImportError:  # a pyarrow that moved it: parquet_reader falls back to ParquetFile's reader
    ParquetReader = None

if TYPE_CHECKING:
    from upath import UPath

AnyPath: TypeAlias = "Path | UPath"
"""A local :class:`~pathlib.Path` or, for an object-store warehouse, a :class:`upath.UPath`."""

_URL_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,19}$")


class InputError(ValueError):
    """A problem with a user's input file: says which file, what is wrong and how to fix it."""

    def __init__(self, path: str | Path | None, problem: str, fix: str) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}. Fix: {fix}")


def normalize_symbol(name: str) -> str:
    """Turn a file stem into a symbol (upper case), refusing anything that could escape a folder.

    ``brk.b`` becomes ``BRK.B``; ``../etc`` or ``a/b`` raise :class:`InputError`.
    """
    sym = name.strip().upper()
    if not SYMBOL_RE.match(sym) or ".." in sym:
        raise InputError(
            name,
            f"{name!r} is not a valid symbol name (allowed: letters, digits, '.', '-', '_'; "
            "at most 20 characters; no path separators or '..')",
            "rename the file to SYMBOL.csv, e.g. BRK.B.csv",
        )
    return sym


# ---------------------------------------------------------------- local or object-store paths


def is_url(path: object) -> bool:
    """True for ``scheme://...`` strings other than ``file://``."""
    m = _URL_RE.match(str(path)) if isinstance(path, str) else None
    return bool(m) and m.group(1).lower() not in ("file", "local")


def is_remote(path: object) -> bool:
    """True when ``path`` names an object in a store (an ``s3://`` URL or a non-local UPath)."""
    if isinstance(path, Path):  # pathlib and universal-pathlib's local classes
        return False
    if isinstance(path, str):
        return is_url(path)
    return getattr(path, "protocol", "") not in ("", "file", "local")


def s3_storage_options() -> dict[str, Any]:
    """s3fs options from the environment: endpoint and region; credentials via the AWS chain."""
    opts: dict[str, Any] = {"use_listings_cache": False}  # other processes write here too
    cfg = ProjectConfig.from_env()  # LSTM_S3_ENDPOINT / AWS_ENDPOINT_URL*, AWS_*REGION
    if cfg.s3_endpoint:
        opts["endpoint_url"] = cfg.s3_endpoint
    if cfg.s3_region:
        opts["client_kwargs"] = {"region_name": cfg.s3_region}
    return opts


def remote_path(url: str) -> UPath:
    """A :class:`upath.UPath` for ``url`` with storage options taken from the environment."""
    try:
        from upath import UPath
    except ImportError as e:  # the core runs without the scale-out extra for local paths
        raise ImportError(
            f"{url}: an object-store warehouse needs universal-pathlib and s3fs; "
            "install them with: pip install 'lstm_assets[scaleout]'") from e
    protocol = _URL_RE.match(url).group(1).lower()  # type: ignore[union-attr]
    options = s3_storage_options() if protocol in ("s3", "s3a") else {}
    return UPath(url, **options)


def as_path(path: str | os.PathLike[str] | AnyPath) -> AnyPath:
    """A local :class:`Path` for a plain path or ``file://`` URL, a ``UPath`` for a store URL."""
    if isinstance(path, Path):
        return path
    if not isinstance(path, str | os.PathLike):
        return path  # already a UPath
    text = os.fspath(path)
    if text.lower().startswith("file://"):
        return Path(text[len("file://"):])
    return remote_path(text) if is_url(text) else Path(text)


def symbol_path(folder: AnyPath, symbol: str, suffix: str) -> AnyPath:
    """``folder/SYMBOL+suffix`` after validating the symbol (it is never used raw as a path)."""
    sym = normalize_symbol(symbol)
    path = folder / f"{sym}{suffix}"
    inside = (path.parent == folder if is_remote(folder)
              else path.resolve().parent == folder.resolve())
    if not inside:
        raise InputError(symbol, "symbol resolves outside its folder", "use a plain symbol name")
    return path


def _new_temp_beside(target: Path) -> str:
    """A new empty file beside ``target``, created with the mode a plain ``open()`` gives (0666
    less the umask, applied by the kernel). ``mkstemp`` would make it owner-only (0600),
    unreadable to other users, pods under another uid and shared folders."""
    while True:
        name = str(target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp")
        try:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return name
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue


@contextlib.contextmanager
def atomic_path(target: AnyPath) -> Iterator[Path]:
    """Yield a local temp path; on success it replaces ``target`` atomically.

    Local targets: the temp file sits beside the target and ``os.replace`` moves it. Store
    targets: the temp file is local and is uploaded once complete (one object PUT, which the
    store makes visible whole); on error nothing is uploaded.
    """
    if is_remote(target):
        obj = as_path(target)
        with tempfile.TemporaryDirectory(prefix="lstm_upload_") as d:
            tmp = Path(d) / obj.name
            yield tmp
            obj.fs.put_file(str(tmp), obj.path)  # type: ignore[union-attr]
        return
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = _new_temp_beside(target)
    try:
        yield Path(tmp_name)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def local_file(path: AnyPath) -> Iterator[Path]:
    """A local file with ``path``'s bytes: the file itself, or a temp download of an object.

    For readers that need a real file name (safetensors ``safe_open``, ``torch.load``).
    """
    if not is_remote(path):
        yield Path(path)
        return
    obj = as_path(path)
    with tempfile.TemporaryDirectory(prefix="lstm_download_") as d:
        tmp = Path(d) / obj.name
        obj.fs.get_file(obj.path, str(tmp))  # type: ignore[union-attr]
        yield tmp


def open_binary(path: AnyPath) -> IO[bytes]:
    """Open a local file or a store object for reading bytes (e.g. to hash it)."""
    return as_path(path).open("rb")


def exists(path: AnyPath) -> bool:
    return as_path(path).exists()


def file_size(path: AnyPath) -> int:
    return int(as_path(path).stat().st_size)


def remove(path: AnyPath, missing_ok: bool = True) -> None:
    as_path(path).unlink(missing_ok=missing_ok)


def read_bytes(path: AnyPath) -> bytes:
    return as_path(path).read_bytes()


def read_text(path: AnyPath) -> str:
    return read_bytes(path).decode("utf-8")


def write_bytes(target: AnyPath, data: bytes) -> None:
    """Write ``data`` atomically (local: temp + fsync + replace; store: one PUT)."""
    if is_remote(target):
        as_path(target).write_bytes(data)
        return
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_text(target: AnyPath, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, pd.Timestamp):
        return o.isoformat()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _finite(o: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(o, float) and not np.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


def to_json(obj: Any) -> str:
    return json.dumps(_finite(obj), indent=2, default=_json_default, allow_nan=False)


def write_json(target: AnyPath, obj: Any) -> None:
    write_text(target, to_json(obj) + "\n")


def read_json(path: AnyPath) -> Any:
    return json.loads(read_text(path))


def write_parquet(target: AnyPath, df: pd.DataFrame,
                  metadata: dict[str, Any] | None = None) -> None:
    """Write ``df`` (without its index) atomically.

    Float columns are written without dictionary encoding: prices and features almost never
    repeat, so building the dictionary only to discard it cost ~3/4 of the write time of a clean
    frame and made the file a third larger. Other columns (dates, labels, names) keep it.
    ``metadata``: extra key-value pairs of the file's schema metadata, each value stored as JSON
    text (read back with :func:`parquet_metadata`).
    """
    floats = {c for c, t in df.dtypes.items() if pd.api.types.is_float_dtype(t)}
    dictionary = [str(c) for c in df.columns if c not in floats]
    with atomic_path(target) as tmp:
        if not metadata:
            df.to_parquet(tmp, index=False, use_dictionary=dictionary)
            return
        # what DataFrame.to_parquet does, with the extra keys added to the schema metadata
        table = pa.Table.from_pandas(df, preserve_index=False)
        extra = {k.encode(): to_json(v).encode() for k, v in metadata.items()}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
        pq.write_table(table, tmp, use_dictionary=dictionary)


def parquet_metadata(path: AnyPath, key: str) -> Any:
    """The value :func:`write_parquet` stored under ``key`` in the file's metadata (decoded
    JSON), or None when the file has no such key. Reads the footer only (a store object too:
    its file object seeks)."""
    with open_binary(path) as fh:
        value = (pq.read_schema(fh).metadata or {}).get(key.encode())
    return None if value is None else json.loads(value)


def read_parquet(path: AnyPath, **kwargs: Any) -> pd.DataFrame:
    """``pd.read_parquet`` for a local file or a store object."""
    if is_remote(path):
        return pd.read_parquet(io.BytesIO(read_bytes(path)), **kwargs)
    return pd.read_parquet(path, **kwargs)


def _write_npy(fh: IO[bytes], arr: np.ndarray) -> None:
    """``numpy.lib.format.write_array`` without its copies: the bytes of a C-contiguous array
    go to ``fh`` as a view (numpy copies them chunk by chunk, up to 16 MiB, for a file object
    such as a zip member). Same header, same bytes; never pickles."""
    fmt = np.lib.format
    if arr.dtype.hasobject:
        raise ValueError("object arrays are not written (they would need pickle)")
    if not arr.flags.c_contiguous:
        fmt.write_array(fh, arr, allow_pickle=False)
        return
    header = fmt.header_data_from_array_1_0(arr)
    try:  # the oldest version that fits, as numpy chooses
        fmt.write_array_header_1_0(fh, header)
    except ValueError:
        fmt.write_array_header_2_0(fh, header)
    fh.write(memoryview(arr.reshape(-1).view(np.uint8)))


@contextlib.contextmanager
def parquet_reader(path: AnyPath,
                   memory_pool: pa.MemoryPool | None = None) -> Iterator[Any]:
    """The reader of a local parquet file or a store object, to read its schema, metadata and
    single columns (``read_column``) without reading the whole file.

    It is the reader class ``pyarrow.parquet.ParquetFile`` wraps, used directly: reading one
    column returns it without building a Table around it (~4x faster for a narrow read), and
    ``memory_pool`` (e.g. ``pa.system_memory_pool()``) applies to this file's reads only,
    where ``ParquetFile`` always uses the process-wide default pool.
    """
    with contextlib.ExitStack() as stack:
        if is_remote(path):
            source: Any = pa.BufferReader(read_bytes(path))
        else:  # a file object: the name is never read as a URI
            source = stack.enter_context(open(path, "rb"))
        if ParquetReader is None:  # the same reader, through ParquetFile (default pool)
            yield pq.ParquetFile(source).reader
            return
        reader = ParquetReader(memory_pool=memory_pool)
        reader.open(source)
        yield reader


def write_npz(target: AnyPath, **arrays: np.ndarray) -> None:
    """Write arrays as an uncompressed ``.npz`` (what ``np.savez`` writes), atomically.

    The archive is written straight into the temp file of the atomic write, each array from its
    own memory: no in-memory copy of the archive or of an array (peak: the arrays themselves).
    """
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        with zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED,
                             allowZip64=True) as zf:
            for name, value in arrays.items():
                # force_zip64 as numpy does (gh-10776): the size is not known up front
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    _write_npy(member, np.asanyarray(value))
        fh.flush()
        os.fsync(fh.fileno())


def read_npz(path: AnyPath) -> dict[str, np.ndarray]:
    src: Any = io.BytesIO(read_bytes(path)) if is_remote(path) else path
    with np.load(src, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class Warehouse:
    """Paths of every artifact under one base: a local folder or a store URL (``s3://b/p``)."""

    def __init__(self, base: str | os.PathLike[str] | AnyPath) -> None:
        self.base: AnyPath = as_path(base)

    @property
    def remote(self) -> bool:
        """True when artifacts live in an object store."""
        return is_remote(self.base)

    def path(self, asset: str, symbol: str, suffix: str) -> AnyPath:
        return symbol_path(self.base / asset, symbol, suffix)

    def clean_frame(self, symbol: str) -> AnyPath:
        return self.path("clean_frames", symbol, ".parquet")

    def sequences(self, symbol: str) -> AnyPath:
        return self.path("sequence_tensors", symbol, ".npz")

    def model(self, symbol: str) -> AnyPath:
        return self.path("lstm_model", symbol, ".safetensors")

    def checkpoint(self, symbol: str) -> AnyPath:
        return self.path("checkpoints", symbol, ".pt")

    def group_checkpoint(self, key: str) -> AnyPath:
        """The checkpoint of symbols training together (``core.train.fit_many``), named by
        ``key``, a hex digest of its members' fingerprints (lower case: never a symbol's)."""
        if not re.fullmatch(r"[0-9a-f]{8,64}", key):
            raise ValueError(f"not a hex key: {key!r}")
        return self.base / "checkpoints" / f"group-{key}.pt"

    def report(self, symbol: str, suffix: str = ".json") -> AnyPath:
        return self.path("evaluation_report", symbol, suffix)

    def leaderboard(self, suffix: str = ".json") -> AnyPath:
        return self.base / f"leaderboard{suffix}"

    def signals(self) -> AnyPath:
        return self.base / "latest_signals.parquet"

    def pooled_model(self, family: str) -> AnyPath:
        if not re.fullmatch(r"[a-z]+", family):
            raise ValueError(f"not a model family: {family!r}")
        return self.base / "pooled_model" / f"{family}.safetensors"

    def signal_history(self) -> AnyPath:
        return self.base / "signal_history.parquet"

    def outcomes(self, suffix: str = ".parquet") -> AnyPath:
        return self.base / f"signal_outcomes{suffix}"

    def report_symbols(self) -> list[str]:
        folder = self.base / "evaluation_report"
        if not folder.exists():
            return []
        return sorted(q.stem for q in folder.glob("*.json"))
