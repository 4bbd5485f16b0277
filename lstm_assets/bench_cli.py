"""``lstm-assets bench``: the performance benchmark (see ``lstm_assets.core.bench``).

Wired into ``lstm_assets.cli`` with :func:`register`; also runnable on its own:
``python -m lstm_assets.bench_cli [--quick] [--json PATH]``. Imports no dagster.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``bench`` subcommand to an ``argparse`` subparsers object."""
    b = subparsers.add_parser(
        "bench", help="measure training, retraining, data stages, memory, signals (and GPU)",
        description="Benchmark the pipeline with its own code on demo data in a temp folder; "
                    "prints a table, optionally writes JSON.")
    add_arguments(b)
    b.set_defaults(func=cmd_bench)


def add_arguments(b: argparse.ArgumentParser) -> None:
    from lstm_assets.core.bench import SECTIONS

    b.add_argument("--quick", action="store_true",
                   help="a small version (under two minutes on a 2-core CPU)")
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


def cmd_bench(args: argparse.Namespace) -> int:
    from lstm_assets.core.bench import SECTIONS, BenchSize, format_table, run_bench

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; known: {', '.join(SECTIONS)}")
    size = BenchSize.quick() if args.quick else BenchSize.full()
    overrides = {"num_threads": args.threads, **_parse_set(args.set)}
    size = dataclasses.replace(size, settings=size.settings.replace(**overrides))
    result = run_bench(size, json_path=args.json, workdir=args.workdir, sections=sections,
                       workers=args.workers)
    table = format_table(result)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    if args.json:
        print(f"JSON: {args.json}")
    return 0


def _parse_set(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs -> typed overrides of :class:`~lstm_assets.core.settings.Settings`."""
    from lstm_assets.core.settings import Settings

    defaults = Settings()
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, val = pair.partition("=")
        if key not in Settings.__dataclass_fields__:
            raise SystemExit(f"unknown setting {key!r}")
        kind = type(getattr(defaults, key))
        out[key] = (val.lower() in ("1", "true", "yes")) if kind is bool else kind(val)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lstm-assets bench", description=__doc__)
    add_arguments(p)
    args = p.parse_args(argv)
    return cmd_bench(args)


if __name__ == "__main__":
    sys.exit(main())
