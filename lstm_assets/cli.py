"""``lstm-assets`` command line: demo data, the main job, the UI, the demo honesty check.

Folder defaults come from the environment (``LSTM_RAW_DIR``, ``LSTM_WAREHOUSE_DIR``,
``LSTM_TRUTH_DIR``) through :class:`lstm_assets.core.config.ProjectConfig`, where every variable
is listed; a bad value of any of them stops the command with a message naming it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from lstm_assets.core.config import RAW_DIR, ConfigError, ProjectConfig, export_env
from lstm_assets.core.settings import Settings, parse_overrides

DEFAULT_RUN_SYMBOLS = 8


def cmd_demo_data(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lstm_assets.core.demo import DemoSpec, generate

    out = Path(args.out)
    spec = DemoSpec(symbols=args.symbols, years=args.years, seed=args.seed, mode=args.mode,
                    fmt=args.format)
    t0 = time.perf_counter()
    with tqdm(total=args.symbols, desc=f"demo data ({args.mode})", unit="file") as bar:
        generate(out, spec, progress=bar.update)
    print(f"wrote {args.symbols} files x {args.years} years to {out} "
          f"in {time.perf_counter() - t0:.1f}s; ground truth in {out.parent / 'demo_truth'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The main job: demo data if the raw folder is empty, then the chain, then the leaderboard."""
    from lstm_assets.core.demo import DemoSpec, generate
    from lstm_assets.core.ingest import invalid_raw_files, list_raw_files
    from lstm_assets.instance import ensure_dagster_home

    home = ensure_dagster_home()
    raw = Path(args.raw_dir)
    export_env({"LSTM_RAW_DIR": str(raw), "LSTM_WAREHOUSE_DIR": str(args.warehouse_dir)})
    if not raw.exists() or not any(raw.iterdir()):
        print(f"{raw} has no raw files: writing {args.demo_symbols} demo symbols "
              f"({args.demo_years} years, signal mode)")
        generate(raw, DemoSpec(symbols=args.demo_symbols, years=args.demo_years))
    for msg in invalid_raw_files(raw):
        print(f"skipped: {msg}")

    import dagster as dg

    from lstm_assets.core.stages import stacks_symbols
    from lstm_assets.definitions import defs
    from lstm_assets.defs.resources import settings_from_env
    from lstm_assets.instance import prepare_instance, sync_partitions

    files = sorted(list_raw_files(raw))
    symbols = files if args.symbols in ("all", "") else [s.strip().upper()
                                                         for s in args.symbols.split(",")]
    # settings and folders go in the run config: the definitions may have been imported (and
    # their resources built from the environment) before this command set LSTM_RAW_DIR
    settings = Settings(**{**settings_from_env().to_core().as_dict(), **parse_overrides(args.set)})
    paths = {"raw_dir": str(raw), "warehouse_dir": str(args.warehouse_dir),
             "truth_dir": ProjectConfig.from_env().truth_dir}
    loggers = {"console": {"config": {"log_level": "WARNING"}}}
    run_config: dict[str, Any] = {"loggers": loggers, "resources": {
        "settings": {"config": settings.as_dict()}, "paths": {"config": paths}}}
    job = defs.resolve_job_def("symbol_chain_job")
    failed: dict[str, str] = {}
    with dg.DagsterInstance.get() as instance:
        prepare_instance(instance)
        sync_partitions(instance, files)
        print(f"Dagster instance: {home}; running {len(symbols)} symbols: {', '.join(symbols)}")
        if stacks_symbols(settings, len(symbols)):
            failed = _run_together(job, instance, symbols, run_config)
        else:
            for i, sym in enumerate(symbols, 1):
                t0 = time.perf_counter()
                res = job.execute_in_process(partition_key=sym, instance=instance,
                                             run_config=run_config, raise_on_error=False)
                took = time.perf_counter() - t0
                if res.success:
                    print(f"[{i}/{len(symbols)}] {sym}: ok ({took:.0f}s)")
                else:
                    msg = _failure_message(res)
                    failed[sym] = msg
                    print(f"[{i}/{len(symbols)}] {sym}: FAILED ({took:.0f}s): {msg}")
        lb = defs.resolve_job_def("leaderboard_job").execute_in_process(
            instance=instance, run_config={"loggers": loggers,
                                           "resources": {"paths": {"config": paths}}})
    from lstm_assets.core.storage import Warehouse, read_text

    wh = Warehouse(args.warehouse_dir)
    print()
    print(read_text(wh.leaderboard(".md")) if lb.success else "leaderboard failed")
    where = wh.base if wh.remote else wh.base.resolve()
    print(f"Results: {where}/ (lstm_model/, evaluation_report/, leaderboard.md)")
    print("UI: lstm-assets ui   (then open http://127.0.0.1:3000)")
    if failed:
        print(f"{len(failed)} symbol(s) failed: {', '.join(failed)}")
    return 1 if failed and len(failed) == len(symbols) else 0


def _contiguous(keys: list[str], order: list[str]) -> list[list[str]]:
    """``keys`` split into runs that are contiguous in the partition ``order`` (ranges)."""
    want = set(keys)
    out: list[list[str]] = []
    current: list[str] = []
    for k in order:
        if k in want:
            current.append(k)
        elif current:
            out.append(current)
            current = []
    return out + ([current] if current else [])


