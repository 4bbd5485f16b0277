"""Automation: the new-file sensor, the nightly retrain schedule, and the sensor that refreshes
the cross-symbol assets (leaderboard, latest_signals) after symbols change.

Environment (read through :class:`lstm_assets.core.config.ProjectConfig`, which lists the
defaults; read when the code location loads):

- ``LSTM_RETRAIN_CRON`` and ``LSTM_RETRAIN_TZ``: when the nightly retrain runs;
- ``LSTM_RAW_SENSOR_INTERVAL`` (seconds): how often the raw folder is scanned;
- ``LSTM_AUTOMATION`` (``on`` by default; ``off`` starts the sensors and the schedule stopped,
  e.g. for tests; they can be started in the UI either way).
"""


import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from lstm_assets.core.config import ProjectConfig
from lstm_assets.core.ingest import invalid_raw_files, link_outside, list_raw_files
from lstm_assets.core.stages import file_hash
from lstm_assets.defs.assets import symbols_partitions
from lstm_assets.defs.jobs import symbol_chain_job
from lstm_assets.defs.resources import PathsResource
from lstm_assets.instance import ensure_gpu_pool

_CONFIG = ProjectConfig.from_env()
RETRAIN_CRON = _CONFIG.retrain_cron
RETRAIN_TZ = _CONFIG.retrain_tz
RAW_SENSOR_INTERVAL = _CONFIG.raw_sensor_interval
TRIGGER_TAG = "lstm/trigger"
OUTSIDE_LINK = "link-outside-raw-dir"
"""The state's hash of a link to outside the raw folder: such a file is never opened."""


def automation_on() -> bool:
    """``LSTM_AUTOMATION`` (read on each call): whether sensors and the schedule start running."""
    return ProjectConfig.from_env().automation


def _sensor_status() -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if automation_on() else dg.DefaultSensorStatus.STOPPED


def _schedule_status() -> dg.DefaultScheduleStatus:
    return (dg.DefaultScheduleStatus.RUNNING if automation_on()
            else dg.DefaultScheduleStatus.STOPPED)


# ---- new-file sensor -------------------------------------------------------------------------

@dataclass
class RawScan:
    """What changed in the raw folder since the last scan (the sensor's cursor)."""

    state: dict[str, list[Any]]  # symbol -> [mtime_ns, size, content hash]
    new: dict[str, str] = field(default_factory=dict)  # symbol -> hash (never seen before)
    changed: dict[str, str] = field(default_factory=dict)  # symbol -> new hash
    removed: list[str] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)  # mtime changed, content did not


def scan_raw(files: dict[str, Path], previous: dict[str, list[Any]]) -> RawScan:
    """Compare the files with the previous state. Hashes only files whose mtime/size moved.

    A link to outside the raw folder (the folder the file is listed in) is never opened nor
    hashed: it is kept in the state as such and requests no run (``invalid_raw_files`` reports
    it; a run of its partition fails with the link message).
    """
    scan = RawScan(state={})
    for sym, path in sorted(files.items()):
        try:
            if link_outside(path) is not None:
                st = path.lstat()
                scan.state[sym] = [st.st_mtime_ns, st.st_size, OUTSIDE_LINK]
                continue
            st = path.stat()
        except OSError:  # vanished between listing and stat: seen as removed next tick
            continue
        old = previous.get(sym)
        if old and old[2] != OUTSIDE_LINK and old[0] == st.st_mtime_ns and old[1] == st.st_size:
            scan.state[sym] = old
            continue
        h = file_hash(path, path.parent)
        scan.state[sym] = [st.st_mtime_ns, st.st_size, h]
        if old is None:
            scan.new[sym] = h
        elif old[2] != h:
            scan.changed[sym] = h
        else:
            scan.touched.append(sym)
    scan.removed = sorted(set(previous) - set(files))
    return scan


def _backfills_in_progress(instance: dg.DagsterInstance) -> list[str]:
    from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

    running = instance.get_backfills(
        filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED]), limit=5)
    return [b.backfill_id for b in running]


