"""``lstm-assets bench``: the performance benchmark (see :mod:`lstm_assets.bench`).

Wired into ``lstm_assets.cli`` with :func:`register`; also runnable on its own:
``python -m lstm_assets.bench.cli [--quick | --tiny] [--json PATH]``. Imports no dagster, and
no torch until the command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from lstm_assets.bench.config import SECTIONS, BenchSize


def register(subparsers: Any) -> None:
    """Add the ``bench`` subcommand to an ``argparse`` subparsers object."""
    b = subparsers.add_parser(
        "bench", help="measure training, retraining, data stages, memory, signals (and GPU)",
        description="Benchmark the pipeline with its own code on demo data in a temp folder; "
                    "prints a table, optionally writes JSON.")
    add_arguments(b)
    b.set_defaults(func=cmd_bench)


def add_arguments(b: argparse.ArgumentParser) -> None:
    """The ``bench`` options, on ``b``."""
    size = b.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="a small version (under two minutes on a 2-core CPU)")
    size.add_argument("--tiny", action="store_true",
                      help="a tiny model on a few short symbols: checks that every section "
                           "runs (well under a minute); its figures mean nothing")
    b.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="also write every figure as JSON here")
    b.add_argument("--markdown", type=Path, default=None, metavar="PATH",
                   help="also write the table as Markdown here")
    b.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of: {', '.join(SECTIONS)}")
    b.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for every section (default 1: fastest for this "
                        "model and robust on a shared machine; 0: torch's default, one per "
                        "core); the training section also times torch's default for comparison")
    b.add_argument("--workers", type=int, default=1,
                   help="also time the data stages over this many processes (> 1)")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting for every section, e.g. --set warm_epochs=3")
    b.add_argument("--workdir", type=Path, default=None,
                   help="keep the demo data and artifacts here (default: a temp folder, removed)")


def _sections(arg: str) -> list[str]:
    sections = [s.strip() for s in arg.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; known: {', '.join(SECTIONS)}")
    return sections


def _size(args: argparse.Namespace) -> BenchSize:
    """The size the flags ask for, its settings with ``--threads`` and ``--set`` put in."""
    from lstm_assets.core.settings import parse_overrides

    size = BenchSize.named("quick" if args.quick else "tiny" if args.tiny else "full")
    overrides = {"num_threads": args.threads, **parse_overrides(args.set)}
    return dataclasses.replace(size, settings=size.settings.replace(**overrides))


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark; print the table (and write the JSON and Markdown files asked for)."""
    from lstm_assets.bench.report import format_table
    from lstm_assets.bench.runner import run_bench

    sections = _sections(args.sections)
    result = run_bench(_size(args), json_path=args.json, workdir=args.workdir,
                       sections=sections, workers=args.workers)
    table = format_table(result)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    if args.json:
        print(f"JSON: {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lstm-assets bench", description=__doc__)
    add_arguments(p)
    args = p.parse_args(argv)
    return cmd_bench(args)


if __name__ == "__main__":
    sys.exit(main())
