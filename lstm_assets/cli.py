"""``lstm-assets`` command line: demo data, a check of raw files, the main job, the UI, the demo
honesty check.

Exit codes (``check``, ``run``, ``backfill --wait``): 0 every symbol ok; 1 some symbols failed
(the others were done); 2 the command could not run at all (no such folder, no raw files, an
unknown symbol, a bad argument or environment variable).

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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lstm_assets.core.config import RAW_DIR, ConfigError, ProjectConfig, export_env
from lstm_assets.core.settings import Settings, parse_overrides

DEFAULT_RUN_SYMBOLS, DEFAULT_RUN_YEARS = 4, 10
"""The quick demo's size (``run`` on an empty raw folder)."""
FULL_DEMO_SYMBOLS, FULL_DEMO_YEARS = 8, 20
"""The full-size demo's (``run --full``), trained with the default settings."""
EXIT_OK, EXIT_SOME_FAILED, EXIT_CANNOT_RUN = 0, 1, 2
EXIT_CODES = ("exit codes: 0 every symbol ok; 1 some symbols failed (the others were done); "
              "2 could not run at all (no such folder, no raw files, an unknown symbol, a bad "
              "argument)")


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


# ---- check -------------------------------------------------------------------------------------

DEFECT_KEYS = {"junk_cells": "junk cells", "inf_cells": "infinite cells",
               "bad_lines": "bad lines", "missing_cells": "missing cells",
               "bad_dates": "bad dates", "duplicate_dates": "duplicate dates"}


def _defects(raw: dict[str, Any]) -> dict[str, int]:
    """The defects the raw stage found, by kind (only those present)."""
    out = {k: int(raw.get(k) or 0) for k in DEFECT_KEYS if raw.get(k)}
    if raw.get("unsorted"):
        out["unsorted"] = 1
    return out


def _few(items: list[str], most: int = 3) -> str:
    return ", ".join(items[:most]) + (f" (+{len(items) - most} more)" if len(items) > most else "")


def _action_text(a: dict[str, Any]) -> str:
    """``2014-06-09 split 7:1`` (the ratio as new shares : old shares)."""
    from fractions import Fraction

    ratio = a.get("ratio")
    ratio_text = ""
    if isinstance(ratio, int | float) and ratio > 0:
        f = Fraction(ratio).limit_denominator(100)
        ratio_text = f" {f.numerator}:{f.denominator}"
    elif ratio:
        ratio_text = f" {ratio}"
    vol = "" if a.get("volume_confirmed") in (None, True) else " (volume not confirmed)"
    return f"{a.get('date')} {a.get('kind', 'action')}{ratio_text}{vol}"


def _jump_text(j: dict[str, Any]) -> str:
    lr = j.get("log_return")
    size = f" {lr:+.2f}" if isinstance(lr, int | float) else ""
    return f"{j.get('date')}{size} ({j.get('policy', '?')})"


def _record(symbol: str | None, file: str | None) -> dict[str, Any]:
    """A check record before any stage ran: ``rows``/``first_date``/``last_date`` describe the
    file, ``clean_*`` the rows kept after cleaning (feature warm-up, dropped rows)."""
    return {"symbol": symbol, "file": file, "ok": False, "rows": None, "first_date": None,
            "last_date": None, "clean_rows": None, "clean_first_date": None,
            "clean_last_date": None, "samples": None, "corporate_actions": [],
            "price_jumps": [], "notes": [], "defects": {}, "failed_stage": None, "error": None}


def check_symbol(layout: Any, symbol: str, settings: Settings) -> dict[str, Any]:
    """The data stages (raw -> clean -> sequences) for one symbol, as a check record: rows, date
    range, corporate actions adjusted, price jumps, notes, defects, or the failure's message."""
    from lstm_assets.core import stages
    from lstm_assets.core.storage import InputError

    rec = _record(symbol, None)
    stage = "raw"
    try:
        raw = stages.run_raw(layout, symbol)
        rec.update(file=raw.get("file"), rows=raw.get("rows"), first_date=raw.get("first_date"),
                   last_date=raw.get("last_date"), notes=list(raw.get("notes") or []),
                   defects=_defects(raw))
        stage = "clean"
        clean = stages.run_clean(layout, symbol, settings)
        rec.update(clean_rows=clean.get("rows_out"), clean_first_date=clean.get("date_first"),
                   clean_last_date=clean.get("date_last"),
                   corporate_actions=list(clean.get("corporate_actions", []) or []),
                   price_jumps=list(clean.get("price_jumps", []) or []))
        rec["notes"] += [n for n in clean.get("notes") or [] if n not in rec["notes"]]
        stage = "sequences"
        seq = stages.run_sequences(layout, symbol, settings)
        rec["samples"] = seq.get("samples")
        rec["ok"] = True
    except Exception as e:  # noqa: BLE001 - one symbol's failure is its record, not the run's
        rec["failed_stage"] = stage
        rec["error"] = str(e) if isinstance(e, InputError) else f"{e.__class__.__name__}: {e}"
    return rec


