"""``lstm-assets backfill`` and ``lstm-assets signals``: orchestration from the command line.

``backfill`` queues an *asset* backfill of the per-symbol chain on the project-local instance.
The daemon runs it in range runs: one data run for all symbols, then model runs of up to
``LSTM_MODEL_RUN_PARTITIONS`` symbols each (see ``core/config.py``); a bad symbol fails alone.
The leaderboard and latest_signals follow by the automation sensor (or, with ``--wait``, in this
process at the end: they need no daemon round trip, and they still run when some symbol failed).
(``dagster job backfill -j symbol_chain_job --all true --noprompt`` also works, but makes one
run per symbol: minutes of launch overhead for 164 symbols.)

With ``--wait`` it follows the backfill to the end, starting a ``dagster-daemon`` for the
duration when none is running, and prints the timing: wall time, time inside the steps (the
asset bodies), and the difference, the orchestration overhead.

Exit codes (see :func:`backfill_exit_code`): 0 queued (without ``--wait``) or every partition
succeeded; 1 some partitions failed, the backfill failed or was canceled, a summary job failed,
or it did not finish within ``--timeout``; 2 it could not start (no raw files, an unknown
symbol, a bad ``--set``, no daemon).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lstm_assets.core.config import ProjectConfig, child_env

SUMMARY_ASSETS = ["leaderboard", "latest_signals"]
TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
SUCCESS = {"COMPLETED", "COMPLETED_SUCCESS"}  # terminal statuses of a backfill that did its work
FAILED_RUN = {"FAILURE", "CANCELED"}  # run statuses of a partition (range) that did not succeed
EXIT_OK, EXIT_SOME_FAILED, EXIT_CANNOT_RUN = 0, 1, 2
EXIT_CODES = ("exit codes: 0 queued (without --wait) or every partition succeeded; 1 some "
              "partitions failed (the others were done), or the backfill failed, was canceled "
              "or timed out; 2 could not start (no raw files, an unknown symbol, a bad argument)")


def register(subparsers: Any) -> None:
    """Add the ``backfill`` and ``signals`` subcommands to ``lstm-assets`` (folder defaults from
    ``LSTM_RAW_DIR`` / ``LSTM_WAREHOUSE_DIR`` / ``LSTM_TRUTH_DIR``)."""
    cfg = ProjectConfig.from_env()
    b = subparsers.add_parser(
        "backfill", help="queue a fast asset backfill of all (or some) symbols for the daemon",
        epilog=EXIT_CODES)
    b.add_argument("--symbols", default="all", help="comma-separated, or 'all' (default)")
    b.add_argument("--raw-dir", default=cfg.raw_dir)
    b.add_argument("--warehouse-dir", default=cfg.warehouse_dir)
    b.add_argument("--truth-dir", default=cfg.truth_dir)
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting for every run of the backfill, e.g. max_epochs=5")
    b.add_argument("--no-summary", action="store_true",
                   help="with --wait: skip the leaderboard and latest_signals at the end")
    b.add_argument("--wait", action="store_true",
                   help="follow the backfill to the end (starts a daemon if none is running)")
    b.add_argument("--timeout", type=float, default=6 * 3600, help="seconds to wait at most")
    b.add_argument("--json-out", default="", help="with --wait: write the timing here")
    b.set_defaults(func=cmd_backfill)

    s = subparsers.add_parser("signals", help="print next-day signals from the saved models")
    s.add_argument("--warehouse-dir", default=cfg.warehouse_dir)
    s.add_argument("--min-confidence", type=float, default=None)
    s.set_defaults(func=cmd_signals)


# ---- backfill ----------------------------------------------------------------------------------

def daemon_running(instance: Any, max_age_s: float = 90.0) -> bool:
    """True when a daemon of this instance sent a backfill heartbeat recently."""
    beats = instance.get_daemon_heartbeats()
    hb = beats.get("BACKFILL")
    return bool(hb) and time.time() - hb.timestamp < max_age_s


def start_daemon(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``dagster-daemon run`` on this project in its own process group (stopped by stop_daemon)."""
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process by the OS
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m",
         "lstm_assets.definitions"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_daemon(proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    pgid = os.getpgid(proc.pid)
    os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=10)


