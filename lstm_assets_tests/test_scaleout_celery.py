"""Celery: Redis + two dagster-celery workers (queues ``cpu`` and ``gpu``) run a 2-symbol chain.

Starts Debian's redis-server on 127.0.0.1 (free port, no persistence) and two workers with the
project's worker config (deploy/celery/worker.yaml), runs the symbol chain for two partitions
through the celery executor from ``lstm_assets.deploy`` on a persistent (SQLite) instance the
workers share, and checks from Dagster's own engine events that training ran on the ``gpu``-queue
worker and every other step on the ``cpu``-queue worker.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from lstm_assets import deploy
from lstm_assets.core.demo import DemoSpec, generate
from lstm_assets.instance import prepare_instance
from lstm_assets_tests.services import BIN, background, redis_server
from lstm_assets_tests.services import stop_group as _stop_group

pytestmark = [
    # dagster-celery registers its task once per run in this process; Celery warns, harmlessly
    pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning"),
    # the project chain mixes backfill policies on purpose (defs/jobs.py)
    pytest.mark.filterwarnings("ignore:Asset job .* varying BackfillPolicies"),
]
REPO = Path(__file__).resolve().parent.parent
SYMBOLS = ["SYN001", "SYN002"]


def _wait_ready(log: Path, procs: list, timeout: float = 180.0) -> None:
    """Wait for Celery's "ready." line in a worker log (imports take a while on a busy box)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a celery worker exited ({p.returncode}):\n"
                                   f"{log.read_text()[-4000:]}")
        if log.exists() and " ready." in log.read_text():
            return
        time.sleep(0.5)
    raise TimeoutError(f"worker not ready after {timeout:.0f}s:\n{log.read_text()[-4000:]}")


def _worker_by_step(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """step key -> the Celery worker that executed it (dagster-celery's own engine event)."""
    out: dict[str, str] = {}
    for rec in instance.get_records_for_run(run_id).records:
        ev = rec.event_log_entry.dagster_event
        if ev is None or not ev.is_engine_event or ev.step_key is None:
            continue
        md = ev.engine_event_data.metadata or {}
        if "Celery worker" in md:
            out[ev.step_key] = str(md["Celery worker"].value)
    return out


def test_celery_two_queues_training_on_gpu_worker(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = time.perf_counter()
    raw, wh, home = tmp_path / "raw", tmp_path / "wh", tmp_path / "dagster_home"
    generate(raw, DemoSpec(symbols=len(SYMBOLS), years=4, seed=5, defect_share=0.0))
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # SQLite storage
    # create the SQLite schema once, before two workers race to create it at start-up
    with dg.DagsterInstance.from_config(str(home)):
        pass

    with redis_server(tmp_path / "redis") as broker:
        env = {**os.environ, "DAGSTER_HOME": str(home), "LSTM_CELERY_BROKER": broker,
               "LSTM_RAW_DIR": str(raw), "LSTM_WAREHOUSE_DIR": str(wh),
               "LSTM_TRUTH_DIR": str(tmp_path / "demo_truth"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                           os.environ.get("PYTHONPATH")])),
               # `dagster-celery worker start` runs `celery` from PATH
               "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
               "OMP_NUM_THREADS": "1"}
        for k in ("DAGSTER_HOME", "LSTM_CELERY_BROKER", "LSTM_RAW_DIR", "LSTM_WAREHOUSE_DIR",
                  "LSTM_TRUTH_DIR"):
            monkeypatch.setenv(k, env[k])
        worker_yaml = REPO / "deploy" / "celery" / "worker.yaml"
        logs = {q: tmp_path / f"worker_{q}.log" for q in ("cpu", "gpu")}

        def worker(q: str) -> list[str]:
            return [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                    "-y", str(worker_yaml), "-q", q, "-n", q, "--loglevel", "INFO",
                    "--", "--pool=solo", "--concurrency=1", "--without-gossip",
                    "--without-mingle", "--without-heartbeat"]

        with background(worker("cpu"), logs["cpu"], env, REPO) as cpu, \
                background(worker("gpu"), logs["gpu"], env, REPO) as gpu:
            for q, p in (("cpu", cpu), ("gpu", gpu)):
                _wait_ready(logs[q], [p])
            t_ready = time.perf_counter()

            from lstm_assets_tests.scaleout_defs import (
                CHAIN_ASSETS,
                TRAINING_STEP,
                celery_chain_job,
            )

            steps = {a.op.name for a in CHAIN_ASSETS}
            job = dg.reconstructable(celery_chain_job)
            with dg.DagsterInstance.get() as instance:
                prepare_instance(instance)  # gpu pool: 1 slot, as in production
                instance.add_dynamic_partitions("symbols", SYMBOLS)
                results = {}
                for sym in SYMBOLS:
                    with dg.execute_job(job, instance, tags={"dagster/partition": sym}) as res:
                        results[sym] = (res.success, res.run_id)
                        failures = [e.message for e in res.all_events if e.is_failure]
                    assert res.success, f"{sym}: {failures}\n" + logs["gpu"].read_text()[-3000:]
                for sym, (_, run_id) in results.items():
                    ran_on = _worker_by_step(instance, run_id)
                    assert set(ran_on) == steps, ran_on
                    assert ran_on[TRAINING_STEP].startswith(f"{deploy.gpu_queue()}@"), ran_on
                    others = {k: v for k, v in ran_on.items() if k != TRAINING_STEP}
                    assert others and all(v.startswith(f"{deploy.cpu_queue()}@")
                                          for v in others.values()), ran_on
                    mats = instance.fetch_materializations(
                        dg.AssetKey("lstm_model"), limit=10).records
                    assert sym in {m.partition_key for m in mats}
                    assert (wh / "lstm_model" / f"{sym}.safetensors").exists()
                    assert (wh / "evaluation_report" / f"{sym}.json").exists()
            # the Celery logs agree: the gpu worker received tasks, and so did the cpu one
            assert "Task execute_plan" in logs["gpu"].read_text()
            assert "Task execute_plan" in logs["cpu"].read_text()
            _stop_group(cpu)
            _stop_group(gpu)
    print(f"celery: workers ready in {t_ready - t0:.0f}s, "
          f"2 runs in {time.perf_counter() - t_ready:.0f}s")