def check_line(rec: dict[str, Any]) -> str:
    """One line of ``lstm-assets check`` output for a record of :func:`check_symbol`."""
    name = rec["symbol"] or (Path(rec["file"]).name if rec.get("file") else "?")
    if not rec["ok"]:
        where = f" ({rec['failed_stage']} stage)" if rec.get("failed_stage") else ""
        return f"{name}: FAILED{where}: {rec['error']}"
    acts, jumps = rec["corporate_actions"], rec["price_jumps"]
    defects = [f"{v:,} {DEFECT_KEYS[k]}" if k in DEFECT_KEYS else k
               for k, v in rec["defects"].items()]
    parts = [
        f"{name}: ok",
        f"{rec['rows']:,} rows {rec['first_date']}..{rec['last_date']} "
        f"({rec['clean_rows']:,} kept from {rec['clean_first_date']})",
        f"adjusted: {_few([_action_text(a) for a in acts]) if acts else 'none'}",
        f"price jumps: {_few([_jump_text(j) for j in jumps]) if jumps else 'none'}",
        f"defects: {', '.join(defects) if defects else 'none'}",
    ]
    if rec["notes"]:
        parts.append(f"notes: {_few([str(n) for n in rec['notes']], 2)}")
    return "; ".join(parts)


def _unusable_files(raw: Path, listed: dict[str, Path]) -> list[dict[str, Any]]:
    """Failed records for files that cannot become a symbol (unsupported type, bad name); a
    symbol with two files fails on its own line instead."""
    from lstm_assets.core.ingest import invalid_raw_files

    listed_paths = {str(p) for p in listed.values()}
    out = []
    for msg in invalid_raw_files(raw):
        path = msg.split(": ", 1)[0]
        if path in listed_paths:
            continue
        out.append({**_record(None, path), "failed_stage": "raw", "error": msg})
    return out


def _selected(arg: str, files: Iterable[str]) -> list[str]:
    """The symbols ``--symbols`` names (all files for 'all' or empty), upper-cased."""
    if arg in ("all", ""):
        return sorted(files)
    return [s.strip().upper() for s in arg.split(",") if s.strip()]


