"""Count the one-day price jumps that would reach training unexplained, over a folder of raw files.

    python scripts/count_unexplained_jumps.py RAW_DIR

Each raw file goes through the raw and clean stages of the core library (``ingest.read_raw``,
``clean.clean_frame``, default :class:`Settings`; no Dagster). In the clean close series, after
split adjustment, every day with a one-day |log return| > 0.3 is checked: it is *excluded* when
no row whose label would use it (rows ``j - horizon .. j + lookback - 1``, see
``clean.label_frame``) has a label, and *explained* when ``price_jumps`` notes it with the
``keep`` policy. A day that is neither is printed with its file and date. A file that the
clean stage refuses (``InputError``: no rows, too short, ...) is listed as skipped.

The last line is ``unexplained one-day |log return| > 0.3 left in training: N files``; the line
before it counts the files with splits adjusted and with jumps excluded. Exit status 1 when
N > 0, 2 when RAW_DIR is not a folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstm_assets.core.clean import clean_frame
from lstm_assets.core.corporate_actions import excluded_rows, log_returns
from lstm_assets.core.ingest import list_raw_files, read_raw
from lstm_assets.core.settings import Settings
from lstm_assets.core.storage import InputError

BIG = 0.3
"""The one-day |log return| this script looks for."""


def unexplained(frame: pd.DataFrame, info: dict[str, Any], settings: Settings) -> list[str]:
    """The days of ``frame`` with a one-day |log return| > BIG that are neither excluded
    from training nor noted as kept, as ``date (log return, why)`` texts."""
    r = log_returns(frame["close"].to_numpy(dtype=np.float64))
    big = np.flatnonzero(np.abs(np.nan_to_num(r)) > BIG)
    label = frame["label"].to_numpy()
    kept = {j["date"] for j in info.get("price_jumps", []) if j["policy"] == "keep"}
    out = []
    for j in big:
        window = excluded_rows(np.array([j]), len(frame), settings.horizon, settings.lookback)
        date = str(pd.Timestamp(frame["date"].iloc[j]).date())
        if not (label[window] >= 0).any() or date in kept:
            continue
        noted = any(x["date"] == date for x in info.get("price_jumps", []))
        why = "noted but still labelled" if noted else "not noted"
        out.append(f"{date} (log return {r[j]:+.3f}, {why})")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("raw_dir", type=Path)
    args = ap.parse_args(argv)
    if not args.raw_dir.is_dir():
        print(f"{args.raw_dir} is not a folder", file=sys.stderr)
        return 2
    settings = Settings()
    files = list_raw_files(args.raw_dir)
    bad: list[str] = []
    skipped: list[str] = []
    splits: dict[str, list[dict[str, Any]]] = {}
    excluded: dict[str, int] = {}
    for symbol, path in sorted(files.items()):
        try:
            raw, _ = read_raw(path)
            frame, info = clean_frame(raw, settings, str(path))
        except InputError as e:
            skipped.append(f"{path.name}: {e.problem}")
            continue
        if info["corporate_actions"]:
            splits[symbol] = info["corporate_actions"]
        jumps = [j for j in info["price_jumps"] if j["policy"] == "exclude"]
        if jumps:
            excluded[symbol] = len(jumps)
        days = unexplained(frame, info, settings)
        if days:
            bad.append(path.name)
            print(f"{path.name}: one-day |log return| > {BIG:g} in training: {', '.join(days)}")
    for s in skipped:
        print(f"skipped {s}")
    for sym, acts in splits.items():
        print(f"{sym}: " + "; ".join(
            f"{a['date']} {a['kind']} x{a['ratio']:g} (volume "
            f"{'confirmed' if a['volume_confirmed'] else 'not confirmed'})" for a in acts))
    n_splits = sum(len(a) for a in splits.values())
    confirmed = sum(a["volume_confirmed"] for acts in splits.values() for a in acts)
    print(f"{len(files)} files, {len(skipped)} skipped; files with splits adjusted: "
          f"{len(splits)} ({n_splits} splits, {confirmed} volume-confirmed); files with jumps "
          f"excluded: {len(excluded)} ({sum(excluded.values())} jumps)")
    print(f"unexplained one-day |log return| > {BIG:g} left in training: {len(bad)} files")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
