"""The code location: assets, checks, jobs, schedule, sensors and resources, assembled.

Runs use the in-process executor: a run's steps run one after another in the run's process
instead of one spawned process per step (seconds each), and a backfill covers many symbols
per run (see ``defs/assets.py``), so per-step parallelism would buy nothing here.

Resources, executor and automation take their defaults from environment variables, all read and
listed in ``lstm_assets/core/config.py``.
"""

import dagster as dg

from lstm_assets import deploy
from lstm_assets.defs import assets, automation, console, jobs
from lstm_assets.defs.resources import default_paths, settings_from_env

defs = dg.Definitions(
    assets=[assets.symbol_data, assets.symbol_model, assets.leaderboard, assets.latest_signals,
            assets.signal_outcomes, assets.pooled_model, assets.model_comparison],
    jobs=[jobs.symbol_chain_job, jobs.leaderboard_job, jobs.signals_job],
    schedules=[automation.nightly_retrain_schedule],
    sensors=[automation.raw_files_sensor, automation.cross_symbol_sensor],
    resources={"settings": settings_from_env(), "paths": default_paths()},
    # Dagster's console logger, less the uninformative stack traces of dg.Failure (defs/console.py)
    loggers={"console": console.console_logger},
    # LSTM_EXECUTOR=celery|k8s|multiprocess|in_process (docs/deploy.md); unset: in-process
    executor=deploy.executor_from_env(default=dg.in_process_executor),
)