def _run_together(job: Any, instance: Any, symbols: list[str],
                  run_config: dict[str, Any]) -> dict[str, str]:
    """The chain as range runs, the way a backfill runs it: the data step for all symbols, then
    the model step for those whose data succeeded, which trains them together (on a GPU, or
    with stack_symbols > 1). Returns the failed symbols and why."""
    import dagster as dg
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from lstm_assets.defs.assets import SYMBOL_ASSETS

    order = list(instance.get_dynamic_partitions("symbols"))
    failed: dict[str, str] = {}
    for label, assets in (("data stages", SYMBOL_ASSETS[:3]),
                          ("models (trained together)", SYMBOL_ASSETS[3:])):
        todo = [s for s in symbols if s not in failed]
        t0 = time.perf_counter()
        for keys in _contiguous(todo, order):
            tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0],
                    ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
            res = job.execute_in_process(instance=instance, run_config=run_config, tags=tags,
                                         asset_selection=[dg.AssetKey(a) for a in assets],
                                         raise_on_error=False)
            if not res.success:
                failed.update(_range_failures(res, keys))
        ok = [s for s in todo if s not in failed]
        print(f"{label}: {len(ok)} of {len(todo)} symbols ok ({time.perf_counter() - t0:.0f}s)")
        for s in todo:
            if s in failed:
                print(f"  {s}: FAILED: {failed[s]}")
    return failed


def _range_failures(res: Any, keys: list[str]) -> dict[str, str]:
    """Which symbols of a failed range run failed, and why (from the step's Failure)."""
    for ev in res.all_events:
        data = ev.step_failure_data if ev.is_step_failure else None
        if data is None:
            continue
        meta = data.user_failure_data.metadata if data.user_failure_data else {}
        per = meta.get("failures")
        if per is not None:
            return {s: f["message"] for s, f in per.value.items()}
    return dict.fromkeys(keys, _failure_message(res))


def _failure_message(res: Any) -> str:
    for ev in res.all_events:
        if ev.is_step_failure and ev.step_failure_data and ev.step_failure_data.user_failure_data:
            return ev.step_failure_data.user_failure_data.description or "failed"
        if ev.is_step_failure and ev.step_failure_data and ev.step_failure_data.error:
            return ev.step_failure_data.error.message.strip().splitlines()[-1]
    return "failed (see the run in the UI)"


def cmd_ui(args: argparse.Namespace) -> int:
    import dagster as dg

    from lstm_assets.core.ingest import list_raw_files
    from lstm_assets.instance import ensure_dagster_home, prepare_instance, sync_partitions

    home = ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        prepare_instance(instance)
        sync_partitions(instance, sorted(list_raw_files(Path(args.raw_dir))))
    cmd = [sys.executable, "-m", "dagster", "dev", "-h", args.host, "-p", str(args.port)]
    print(" ".join(cmd), f"(DAGSTER_HOME={home})")
    os.execv(sys.executable, cmd)
    return 0


def cmd_honesty(args: argparse.Namespace) -> int:
    """Oracle check on signal demo data and null check on null demo data, at full size."""
    import json
    import tempfile

    from lstm_assets.core.stages.honesty import check_demo, format_summary

    settings = Settings(**parse_overrides(args.set))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lstm-honesty-"))
    out = {}
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        res = check_demo(work, mode, settings, symbols=args.symbols, years=args.years)
        out[mode] = res
        print(format_summary(res) + f"  ({time.perf_counter() - t0:.0f}s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"artifacts: {work}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except ConfigError as e:  # a bad environment variable: its name and value, no traceback
        raise SystemExit(f"lstm-assets: {e}") from None


def _main(argv: list[str] | None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = ProjectConfig.from_env()
    p = argparse.ArgumentParser(prog="lstm-assets", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("demo-data", help="write synthetic per-symbol raw files")
    d.add_argument("--symbols", type=int, default=164)
    d.add_argument("--years", type=int, default=20)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--mode", choices=["signal", "null"], default="signal")
    d.add_argument("--format", choices=["csv", "parquet"], default="csv")
    d.add_argument("--out", default=RAW_DIR)
    d.set_defaults(func=cmd_demo_data)

    r = sub.add_parser("run", help="the main job: (demo data,) the chain, the leaderboard")
    r.add_argument("--symbols", default="all", help="comma-separated, or 'all' (default)")
    r.add_argument("--raw-dir", default=cfg.raw_dir)
    r.add_argument("--warehouse-dir", default=cfg.warehouse_dir)
    r.add_argument("--demo-symbols", type=int, default=DEFAULT_RUN_SYMBOLS)
    r.add_argument("--demo-years", type=int, default=20)
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set max_epochs=5")
    r.set_defaults(func=cmd_run)

    u = sub.add_parser("ui", help="start the Dagster UI on the project-local instance")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=3000)
    u.add_argument("--raw-dir", default=cfg.raw_dir)
    u.set_defaults(func=cmd_ui)

    from lstm_assets.orchestration_cli import register as register_orchestration

    register_orchestration(sub)  # backfill, signals

    from lstm_assets.bench.cli import register as register_bench

    register_bench(sub)  # bench

    h = sub.add_parser("honesty", help="oracle check (signal data) and null check (null data)")
    h.add_argument("--symbols", type=int, default=8)
    h.add_argument("--years", type=int, default=20)
    h.add_argument("--modes", default="signal,null")
    h.add_argument("--workdir", default="")
    h.add_argument("--json", default="")
    h.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    h.set_defaults(func=cmd_honesty)

    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
