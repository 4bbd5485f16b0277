"""Postgres: the instance variant deploy/postgres/dagster.yaml against a real local PostgreSQL.

Starts Debian's PostgreSQL (initdb in a temp folder, 127.0.0.1, free port), points a
DagsterInstance at the project's Postgres YAML through DAGSTER_PG_* variables, materializes the
chain for one symbol in-process, then runs a real 2-partition backfill: `dagster job backfill`
queues it and `dagster-daemon run` (backfill + run-queue daemons, one run process per partition)
executes it. Runs, materializations and the backfill are then read back from the database.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from lstm_assets import deploy
from lstm_assets.core.demo import DemoSpec, generate
from lstm_assets.instance import prepare_instance
from lstm_assets_tests.services import BIN, background, postgres_server

# the project chain mixes backfill policies on purpose (defs/jobs.py); Dagster warns each time
pytestmark = pytest.mark.filterwarnings("ignore:Asset job .* varying BackfillPolicies")
REPO = Path(__file__).resolve().parent.parent
CHAIN = ["raw_features", "clean_frames", "sequence_tensors", "lstm_model", "evaluation_report"]
BACKFILL = ["SYN002", "SYN003"]


def _wait_backfill(instance: dg.DagsterInstance, daemon_log: Path, proc: subprocess.Popen,
                   timeout: float = 420.0) -> tuple[PartitionBackfill, list[dg.DagsterRun]]:
    """Wait until the daemon has submitted every run of the backfill and each run finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited:\n{daemon_log.read_text()[-4000:]}")
        backfills = instance.get_backfills()
        if backfills and backfills[0].status != BulkActionStatus.REQUESTED:
            runs = instance.get_runs(
                dg.RunsFilter(tags={"dagster/backfill": backfills[0].backfill_id}))
            if runs and all(r.is_finished for r in runs):
                return backfills[0], list(runs)
        time.sleep(2)
    raise TimeoutError(f"backfill not done after {timeout:.0f}s:\n"
                       f"{daemon_log.read_text()[-4000:]}")


def test_postgres_instance_materialize_and_daemon_backfill(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = time.perf_counter()
    raw, wh, home = tmp_path / "raw", tmp_path / "wh", tmp_path / "dagster_home"
    generate(raw, DemoSpec(symbols=3, years=4, seed=3, defect_share=0.0))
    with postgres_server("dagster") as pg:
        env = {**pg.env(), "DAGSTER_HOME": str(home), "LSTM_RAW_DIR": str(raw),
               "LSTM_WAREHOUSE_DIR": str(wh), "LSTM_TRUTH_DIR": str(tmp_path / "demo_truth"),
               "LSTM_INSTANCE": "postgres"}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        yaml = deploy.write_instance_yaml(home)
        assert "postgresql+psycopg2" in yaml.read_text()
        (tmp_path / "workspace.yaml").write_text(
            "load_from:\n  - python_module:\n      module_name: lstm_assets_tests.scaleout_defs\n"
            f"      working_directory: {REPO}\n      location_name: scaleout\n")
        sub_env = {**os.environ, "OMP_NUM_THREADS": "1",
                   "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                               os.environ.get("PYTHONPATH")]))}

        from lstm_assets_tests.scaleout_defs import CHAIN_ASSETS, resources

        with dg.DagsterInstance.get() as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
            prepare_instance(instance)
            instance.add_dynamic_partitions("symbols", ["SYN001", *BACKFILL])

            # 1) a materialization of the chain for one symbol, recorded in Postgres
            res = dg.materialize(CHAIN_ASSETS, partition_key="SYN001", instance=instance,
                                 resources=resources())
            assert res.success
            t_one = time.perf_counter()

            # 2) a real backfill of two partitions: queued by the CLI, run by the daemon
            cli = subprocess.run(
                [str(BIN / "dagster"), "job", "backfill", "-w", str(tmp_path / "workspace.yaml"),
                 "-j", "chain_job", "--partitions", ",".join(BACKFILL), "--noprompt"],
                env=sub_env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
            assert cli.returncode == 0, cli.stdout + cli.stderr
            log = tmp_path / "daemon.log"
            with background([str(BIN / "dagster-daemon"), "run", "-w",
                             str(tmp_path / "workspace.yaml")], log, sub_env, tmp_path) as daemon:
                backfill, runs = _wait_backfill(instance, log, daemon)
            t_backfill = time.perf_counter()
            # a job backfill is COMPLETED once every run is submitted; the runs say how they did
            assert backfill.status in (BulkActionStatus.COMPLETED,
                                       BulkActionStatus.COMPLETED_SUCCESS), backfill.status
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), (
                [(r.run_id, r.status) for r in runs], log.read_text()[-4000:])
            done = {r.tags.get("dagster/partition") for r in runs}
            ranges = [(r.tags.get("dagster/asset_partition_range_start"),
                       r.tags.get("dagster/asset_partition_range_end")) for r in runs]
            assert done == set(BACKFILL) or ranges == [tuple(BACKFILL)], (done, ranges)
            for sym in ["SYN001", *BACKFILL]:
                assert (wh / "lstm_model" / f"{sym}.safetensors").exists()

        # 3) the same facts, straight from the database
        with pg.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT status, count(*) FROM runs GROUP BY status")
            by_status = dict(cur.fetchall())
            cur.execute("SELECT asset_key, partition FROM event_logs "
                        "WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
            mats = {(k, p) for k, p in cur.fetchall()}
            cur.execute("SELECT key, status FROM bulk_actions")
            bulk = dict(cur.fetchall())
        assert set(by_status) == {"SUCCESS"} and by_status["SUCCESS"] == 1 + len(runs), by_status
        for sym in ["SYN001", *BACKFILL]:
            for asset in CHAIN:
                assert (dg.AssetKey(asset).to_string(), sym) in mats
        assert bulk == {backfill.backfill_id: backfill.status.value}
    print(f"postgres: one symbol in {t_one - t0:.0f}s, 2-partition daemon backfill in "
          f"{t_backfill - t_one:.0f}s")
