"""``lstm-assets compare``: model families side by side on a folder of raw files, over
walk-forward folds (:mod:`lstm_assets.core.research.compare`), with a progress bar; prints the
comparison table and verdict and writes ``comparison.json``, ``comparison.md`` and the plots.

Exit codes: 0 the comparison ran; 2 it could not (fewer than 2 usable files, a bad option).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from lstm_assets.core.config import ProjectConfig

QUICK = {"max_epochs": 4, "early_stop_patience": 2}
"""``--quick``: the networks' epochs capped, a ``--set`` of the same key wins (the families,
folds and statistics are the default's but fewer: see :func:`spec_of`)."""


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def register(subparsers: Any) -> None:
    """Add ``compare`` to ``lstm-assets``."""
    from lstm_assets.core.research.compare import DEFAULT_FAMILIES, FAMILIES, QUICK_FAMILIES

    cfg = ProjectConfig.from_env()
    c = subparsers.add_parser(
        "compare", help="model families side by side over walk-forward folds (rank IC, "
                        "accuracy, long/short, significance)",
        description="Pooled LSTM / GRU / ALSTM, gradient-boosted trees, an ensemble and the "
                    "per-symbol LSTM beside factor baselines, on every symbol's clean frame.")
    c.add_argument("--raw-dir", default=cfg.raw_dir)
    c.add_argument("--symbols", default="all", help="comma-separated, or 'all' (default)")
    c.add_argument("--families", default="",
                   help=f"comma-separated, of {', '.join(FAMILIES)} (default "
                        f"{','.join(DEFAULT_FAMILIES)}; --quick: {','.join(QUICK_FAMILIES)})")
    c.add_argument("--horizons", default="1", help="forward days, comma-separated (e.g. 1,5,20)")
    c.add_argument("--targets", default="raw", help="raw and/or excess (over the universe's "
                                                    "mean return of the day)")
    c.add_argument("--folds", type=int, default=4, help="walk-forward folds (default 4)")
    c.add_argument("--embedding", type=int, default=8,
                   help="symbol embedding size of the pooled networks (0: none)")
    c.add_argument("--cost-bps", type=float, default=10.0, help="long/short cost a side")
    c.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    c.add_argument("--tune", type=int, default=0, metavar="N",
                   help="choose the pooled networks' hidden size, lookback, dropout, group "
                        "lasso and learning rate by a seeded search of N configurations "
                        "besides the defaults, on the first fold's validation dates (never on "
                        "test); every trial counts in the significance correction (default 0: "
                        "no search)")
    c.add_argument("--quick", action="store_true",
                   help="fewer families, epochs and resamples: a first look in minutes")
    c.add_argument("--out", type=Path, default=None,
                   help="folder for comparison.json/.md and the plots (default: "
                        "<warehouse>/model_comparison)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting (the pooled networks' too, e.g. hidden_size=64)")
    c.set_defaults(func=cmd_compare)


def spec_of(args: argparse.Namespace) -> Any:
    from lstm_assets.core.research.compare import DEFAULT_FAMILIES, QUICK_FAMILIES, CompareSpec

    families = _names(args.families) or (QUICK_FAMILIES if args.quick else DEFAULT_FAMILIES)
    return CompareSpec(families=families, horizons=_ints(args.horizons),
                       targets=_names(args.targets), folds=args.folds,
                       embedding=args.embedding, cost_bps=args.cost_bps,
                       n_resamples=min(args.resamples, 200) if args.quick else args.resamples,
                       tune_trials=args.tune)


def cmd_compare(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lstm_assets.core.research.compare import MIN_SYMBOLS
    from lstm_assets.core.research.panel import read_frames
    from lstm_assets.core.settings import Settings, parse_overrides
    from lstm_assets.core.stages.comparison import compare_frames, write_comparison

    try:
        overrides = parse_overrides(args.set)
        if args.quick:
            overrides = {**QUICK, **overrides}
        settings = Settings(**{**ProjectConfig.from_env().settings, **overrides})
        spec = spec_of(args)
    except ValueError as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 2
    symbols = None if args.symbols in ("all", "") else _names(args.symbols)
    t0 = time.perf_counter()
    skipped: list[str] = []

    def on_file(sym: str, error: str | None) -> None:
        if error:
            skipped.append(f"{sym}: {error}")

    try:
        frames = read_frames(args.raw_dir, settings, list(symbols) if symbols else None,
                             on_file)
    except ValueError as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 2
    for msg in skipped:
        print(f"skipped: {msg}", file=sys.stderr)
    if len(frames) < MIN_SYMBOLS:
        print(f"compare: {len(frames)} usable raw file(s) in {args.raw_dir}; a comparison "
              f"needs at least {MIN_SYMBOLS} (the daily rank IC ranks symbols)", file=sys.stderr)
        return 2
    print(f"{len(frames)} symbols read and cleaned in {time.perf_counter() - t0:.0f}s "
          f"({len(skipped)} skipped)", file=sys.stderr)
    from lstm_assets.core.research.compare import Comparison

    total = Comparison(frames, settings, spec, overrides).steps()
    with tqdm(total=total, unit="fit", file=sys.stderr, dynamic_ncols=True,
              mininterval=1.0) as bar:
        def progress(text: str, step: int) -> None:
            bar.set_postfix_str(text, refresh=False)
            bar.update(step)

        try:
            result, images = compare_frames(frames, settings, spec, overrides, progress)
        except ValueError as exc:
            print(f"compare: {exc}", file=sys.stderr)
            return 2
    from lstm_assets.core.research import report
    from lstm_assets.core.stages.comparison import ASSET
    from lstm_assets.core.storage import Warehouse

    where = args.out or Warehouse(ProjectConfig.from_env().warehouse_dir).base / ASSET
    write_comparison(where, result, images)
    print(report.markdown(result))
    print(f"Written: {where}/comparison.json, comparison.md and the plots "
          f"({time.perf_counter() - t0:.0f}s in all)")
    return 0



def main(argv: list[str] | None = None) -> int:
    """``python -m lstm_assets.compare_cli [compare options]``: the same command without the
    rest of the CLI (no dagster needed, e.g. on a GPU box)."""
    parser = argparse.ArgumentParser(prog="python -m lstm_assets.compare_cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["compare", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