def create_backfill(instance: Any, symbols: list[str], *, summary: bool = False,
                    run_config: dict[str, Any] | None = None, title: str | None = None) -> str:
    """Queue an asset backfill of ``symbols``; returns its id (the daemon does the rest)."""
    import dagster as dg
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    from lstm_assets.definitions import defs
    from lstm_assets.defs.assets import SYMBOL_ASSETS

    keys = [dg.AssetKey(a) for a in SYMBOL_ASSETS + (SUMMARY_ASSETS if summary else [])]
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(), asset_graph=defs.resolve_asset_graph(),
        partition_names=symbols, asset_selection=keys, backfill_timestamp=time.time(),
        tags={"lstm/trigger": "cli_backfill"}, dynamic_partitions_store=instance,
        all_partitions=False, title=title or f"lstm-assets backfill ({len(symbols)} symbols)",
        description=None, run_config=run_config)
    instance.add_backfill(backfill)
    return backfill.backfill_id


def _union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def backfill_timing(instance: Any, backfill_id: str, t_submit: float,
                    t_done: float) -> dict[str, Any]:
    """Wall time, time inside steps (asset bodies) and the rest, the orchestration overhead."""
    import dagster as dg
    from dagster._core.storage.tags import BACKFILL_ID_TAG

    runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
    steps: list[tuple[float, float]] = []
    per_run = []
    for run in runs:
        stats = instance.get_run_stats(run.run_id)
        run_steps = [(s.start_time, s.end_time) for s in instance.get_run_step_stats(run.run_id)
                     if s.start_time and s.end_time]
        steps += run_steps
        per_run.append({
            "run_id": run.run_id, "status": run.status.value,
            "partitions": (run.tags.get("dagster/asset_partition_range_start", "") + ".."
                           + run.tags.get("dagster/asset_partition_range_end", "")),
            "assets": sorted(k.to_user_string() for k in run.asset_selection or []),
            "run_seconds": ((stats.end_time or 0) - (stats.start_time or 0)),
            "step_seconds": sum(b - a for a, b in run_steps),
        })
    in_steps = _union_seconds(steps)
    last_end = max((b for _, b in steps), default=t_submit)
    wall = t_done - t_submit
    return {
        "backfill_id": backfill_id, "runs": len(runs), "wall_seconds": round(wall, 1),
        "wall_to_last_step_seconds": round(last_end - t_submit, 1),
        "in_steps_seconds": round(in_steps, 1),
        "overhead_seconds": round(wall - in_steps, 1),
        "overhead_to_last_step_seconds": round(last_end - t_submit - in_steps, 1),
        "per_run": sorted(per_run, key=lambda r: r["run_seconds"], reverse=True),
    }


def wait_for_backfill(instance: Any, backfill_id: str, timeout: float,
                      poll_s: float = 2.0, echo: bool = True) -> str:
    """Poll until the backfill is terminal; returns its status."""
    t0, last = time.time(), ""
    while time.time() - t0 < timeout:
        status = instance.get_backfill(backfill_id).status.value
        if echo and status != last:
            print(f"[{time.time() - t0:6.0f}s] backfill {backfill_id}: {status}", flush=True)
            last = status
        if status in TERMINAL:
            return status
        time.sleep(poll_s)
    raise TimeoutError(f"backfill {backfill_id} still {last} after {timeout:.0f} s")


def backfill_exit_code(status: str | None, failed_runs: int = 0,
                       summary_ok: bool = True) -> int:
    """The exit code of ``backfill --wait`` from the backfill's final ``status`` (``None``: it
    never finished), the number of its runs that failed and whether the summary jobs succeeded:
    0 all done, 1 some partitions (or the summary) failed, or the backfill failed, was canceled
    or timed out. (2, could not start, is returned before a backfill exists.)"""
    if status in SUCCESS and failed_runs == 0 and summary_ok:
        return EXIT_OK
    return EXIT_SOME_FAILED


