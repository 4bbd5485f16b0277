"""The project-local Dagster instance: DAGSTER_HOME defaults to ``.dagster_home`` in the project."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

TEMPLATE = Path(__file__).resolve().parent.parent / "dagster_home_template" / "dagster.yaml"
GPU_POOL = "gpu"


def ensure_dagster_home(default: str | Path = ".dagster_home") -> Path:
    """Set DAGSTER_HOME (when unset) and give it the committed dagster.yaml template."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path(default).resolve())
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    target = home / "dagster.yaml"
    if not target.exists() and TEMPLATE.exists():
        shutil.copyfile(TEMPLATE, target)
    return home


def prepare_instance(instance: dg.DagsterInstance) -> None:
    """Apply what the YAML cannot say: the ``gpu`` pool's limit (default 1)."""
    limit = int(os.environ.get("LSTM_GPU_POOL_LIMIT", "1"))
    instance.event_log_storage.set_concurrency_slots(GPU_POOL, limit)


def sync_partitions(instance: dg.DagsterInstance, symbols: list[str],
                    name: str = "symbols") -> tuple[list[str], list[str]]:
    """Add partitions for new symbols. Returns (added, known_without_file); nothing is deleted."""
    have = set(instance.get_dynamic_partitions(name))
    added = [s for s in symbols if s not in have]
    if added:
        instance.add_dynamic_partitions(name, added)
    return added, sorted(have - set(symbols))