def cmd_check(args: argparse.Namespace) -> int:
    """The data stages only, for every raw file: one line per file, a summary, an exit code."""
    import json
    import tempfile

    from tqdm import tqdm

    from lstm_assets.core.ingest import list_raw_files
    from lstm_assets.core.stages import Layout

    raw = Path(args.raw_dir)
    if not raw.is_dir():
        print(f"lstm-assets check: no such folder: {raw}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    settings = run_settings(args)
    files = list_raw_files(raw)
    symbols = _selected(args.symbols, files)
    missing = [s for s in symbols if s not in files]
    if missing:
        print(f"lstm-assets check: no raw file for {', '.join(missing)} in {raw}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    records = [] if args.symbols not in ("all", "") else _unusable_files(raw, files)
    if not symbols:
        for rec in records:
            print(check_line(rec), file=sys.stderr)
        print(f"lstm-assets check: no raw files in {raw} (SYMBOL.csv, .csv.gz or .parquet)",
              file=sys.stderr)
        return EXIT_CANNOT_RUN
    out = sys.stderr if args.json == "-" else sys.stdout  # stdout holds the JSON then
    for rec in records:
        tqdm.write(check_line(rec), file=out)
    with tempfile.TemporaryDirectory(prefix="lstm-check-") as tmp:
        layout = Layout.from_dirs(raw, args.warehouse_dir or tmp)
        with tqdm(total=len(symbols), desc="check", unit="file", file=sys.stderr,
                  disable=not sys.stderr.isatty()) as bar:
            for sym in symbols:
                rec = check_symbol(layout, sym, settings)
                records.append(rec)
                tqdm.write(check_line(rec), file=out)
                bar.update()
    ok = sum(r["ok"] for r in records)
    failed = len(records) - ok
    adjusted = sum(bool(r["corporate_actions"]) for r in records)
    code = EXIT_SOME_FAILED if failed else EXIT_OK
    print(f"{ok} files ok, {failed} failed, {adjusted} with adjustments (exit {code})", file=out)
    if args.warehouse_dir:
        print(f"artifacts: {args.warehouse_dir}", file=out)
    if args.json:
        text = json.dumps(records, indent=2, default=str) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text)
    return code


@dataclass(frozen=True)
class DemoPlan:
    """The size of the demo ``run`` writes when the raw folder is empty. Both sizes train with
    the default settings: by measurement, shorter early stopping on the quick demo ended 5.8
    points below the oracle instead of 1.7 (a symbol stopped before it learned the pattern)."""

    symbols: int
    years: int


def demo_plan(args: argparse.Namespace) -> DemoPlan:
    """The quick demo by default, ``--full`` the full-size one; ``--demo-symbols`` /
    ``--demo-years`` change the size either way."""
    symbols, years = (FULL_DEMO_SYMBOLS, FULL_DEMO_YEARS) if args.full else (
        DEFAULT_RUN_SYMBOLS, DEFAULT_RUN_YEARS)
    return DemoPlan(symbols=args.demo_symbols or symbols, years=args.demo_years or years)


def demo_manifest(raw: Path) -> dict[str, Any] | None:
    """The demo generator's manifest when the raw folder holds exactly the demo files it
    lists (written by ``demo-data`` or ``run``), else None (someone's own files)."""
    import json

    from lstm_assets.core.ingest import list_raw_files

    path = raw.parent / "demo_truth" / "manifest.json"
    if not path.is_file() or not raw.is_dir():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        return None
    files = list_raw_files(raw)
    return manifest if files and set(files) == set(manifest.get("symbols", {})) else None


def prepare_demo(raw: Path, warehouse: str, plan: DemoPlan) -> bool:
    """Write the demo into an empty raw folder, or rewrite a demo of another size (the demo's
    own files only, and the reports of its symbols the new size drops, so the leaderboard
    holds the new demo alone). True when the run uses demo data."""
    from lstm_assets.core.demo import DemoSpec, generate
    from lstm_assets.core.storage import Warehouse, remove

    what = f"{plan.symbols} demo symbols ({plan.years} years, signal mode)"
    if not raw.exists() or not any(raw.iterdir()):
        print(f"{raw} has no raw files: writing {what}")
        generate(raw, DemoSpec(symbols=plan.symbols, years=plan.years))
        return True
    manifest = demo_manifest(raw)
    if manifest is None:
        return False
    spec = manifest.get("spec", {})
    if (spec.get("symbols"), spec.get("years"), spec.get("mode")) == (
            plan.symbols, plan.years, "signal"):
        return True
    print(f"{raw} holds a demo of {spec.get('symbols')} symbols x {spec.get('years')} years: "
          f"rewriting it as {what}")
    wh = Warehouse(warehouse)
    new = {f"SYN{i:03d}" for i in range(1, plan.symbols + 1)}
    for sym in manifest["symbols"]:
        for f in raw.glob(f"{sym}.*"):
            f.unlink()
        if sym not in new and not wh.remote:
            for suffix in (".json", ".md"):
                remove(wh.report(sym, suffix))
    generate(raw, DemoSpec(symbols=plan.symbols, years=plan.years))
    return True


def run_settings(args: argparse.Namespace) -> Settings:
    """A command's settings: the defaults, then ``LSTM_SETTINGS``, then ``--set``."""
    return Settings(**{**ProjectConfig.from_env().settings, **parse_overrides(args.set)})


def cmd_run(args: argparse.Namespace) -> int:
    """The main job: demo data if the raw folder is empty, then the chain, then the leaderboard.

    Exit code 0 when every symbol (and the leaderboard) succeeded, 1 when some symbol failed or
    a file in the raw folder could not be used (the others were done), 2 when a symbol named by
    ``--symbols`` has no raw file (nothing is run)."""
    from lstm_assets.core.ingest import invalid_raw_files, list_raw_files
    from lstm_assets.instance import ensure_dagster_home

    home = ensure_dagster_home()
    raw = Path(args.raw_dir)
    export_env({"LSTM_RAW_DIR": str(raw), "LSTM_WAREHOUSE_DIR": str(args.warehouse_dir)})
    plan = demo_plan(args)
    is_demo = prepare_demo(raw, str(args.warehouse_dir), plan)
    skipped = invalid_raw_files(raw)
    for msg in skipped:
        print(f"skipped: {msg}")

    import dagster as dg

    from lstm_assets.core.stages import stacks_symbols
    from lstm_assets.core.train import parallel_fits
    from lstm_assets.definitions import defs
    from lstm_assets.defs.console import RunProgress
    from lstm_assets.instance import prepare_instance, sync_partitions
    from lstm_assets.run_workers import run_in_workers

    files = sorted(list_raw_files(raw))
    symbols = _selected(args.symbols, files)
    missing = [s for s in symbols if s not in files]
    if missing:
        print(f"no raw file for {', '.join(missing)} in {raw}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    # settings and folders go in the run config: the definitions may have been imported (and
    # their resources built from the environment) before this command set LSTM_RAW_DIR
    settings = run_settings(args)
    truth = ProjectConfig.from_env().truth_dir
    if is_demo and "LSTM_TRUTH_DIR" not in os.environ:
        truth = str(raw.parent / "demo_truth")
    paths = {"raw_dir": str(raw), "warehouse_dir": str(args.warehouse_dir), "truth_dir": truth}
    loggers = {"console": {"config": {"log_level": "WARNING"}}}
    run_config: dict[str, Any] = {"loggers": loggers, "resources": {
        "settings": {"config": settings.as_dict()}, "paths": {"config": paths}}}
    job = defs.resolve_job_def("symbol_chain_job")
    t_run = time.perf_counter()
    with dg.DagsterInstance.get() as instance, RunProgress(
            symbols, expected_epochs=expected_epochs(settings)) as progress:
        prepare_instance(instance)
        sync_partitions(instance, files)
        progress.line(f"Dagster instance: {home}; running {len(symbols)} symbols: "
                      f"{', '.join(symbols)}")
        jobs = min(len(symbols), args.jobs or parallel_fits(settings))
        if stacks_symbols(settings, len(symbols)):
            failed = _run_together(job, instance, symbols, run_config, progress)
        elif jobs > 1:
            progress.line(f"{jobs} symbols at a time, each in its own process")
            failed = run_in_workers(symbols, run_config, progress, jobs)
        else:
            failed = _run_each(job, instance, symbols, run_config, progress)
        progress.begin("all symbols", "leaderboard")
        lb = defs.resolve_job_def("leaderboard_job").execute_in_process(
            instance=instance, run_config={"loggers": loggers,
                                           "resources": {"paths": {"config": paths}}})
        # next-day signals from the models just trained, appended to the signal history, and
        # the scorecard of earlier signals (nothing to score on a first run: all pending)
        progress.begin("all symbols", "signals")
        sig = defs.resolve_job_def("signals_job").execute_in_process(
            instance=instance, run_config=run_config, raise_on_error=False)
    from lstm_assets.core.storage import Warehouse, read_text

    wh = Warehouse(args.warehouse_dir)
    print()
    print(read_text(wh.leaderboard(".md")) if lb.success else "leaderboard failed")
    where = wh.base if wh.remote else wh.base.resolve()
    print(f"Results: {where}/ (lstm_model/, evaluation_report/, leaderboard.md)")
    print(f"Signals: {where}/latest_signals.parquet; scorecard of past signals: "
          f"{where}/signal_outcomes.json" if sig.success else
          "Signals: latest_signals or signal_outcomes failed (see the run in the UI)")
    print("UI: bash run.sh ui   (or .venv/bin/lstm-assets ui; then open http://127.0.0.1:3000)")
    print(f"{len(symbols)} symbols in {time.perf_counter() - t_run:.0f}s")
    if failed:
        print(f"{len(failed)} symbol(s) failed: {', '.join(failed)}")
    if skipped:
        print(f"{len(skipped)} file(s) skipped (see 'skipped:' above)")
    every_file = args.symbols in ("all", "")  # a skipped file counts when all were asked for
    ok = lb.success and sig.success
    return EXIT_SOME_FAILED if failed or (skipped and every_file) or not ok else EXIT_OK


def expected_epochs(settings: Settings) -> int:
    """About how many epochs a cold fit runs before early stopping, for the time-left estimate
    (the demo's 10-year symbols stop after 29-45 with the default patience of 8)."""
    return max(1, min(settings.max_epochs, 5 * settings.early_stop_patience))


def _run_each(job: Any, instance: Any, symbols: list[str], run_config: dict[str, Any],
              progress: Any) -> dict[str, str]:
    """The chain one symbol (one run) at a time, in this process; a line per symbol. Returns the
    failed ones."""
    from lstm_assets.run_workers import failure_message

    failed: dict[str, str] = {}
    for i, sym in enumerate(symbols, 1):
        progress.begin(sym)
        t0 = time.perf_counter()
        res = job.execute_in_process(partition_key=sym, instance=instance,
                                     run_config=run_config, raise_on_error=False)
        msg = "" if res.success else failure_message(res)
        if msg:
            failed[sym] = msg
        progress.symbol_done(i, sym, res.success, time.perf_counter() - t0, msg)
    return failed


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
                  run_config: dict[str, Any], progress: Any) -> dict[str, str]:
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
            progress.begin(f"{keys[0]}..{keys[-1]}", label)
            tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0],
                    ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
            res = job.execute_in_process(instance=instance, run_config=run_config, tags=tags,
                                         asset_selection=[dg.AssetKey(a) for a in assets],
                                         raise_on_error=False)
            if not res.success:
                failed.update(_range_failures(res, keys))
        ok = [s for s in todo if s not in failed]
        progress.line(f"{label}: {len(ok)} of {len(todo)} symbols ok "
                      f"({time.perf_counter() - t0:.0f}s; {progress.eta_text()})")
        for s in todo:
            if s in failed:
                progress.line(f"  {s}: FAILED: {failed[s]}")
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
    from lstm_assets.run_workers import failure_message

    return dict.fromkeys(keys, failure_message(res))


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