def cmd_backfill(args: argparse.Namespace) -> int:
    import dagster as dg

    from lstm_assets.core.ingest import list_raw_files
    from lstm_assets.core.settings import parse_overrides
    from lstm_assets.instance import ensure_dagster_home, prepare_instance, sync_partitions

    home = ensure_dagster_home()
    raw = Path(args.raw_dir)
    files = sorted(list_raw_files(raw))
    if not files:
        print(f"{raw} has no raw files (try: lstm-assets demo-data --out {raw})")
        return EXIT_CANNOT_RUN
    symbols = files if args.symbols in ("all", "") else [s.strip().upper()
                                                         for s in args.symbols.split(",")]
    missing = sorted(set(symbols) - set(files))
    if missing:
        print(f"no raw file for {missing} in {raw}")
        return EXIT_CANNOT_RUN
    overrides = parse_overrides(args.set)
    # folders and settings travel in the run config, so they hold whatever the daemon's env is
    run_config: dict[str, Any] = {"resources": {
        "paths": {"config": {"raw_dir": str(raw.resolve()),
                             "warehouse_dir": str(Path(args.warehouse_dir).resolve()),
                             "truth_dir": str(Path(args.truth_dir).resolve())}}}}
    if overrides:
        run_config["resources"]["settings"] = {"config": overrides}
    daemon = None
    with dg.DagsterInstance.get() as instance:
        prepare_instance(instance)
        sync_partitions(instance, files)
        t_submit = time.time()
        bid = create_backfill(instance, symbols, run_config=run_config)
        print(f"queued backfill {bid}: {len(symbols)} symbols on {home}")
        if not args.wait:
            print("the daemon runs it (lstm-assets ui starts one); follow it in the UI under "
                  "Overview > Backfills, or add --wait")
            return EXIT_OK
        try:
            if not daemon_running(instance):
                env = child_env({"DAGSTER_HOME": str(home), "LSTM_AUTOMATION": "off"})
                try:
                    daemon = start_daemon(env, home / "backfill_daemon.log")
                except OSError as e:
                    print(f"could not start dagster-daemon: {e}", file=sys.stderr)
                    return EXIT_CANNOT_RUN
                print(f"started dagster-daemon (pid {daemon.pid}, log "
                      f"{home / 'backfill_daemon.log'})")
            status: str | None = None
            try:
                status = wait_for_backfill(instance, bid, args.timeout)
            except TimeoutError as e:
                print(f"{e}; it goes on with a daemon (see the UI)", file=sys.stderr)
            t_done = time.time()
        finally:
            if daemon is not None:
                stop_daemon(daemon)
        timing = backfill_timing(instance, bid, t_submit, t_done)
        summary_ok = True
        if not args.no_summary and status is not None:
            timing["summary_seconds"], summary_ok = run_summary_assets(instance, run_config)
    timing["status"] = status or "TIMED_OUT"
    timing["symbols"] = len(symbols)
    failed_runs = sum(r["status"] in FAILED_RUN for r in timing["per_run"])
    print(f"{timing['status']}: {timing['runs']} runs ({failed_runs} failed), wall "
          f"{timing['wall_seconds']} s, inside steps {timing['in_steps_seconds']} s, "
          f"orchestration overhead {timing['overhead_seconds']} s")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(timing, indent=2) + "\n")
    return backfill_exit_code(status, failed_runs, summary_ok)


def run_summary_assets(instance: Any, run_config: dict[str, Any]) -> tuple[float, bool]:
    """Leaderboard and latest_signals, in this process: seconds taken, and whether both
    succeeded."""
    from lstm_assets.definitions import defs

    t0 = time.time()
    ok = True
    for job in ("leaderboard_job", "signals_job"):
        res = defs.resolve_job_def(job).execute_in_process(
            instance=instance, run_config=run_config, raise_on_error=False)
        ok = ok and res.success
        print(f"{job}: {'ok' if res.success else 'FAILED (see the run in the UI)'}")
    return round(time.time() - t0, 1), ok


# ---- signals -----------------------------------------------------------------------------------

def cmd_signals(args: argparse.Namespace) -> int:
    from lstm_assets.core.settings import Settings
    from lstm_assets.core.signals import latest_signals, signals_markdown
    from lstm_assets.core.storage import Warehouse

    s = Settings()
    if args.min_confidence is not None:
        s = s.replace(signal_min_confidence=args.min_confidence)
    wh = Warehouse(args.warehouse_dir)
    table = latest_signals(wh, s)
    print(signals_markdown(table, s.signal_min_confidence))
    print(f"written to {wh.signals()}")
    return 0 if not table.frame.empty else 1
