"""A code location for the scale-out tests: the project's own assets, tiny settings, and jobs on
the executors under test. Daemons, run workers and Celery workers import it by module name.

Folders come from LSTM_RAW_DIR / LSTM_WAREHOUSE_DIR / LSTM_TRUTH_DIR (the warehouse may be
``s3://...``); the Celery executor from LSTM_CELERY_BROKER (see ``lstm_assets.deploy``).
"""

from __future__ import annotations

import os
import warnings

import dagster as dg

from lstm_assets import deploy
from lstm_assets.defs import assets
from lstm_assets.defs.resources import LstmSettings, default_paths

# a chain of several multi-assets mixes backfill policies on purpose; Dagster warns each time
warnings.filterwarnings("ignore", message=r"Asset job .* varying BackfillPolicies")

CHAIN = ["raw_features", "clean_frames", "sequence_tensors", "lstm_model", "evaluation_report"]


def chain_assets() -> list[dg.AssetsDefinition]:
    """The per-symbol assets by name (one asset each, or multi-assets computing several), the
    training op tagged for the Celery queue / k8s GPU pod from the current environment."""
    return deploy.route_training([getattr(assets, name) for name in CHAIN])


CHAIN_ASSETS = chain_assets()
TRAINING_STEP = deploy.training_op_name(CHAIN_ASSETS)


def tiny_settings() -> LstmSettings:
    """The test suite's tiny model (see conftest.TINY): seconds per symbol on one core."""
    return LstmSettings(lookback=10, hidden_size=8, num_layers=1, max_epochs=2, batch_size=64,
                        bootstrap_samples=50, device="cpu", num_threads=1)


def resources() -> dict[str, object]:
    return {"settings": tiny_settings(), "paths": default_paths()}


def _chain_job(name: str,
               executor: dg.ExecutorDefinition | None) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(name, selection=dg.AssetSelection.assets(*CHAIN),
                               partitions_def=assets.symbols_partitions, executor_def=executor)


def build_defs(executor_env: dict[str, str] | None = None) -> dg.Definitions:
    """Definitions with ``chain_job`` (in-process) and, when a broker is set, ``celery_chain_job``.

    ``executor_env`` overrides the environment the executor is chosen from.
    """
    env = {**os.environ, **(executor_env or {})}
    jobs = [_chain_job("chain_job", dg.in_process_executor)]
    if env.get("LSTM_CELERY_BROKER"):
        jobs.append(_chain_job("celery_chain_job",
                               deploy.executor_from_env({**env, "LSTM_EXECUTOR": "celery"})))
    jobs.append(_chain_job("k8s_chain_job",
                           deploy.executor_from_env({**env, "LSTM_EXECUTOR": "k8s"})))
    return dg.Definitions(assets=chain_assets(), jobs=jobs, resources=resources())


defs = build_defs()


def celery_chain_job() -> dg.JobDefinition:
    """The chain on the Celery executor (a module-level function, so it is reconstructable)."""
    return build_defs().resolve_job_def("celery_chain_job")


def k8s_chain_job() -> dg.JobDefinition:
    """The chain on the k8s_job_executor (configured from LSTM_K8S_* variables)."""
    return build_defs().resolve_job_def("k8s_chain_job")
