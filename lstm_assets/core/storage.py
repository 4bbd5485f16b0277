"""Where artifacts live, how they are written (atomically) and read (never with pickle).

Layout under the warehouse base (default ``data/warehouse``)::

    clean_frames/<SYMBOL>.parquet
    sequence_tensors/<SYMBOL>.npz          X (float32 2-D), y, dates, bounds; allow_pickle=False
    lstm_model/<SYMBOL>.safetensors        weights + JSON config in the safetensors header
    lstm_model/<SYMBOL>.json               the same config, for people
    evaluation_report/<SYMBOL>.{json,md,png}
    leaderboard.{json,md,parquet}
    checkpoints/<SYMBOL>.pt                per-epoch training checkpoint (weights_only load)

Every write goes to a temporary file in the target folder and is moved into place with
``os.replace``: a killed run leaves the previous good file readable, never a partial one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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


def symbol_path(folder: Path, symbol: str, suffix: str) -> Path:
    """``folder/SYMBOL+suffix`` after validating the symbol (it is never used raw as a path)."""
    sym = normalize_symbol(symbol)
    path = folder / f"{sym}{suffix}"
    if path.resolve().parent != folder.resolve():
        raise InputError(symbol, "symbol resolves outside its folder", "use a plain symbol name")
    return path


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success move it over ``target`` atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_text(target: Path, text: str) -> None:
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


def write_json(target: Path, obj: Any) -> None:
    write_text(target, to_json(obj) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_parquet(target: Path, df: pd.DataFrame) -> None:
    with atomic_path(target) as tmp:
        df.to_parquet(tmp, index=False)


def write_npz(target: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(target, buf.getvalue())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class Warehouse:
    """Paths of every artifact under one base folder."""

    def __init__(self, base: str | Path) -> None:
        self.base = Path(base)

    def path(self, asset: str, symbol: str, suffix: str) -> Path:
        return symbol_path(self.base / asset, symbol, suffix)

    def clean_frame(self, symbol: str) -> Path:
        return self.path("clean_frames", symbol, ".parquet")

    def sequences(self, symbol: str) -> Path:
        return self.path("sequence_tensors", symbol, ".npz")

    def model(self, symbol: str) -> Path:
        return self.path("lstm_model", symbol, ".safetensors")

    def checkpoint(self, symbol: str) -> Path:
        return self.path("checkpoints", symbol, ".pt")

    def report(self, symbol: str, suffix: str = ".json") -> Path:
        return self.path("evaluation_report", symbol, suffix)

    def leaderboard(self, suffix: str = ".json") -> Path:
        return self.base / f"leaderboard{suffix}"

    def signals(self) -> Path:
        return self.base / "latest_signals.parquet"

    def report_symbols(self) -> list[str]:
        folder = self.base / "evaluation_report"
        return sorted(p.stem for p in folder.glob("*.json")) if folder.exists() else []
