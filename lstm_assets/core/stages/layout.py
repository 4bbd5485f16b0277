"""Where a run's files are (:class:`Layout`) and the readers every stage shares: an upstream
artifact that is missing is a clear error naming the asset to materialize first."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lstm_assets.core.ingest import check_inside, find_raw_file, list_raw_files
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.storage import AnyPath, Warehouse, read_parquet

log = logging.getLogger(__name__)


@dataclass
class Layout:
    """Where the raw files, the artifacts and (for demo data) the ground truth are."""

    raw_dir: Path
    warehouse: Warehouse
    truth_dir: Path | None = None

    @classmethod
    def from_dirs(cls, raw_dir: str | Path, warehouse_dir: str | Path,
                  truth_dir: str | Path | None = None) -> Layout:
        return cls(Path(raw_dir), Warehouse(warehouse_dir), Path(truth_dir) if truth_dir else None)

    def symbols(self) -> list[str]:
        return sorted(list_raw_files(self.raw_dir))

    def raw_file(self, symbol: str) -> Path:
        """The symbol's one raw file, or a clear error (missing, or two files for one symbol)."""
        return find_raw_file(self.raw_dir, symbol)


def file_hash(path: Path, raw_dir: Path | None = None) -> str:
    """The first 16 hex digits of the content's SHA-256. With ``raw_dir`` (the folder of a raw
    file), a link to outside it is refused unopened (InputError, see ``ingest.check_inside``)."""
    if raw_dir is not None:
        check_inside(Path(path), raw_dir)
    h = hashlib.sha256()
    with path.open("rb") as fh:  # a local file or an s3:// object
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def upstream(path: AnyPath, asset: str, symbol: str) -> AnyPath:
    """``path``, or a clear error naming the asset to materialize first."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: materialize {asset}[{symbol}] first")
    return path


def read_clean(layout: Layout, symbol: str, columns: list[str] | None = None) -> pd.DataFrame:
    return read_parquet(upstream(layout.warehouse.clean_frame(symbol), "clean_frames", symbol),
                        columns=columns)


def read_sequences(layout: Layout, symbol: str) -> SequenceSet:
    return SequenceSet.load(upstream(layout.warehouse.sequences(symbol), "sequence_tensors",
                                      symbol))
