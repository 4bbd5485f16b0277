"""The data stages' fast paths give what the plain ways give: forward fill, .npz writing,
sequences built from the parquet file, and the clean stage's reuse of the raw stage's parse."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_assets.core import stages
from lstm_assets.core.clean import _ffill
from lstm_assets.core.sequences import SequenceSet, build_sequences, build_sequences_from_parquet
from lstm_assets.core.settings import Settings
from lstm_assets.core.storage import read_npz, read_parquet, write_npz


def test_ffill_is_pandas_ffill_with_limit() -> None:
    rng = np.random.default_rng(0)
    for trial in range(300):
        n, k = int(rng.integers(1, 50)), int(rng.integers(1, 5))
        F = rng.standard_normal((n, k))
        F[rng.random((n, k)) < rng.random()] = np.nan
        if trial % 3 == 0:
            F[: rng.integers(0, n)] = np.nan  # a warm-up: leading gaps stay
        limit = int(rng.integers(1, 6))
        want = pd.DataFrame(F).ffill(limit=limit).to_numpy()
        np.testing.assert_array_equal(_ffill(F, limit), want)
        assert not np.shares_memory(_ffill(F, limit), F)


def test_write_npz_members_are_np_savez_bytes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = {"X": rng.standard_normal((300, 7)).astype(np.float32),
              "y": rng.integers(-1, 3, 300).astype(np.int8), "lookback": np.asarray(30),
              "features": np.asarray(["a", "bbb"], dtype=str), "empty": np.zeros((0, 3)),
              "fortran": np.asfortranarray(rng.standard_normal((5, 4))),
              "strided": rng.standard_normal((10, 4))[::2]}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_npz(tmp_path / "a.npz", **arrays)
    ours, numpy = zipfile.ZipFile(tmp_path / "a.npz"), zipfile.ZipFile(buf)
    assert ours.namelist() == numpy.namelist()
    for name in numpy.namelist():
        assert ours.read(name) == numpy.read(name), name
    back = read_npz(tmp_path / "a.npz")
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v)
    with pytest.raises(ValueError, match="pickle"):
        write_npz(tmp_path / "b.npz", o=np.array([{}], dtype=object))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]  # no temp file left


def _equal(a: SequenceSet, b: SequenceSet) -> None:
    for k in ("X", "y", "mean", "scale", "dates"):
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), k
    assert (a.features, a.bounds, a.lookback) == (b.features, b.bounds, b.lookback)


def test_sequences_from_parquet_equal_frame_path(demo_raw: Path, tmp_path: Path,
                                                 tiny: Settings) -> None:
    layout = stages.Layout.from_dirs(demo_raw, tmp_path / "wh")
    for sym in layout.symbols():
        stages.run_clean(layout, sym, tiny)
        path = layout.warehouse.clean_frame(sym)
        frame = read_parquet(path)
        before = frame.copy()
        a, info_a = build_sequences(frame, tiny)
        b, info_b = build_sequences_from_parquet(path, tiny)
        pd.testing.assert_frame_equal(frame, before)  # the caller's frame is left alone
        _equal(a, b)
        assert info_a == info_b
        assert b.X.flags.c_contiguous  # training uses it as loaded, without a copy
        meta = stages.run_sequences(layout, sym, tiny)
        _equal(SequenceSet.load(Path(meta["path"])), a)


def test_sequences_reader_fallback_without_pyarrows_reader_class(
        demo_raw: Path, tmp_path: Path, tiny: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """storage.parquet_reader uses pyarrow's (private) ParquetReader class for its memory pool;
    a pyarrow without it gets ParquetFile's reader instead, with the same result."""
    from lstm_assets.core import storage

    layout = stages.Layout.from_dirs(demo_raw, tmp_path / "wh")
    sym = layout.symbols()[0]
    stages.run_clean(layout, sym, tiny)
    path = layout.warehouse.clean_frame(sym)
    a, info_a = build_sequences_from_parquet(path, tiny)
    monkeypatch.setattr(storage, "ParquetReader", None)
    b, info_b = build_sequences_from_parquet(path, tiny)
    _equal(a, b)
    assert info_a == info_b


def test_clean_reuses_the_raw_parse_only_of_an_unchanged_file(demo_raw: Path, tmp_path: Path,
                                                              tiny: Settings,
                                                              monkeypatch) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    sym = stages.Layout.from_dirs(demo_raw, tmp_path).symbols()[0]
    src = demo_raw / f"{sym}.csv"
    (raw / src.name).write_bytes(src.read_bytes())
    layout = stages.Layout.from_dirs(raw, tmp_path / "wh")
    parses: list[Path] = []
    real = stages.data.read_raw
    monkeypatch.setattr(stages.data, "read_raw", lambda p: parses.append(p) or real(p))

    stages.run_raw(layout, sym)
    first = stages.run_clean(layout, sym, tiny)
    assert len(parses) == 1  # the clean stage used the raw stage's parse
    frame = read_parquet(first["path"])

    stages.run_clean(layout, sym, tiny)  # alone: parses (the kept parse was taken)
    assert len(parses) == 2
    pd.testing.assert_frame_equal(read_parquet(first["path"]), frame)

    stages.run_raw(layout, sym)
    text = (raw / src.name).read_text().splitlines(keepends=True)
    (raw / src.name).write_text("".join(text[:-1]))  # the file changes between the stages
    st = (raw / src.name).stat()
    os.utime(raw / src.name, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    changed = stages.run_clean(layout, sym, tiny)
    assert len(parses) == 4  # parsed again: the kept parse was of the old content
    assert changed["rows_in"] == first["rows_in"] - 1