def cannot_run(message: str) -> SystemExit:
    """A ``SystemExit`` for a command that could not run: prints ``message`` to stderr and
    carries it (``str(exc)``) with exit code 2."""
    print(message, file=sys.stderr)
    exc = SystemExit(message)
    exc.code = EXIT_CANNOT_RUN
    return exc


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns its exit code (a command that cannot run exits with 2)."""
    try:
        return _main(argv)
    except ConfigError as e:  # a bad environment variable: its name and value, no traceback
        raise cannot_run(f"lstm-assets: {e}") from None
    except SystemExit as e:  # a bad --set, an unknown section...: a message, exit code 2
        if isinstance(e.code, str):
            raise cannot_run(e.code) from None
        raise


def _main(argv: list[str] | None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = ProjectConfig.from_env()
    p = argparse.ArgumentParser(prog="lstm-assets", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("demo-data", help="write synthetic per-symbol raw files")
    d.add_argument("--symbols", type=int, default=164)
    d.add_argument("--years", type=int, default=20)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--mode", choices=["signal", "weak", "null"], default="signal",
                   help="signal: a strong planted pattern; weak: the same pattern, its best "
                   "achievable accuracy a few points above the majority class; null: none")
    d.add_argument("--format", choices=["csv", "parquet"], default="csv")
    d.add_argument("--out", default=RAW_DIR)
    d.set_defaults(func=cmd_demo_data)

    c = sub.add_parser(
        "check", help="check raw files: the data stages only, one line per file",
        description="Run the data stages (raw -> clean -> sequences) on each raw file and print "
        "one line per file: rows, date range, corporate actions adjusted, price jumps, notes, "
        "defects found, or why it failed; then a summary line.", epilog=EXIT_CODES)
    c.add_argument("--raw-dir", default=cfg.raw_dir)
    c.add_argument("--warehouse-dir", default="",
                   help="keep the artifacts here (default: a temporary folder, removed after)")
    c.add_argument("--symbols", default="all", help="comma-separated, or 'all' (default)")
    c.add_argument("--json", default="", metavar="PATH|-",
                   help="write the per-file records as JSON to PATH, or to stdout with '-' (the "
                   "lines then go to stderr)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set lookback=30")
    c.set_defaults(func=cmd_check)

    r = sub.add_parser("run", help="the main job: (demo data,) the chain, the leaderboard",
                       epilog=EXIT_CODES)
    r.add_argument("--symbols", default="all", help="comma-separated, or 'all' (default)")
    r.add_argument("--raw-dir", default=cfg.raw_dir)
    r.add_argument("--warehouse-dir", default=cfg.warehouse_dir)
    r.add_argument("--full", action="store_true",
                   help=f"the full-size demo: {FULL_DEMO_SYMBOLS} symbols x {FULL_DEMO_YEARS} "
                   "years, default settings (default: the quick demo, "
                   f"{DEFAULT_RUN_SYMBOLS} x {DEFAULT_RUN_YEARS} years)")
    r.add_argument("--demo-symbols", type=int, default=0,
                   help="demo symbols to write when the raw folder is empty (0: the demo's)")
    r.add_argument("--demo-years", type=int, default=0,
                   help="years of each demo symbol (0: the demo's)")
    r.add_argument("--jobs", type=int, default=0,
                   help="symbols run at once, each in its own process (default 0: one per "
                   "core on a CPU, as num_threads=1 fits use one core; 1 on a GPU)")
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

    from lstm_assets.compare_cli import register as register_compare

    register_compare(sub)  # compare

    from lstm_assets.lifecycle_cli import register as register_lifecycle

    register_lifecycle(sub)  # models, promote

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