def _materialized_hash(instance: dg.DagsterInstance, sym: str) -> str | None:
    """The content hash recorded by the latest raw_features materialization of ``sym``."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_features"), asset_partitions=[sym]),
        limit=1).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get("content_hash")
    return str(value.value) if value is not None else None


@dg.sensor(
    name="raw_files_sensor",
    job=symbol_chain_job,
    minimum_interval_seconds=RAW_SENSOR_INTERVAL,
    default_status=_sensor_status(),
    description="A file added or changed in the raw folder adds the symbol's partition and runs "
                "its chain; unchanged files never retrigger; removed files are reported.",
)
def raw_files_sensor(context: dg.SensorEvaluationContext,
                     paths: PathsResource) -> dg.SensorResult | dg.SkipReason:
    if ensure_gpu_pool(context.instance):
        context.log.info("set the gpu pool limit on this instance")
    raw_dir = Path(paths.raw_dir)
    busy = _backfills_in_progress(context.instance)
    if busy:
        # a backfill (e.g. `lstm-assets backfill` of freshly dropped files) is doing the work;
        # look again afterwards: files it materialized are then recognised as unchanged
        return dg.SkipReason(f"backfill {busy[0]} in progress; raw folder checked after it")
    cursor = json.loads(context.cursor) if context.cursor else {}
    previous: dict[str, list[Any]] = cursor.get("files", {})
    scan = scan_raw(list_raw_files(raw_dir), previous)
    known = set(context.instance.get_dynamic_partitions(symbols_partitions.name))

    requests: list[dg.RunRequest] = []
    for kind, found in (("new_file", scan.new), ("changed_file", scan.changed)):
        for sym, h in found.items():
            # a file seen for the first time (e.g. after the sensor was started) whose content
            # is already materialized needs no run
            if kind == "new_file" and sym in known and _materialized_hash(context.instance,
                                                                          sym) == h:
                continue
            mtime = scan.state[sym][0]
            requests.append(dg.RunRequest(partition_key=sym, run_key=f"{sym}:{h}:{mtime}",
                                          tags={TRIGGER_TAG: kind}))
    for sym in scan.removed:
        context.log.warning(f"raw file of {sym} was removed from {raw_dir}: its partition and "
                            "artifacts are kept; the nightly retrain skips it")
    invalid = invalid_raw_files(raw_dir)
    if invalid != cursor.get("invalid", []):
        for msg in invalid:
            context.log.warning(f"ignored raw file: {msg}")
    removed = sorted((set(cursor.get("removed", [])) | set(scan.removed)) - set(scan.state))
    new_cursor = json.dumps({"files": scan.state, "removed": removed, "invalid": invalid},
                            sort_keys=True)
    add = sorted(set(scan.state) - known)
    if not requests and not add:
        context.update_cursor(new_cursor)
        return dg.SkipReason(f"no new or changed files in {raw_dir} ({len(scan.state)} files"
                             f"{f', {len(removed)} removed' if removed else ''})")
    context.log.info(f"{len(requests)} run(s): new {sorted(scan.new)}, changed "
                     f"{sorted(scan.changed)}; new partitions {add}")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[symbols_partitions.build_add_request(add)] if add else [],
        cursor=new_cursor,
    )


# ---- nightly retrain -------------------------------------------------------------------------

@dg.schedule(
    name="nightly_retrain_schedule",
    cron_schedule=RETRAIN_CRON,
    execution_timezone=RETRAIN_TZ,
    job=symbol_chain_job,
    default_status=_schedule_status(),
    description="Reruns every symbol's chain on its current file: one run per symbol (a failure "
                "stays with its symbol). The splits are chronological shares of the history, so "
                "new days land in the test split and move the training split forward by their "
                "share. Each model warm-starts from the previous one when its features and "
                "settings are unchanged (a full fit every full_retrain_every_days), is skipped "
                "when its inputs did not change at all, and serves only when not significantly "
                "worse than the serving model.",
)
def nightly_retrain_schedule(context: dg.ScheduleEvaluationContext,
                             paths: PathsResource) -> Any:
    partitions = context.instance.get_dynamic_partitions(symbols_partitions.name)
    files = list_raw_files(Path(paths.raw_dir))
    symbols = [s for s in partitions if s in files]
    no_file = sorted(set(partitions) - set(files))
    not_added = sorted(set(files) - set(partitions))
    if no_file:
        context.log.warning(f"skipping symbols whose raw file is gone: {no_file}")
    if not_added:
        context.log.warning(f"raw files without a partition yet (raw_files_sensor adds them): "
                            f"{not_added}")
    if not symbols:
        return dg.SkipReason(f"no symbol partitions with a raw file in {paths.raw_dir}")
    when = context.scheduled_execution_time
    day = when.strftime("%Y-%m-%d") if when else "manual"
    return [dg.RunRequest(partition_key=s, run_key=f"nightly-{day}-{s}",
                          tags={TRIGGER_TAG: "nightly_retrain", "lstm/retrain_date": day})
            for s in sorted(symbols)]


# ---- cross-symbol assets follow --------------------------------------------------------------

cross_symbol_sensor = dg.AutomationConditionSensorDefinition(
    "cross_symbol_automation_sensor",
    target=dg.AssetSelection.assets("leaderboard", "latest_signals", "signal_outcomes"),
    default_status=_sensor_status(),
    minimum_interval_seconds=30,
    description="Refreshes the leaderboard, latest_signals and signal_outcomes once symbols "
                "have been updated and nothing upstream is still running.",
)
