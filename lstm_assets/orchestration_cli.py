"""``lstm-assets backfill`` and ``lstm-assets signals``: orchestration from the command line.

``backfill`` queues an *asset* backfill of the per-symbol chain on the project-local instance.
The daemon runs it in range runs: one data run for all symbols, then model runs of up to
``LSTM_MODEL_RUN_PARTITIONS`` symbols each (see ``core/config.py``); a bad symbol fails alone.
The leaderboard and latest_signals follow by the automation sensor (or, with ``--wait``, in this
process at the end: they need no daemon round trip, and they still run when some symbol failed).
(``dagster job backfill -j symbol_chain_job --all true --noprompt`` also works, but makes one
run per symbol: minutes of launch overhead for 164 symbols.)

With ``--wait`` it follows the backfill to the end, starting a ``dagster-daemon`` for the
duration when none is running. While it waits it shows the symbols done / failed / to go, the
run in progress (step and partition range) and an estimate of the time left: a progress bar on
a terminal, a status line every 20 s otherwise (CI logs). At the end it prints the timing: wall
time, time inside the steps (the asset bodies), and the difference, the orchestration overhead.

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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

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


@dataclass(frozen=True)
class BackfillProgress:
    """Where a backfill stands per symbol: a symbol is done when its last per-symbol asset
    (the evaluation report) is materialized, failed when one of its assets failed (so its later
    ones never run); ``running`` names the runs in progress (step, partition range, time)."""

    total: int
    done: int = 0
    failed: int = 0
    running: tuple[str, ...] = ()
    queued_runs: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def to_go(self) -> int:
        return max(self.total - self.finished, 0)


def _partition_keys(subset: Any, asset_key: Any) -> set[str]:
    """The partition keys of ``asset_key`` in an ``AssetGraphSubset`` (empty when absent)."""
    part = subset.partitions_subsets_by_asset_key.get(asset_key)
    return set(part.get_partition_keys()) if part is not None else set()


def symbol_counts(data: Any, asset_keys: list[Any],
                  also_done: set[str] | frozenset[str] = frozenset()) -> tuple[int, int, int]:
    """(total, done, failed) symbols of an ``AssetBackfillData`` whose per-symbol assets are
    ``asset_keys`` in graph order: done when the last one is materialized (by the backfill's
    data, or in ``also_done``: materialized since the daemon's last tick), failed when any
    failed (Dagster counts the assets after a failed one as failed too)."""
    target: set[str] = set()
    failed: set[str] = set()
    for key in asset_keys:
        target |= _partition_keys(data.target_subset, key)
        failed |= _partition_keys(data.failed_and_downstream_subset, key)
    done = (_partition_keys(data.materialized_subset, asset_keys[-1]) | also_done) & target
    return len(target), len(done), len((failed & target) - done)


def run_label(step: str, tags: Mapping[str, str], seconds: float | None = None) -> str:
    """A run in progress as ``symbol_model SYN021..SYN040 (1m20s)``: its step (or job), its
    partition range (or partition) and how long it has run."""
    from lstm_assets.defs.console import format_seconds

    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    part = f"{start}..{end}" if start and end and start != end else (
        start or tags.get("dagster/partition") or "")
    label = f"{step} {part}".strip()
    return label if seconds is None else f"{label} ({format_seconds(seconds)})"


def estimate_left(p: BackfillProgress, elapsed: float) -> float | None:
    """Seconds left at the pace so far (None before the first symbol finishes, or when none
    is left): the model runs dominate and take about as long per symbol from one to the next."""
    if p.finished == 0 or p.to_go == 0:
        return None
    return elapsed / p.finished * p.to_go


def progress_line(p: BackfillProgress, elapsed: float, status: str) -> str:
    """One status line of ``backfill --wait`` for logs that are not a terminal."""
    from lstm_assets.defs.console import format_seconds

    parts = [f"{status}: {p.done} done, {p.failed} failed, {p.to_go} to go of {p.total} "
             "symbols"]
    if p.running:
        parts.append("running " + "; ".join(p.running))
    if p.queued_runs:
        parts.append(f"{p.queued_runs} run(s) queued")
    left = estimate_left(p, elapsed)
    if left is not None:
        parts.append(f"about {format_seconds(left)} left")
    return " | ".join(parts)


def read_progress(instance: Any, backfill: Any, asset_graph: Any,
                  asset_keys: list[Any]) -> BackfillProgress:
    """The backfill's symbols done / failed / to go and its runs in progress (runs tagged
    ``dagster/backfill``). The counts come from its asset backfill data, which the daemon
    updates once per tick, plus the last asset's materializations by its runs since then."""
    import dagster as dg
    from dagster._core.storage.tags import BACKFILL_ID_TAG

    runs = instance.get_run_records(
        filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill.backfill_id}))
    run_ids = {r.dagster_run.run_id for r in runs}
    recent = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_keys[-1],
                              after_timestamp=backfill.backfill_timestamp), limit=10_000).records
    also_done = {r.partition_key for r in recent if r.run_id in run_ids and r.partition_key}
    total, done, failed = symbol_counts(backfill.get_asset_backfill_data(asset_graph),
                                        asset_keys, also_done)
    status = dg.DagsterRunStatus
    now = time.time()
    labels = tuple(
        run_label(_run_step(r.dagster_run, asset_graph), dict(r.dagster_run.tags),
                  now - r.start_time if r.start_time else None)
        for r in sorted(runs, key=lambda r: r.create_timestamp)
        if r.dagster_run.status in (status.STARTING, status.STARTED))
    queued = sum(r.dagster_run.status in (status.QUEUED, status.NOT_STARTED) for r in runs)
    return BackfillProgress(total, done, failed, labels, queued)


def _run_step(run: Any, asset_graph: Any) -> str:
    """The step a run of an asset backfill executes (``symbol_data``, ``symbol_model``),
    else its job's name."""
    steps = sorted({asset_graph.get(k).assets_def.node_def.name
                    for k in run.asset_selection or [] if asset_graph.has(k)})
    return "+".join(steps) if steps else run.job_name


class ProgressReporter:
    """Shows a backfill's progress: a tqdm bar over its symbols on a terminal (stderr), else a
    status line on stdout when the status changes and every ``every_s`` seconds (CI logs)."""

    def __init__(self, backfill_id: str, *, tty: bool, every_s: float = 20.0,
                 out: TextIO | None = None) -> None:
        self.backfill_id = backfill_id
        self.every_s = every_s
        self.out = out or sys.stdout
        self.bar: Any = None
        self.tty = tty
        self.last_status = ""
        self.last_line_at = float("-inf")

    def update(self, status: str, p: BackfillProgress | None, elapsed: float) -> None:
        changed = status != self.last_status
        self.last_status = status
        if self.tty and p is not None:
            self._bar(status, p, changed)
        elif changed or elapsed - self.last_line_at >= self.every_s:
            line = progress_line(p, elapsed, status) if p is not None else status
            print(f"[{elapsed:6.0f}s] backfill {self.backfill_id}: {line}", file=self.out,
                  flush=True)
            self.last_line_at = elapsed

    def _bar(self, status: str, p: BackfillProgress, changed: bool) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=p.total, unit="symbol", desc=f"backfill {self.backfill_id}",
                            file=sys.stderr, smoothing=0, dynamic_ncols=True)
        if changed:
            self.bar.write(f"backfill {self.backfill_id}: {status}", file=sys.stderr)
        running = f" | {'; '.join(p.running)}" if p.running else ""
        queued = f", {p.queued_runs} queued" if p.queued_runs else ""
        self.bar.set_postfix_str(f"{p.done} done, {p.failed} failed{queued}{running}",
                                 refresh=False)
        self.bar.total, self.bar.n = p.total, p.finished  # smoothing=0: the rate is n / elapsed
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _stderr_is_terminal() -> bool:
    """A terminal with a width (a pseudo-terminal of width 0 would show no bar at all)."""
    try:
        return sys.stderr.isatty() and os.get_terminal_size(sys.stderr.fileno()).columns > 0
    except (OSError, ValueError):
        return False


def wait_for_backfill(instance: Any, backfill_id: str, timeout: float,
                      poll_s: float = 2.0, echo: bool = True, every_s: float = 20.0) -> str:
    """Poll until the backfill is terminal, showing its progress (see ``ProgressReporter``);
    returns its status."""
    import dagster as dg

    from lstm_assets.definitions import defs
    from lstm_assets.defs.assets import SYMBOL_ASSETS

    graph = defs.resolve_asset_graph()
    keys = [dg.AssetKey(a) for a in SYMBOL_ASSETS]
    reporter = ProgressReporter(backfill_id, tty=_stderr_is_terminal(), every_s=every_s)
    t0, status, warned = time.time(), "", False
    try:
        while time.time() - t0 < timeout:
            backfill = instance.get_backfill(backfill_id)
            status = backfill.status.value
            if echo:
                progress = None
                try:
                    progress = read_progress(instance, backfill, graph, keys)
                except Exception as e:  # the progress is a view; it never stops the wait
                    if not warned:
                        print(f"(no progress counts: {type(e).__name__}: {e})", file=sys.stderr)
                        warned = True
                reporter.update(status, progress, time.time() - t0)
            if status in TERMINAL:
                return status
            time.sleep(poll_s)
    finally:
        reporter.close()
    raise TimeoutError(f"backfill {backfill_id} still {status} after {timeout:.0f} s")


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
