"""The project-local Dagster instance: DAGSTER_HOME defaults to ``.dagster_home`` in the project.

``ensure_dagster_home`` writes ``$DAGSTER_HOME/dagster.yaml`` from the committed template
(``dagster_home_template/dagster.yaml``) when it is missing, with the run concurrency sized for
this machine. The ``gpu`` pool gets its limit (:func:`gpu_pool_limit`: ``LSTM_GPU_POOL_LIMIT``, else
1 on a GPU and one per core on a CPU) three ways, so no one sets it by hand: the template's
``pools.default_limit: 1`` (any pool without an explicit limit, until one of the others runs),
:func:`prepare_instance` (``lstm-assets run|ui|backfill``), and the new-file sensor,
which calls :func:`ensure_gpu_pool` on every tick (so a hand-started ``dagster dev`` gets it too).
The variables are read by :class:`lstm_assets.core.config.ProjectConfig`.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from lstm_assets import deploy
from lstm_assets.core.config import DAGSTER_HOME_DIR, ProjectConfig, export_env

TEMPLATE = Path(__file__).resolve().parent.parent / "dagster_home_template" / "dagster.yaml"
GPU_POOL = "gpu"
RUNS_PLACEHOLDER = "max_concurrent_runs: 2"


def machine_run_limit() -> int:
    """Concurrent runs for this machine: one per core, at least 1, at most 8.

    Training is serialized by the ``gpu`` pool anyway; the other steps are light, so one run per
    core keeps the cores busy without oversubscribing them (``LSTM_MAX_CONCURRENT_RUNS`` wins).
    """
    wanted = ProjectConfig.from_env().max_concurrent_runs
    if wanted is not None:
        return wanted
    return max(1, min(8, os.cpu_count() or 1))


def render_template(text: str, max_runs: int | None = None) -> str:
    """The template with the machine's run concurrency filled in."""
    runs = machine_run_limit() if max_runs is None else max_runs
    return text.replace(RUNS_PLACEHOLDER, f"max_concurrent_runs: {runs}", 1)


def ensure_dagster_home(default: str | Path = DAGSTER_HOME_DIR) -> Path:
    """Set DAGSTER_HOME (when unset; exported for this process and its children) and give it the
    committed dagster.yaml template."""
    home = Path(ProjectConfig.from_env().dagster_home or Path(default).resolve())
    home.mkdir(parents=True, exist_ok=True)
    export_env({"DAGSTER_HOME": str(home)})
    target = home / "dagster.yaml"
    if deploy.instance_variant() != "local":  # LSTM_INSTANCE=postgres or DAGSTER_PG_HOST set
        deploy.write_instance_yaml(home)
    elif not target.exists() and TEMPLATE.exists():
        tmp = target.with_suffix(".yaml.tmp")
        tmp.write_text(render_template(TEMPLATE.read_text()))
        os.replace(tmp, target)
    return home


def gpu_pool_limit() -> int:
    """Steps at once in the ``gpu`` pool: ``LSTM_GPU_POOL_LIMIT``, else as many fits as the
    training device runs well at once (``train.parallel_fits``: 1 on a GPU, else one per core
    at the default ``num_threads`` of 1)."""
    cfg = ProjectConfig.from_env()
    if cfg.gpu_pool_limit is not None:
        return cfg.gpu_pool_limit
    from lstm_assets.core.settings import Settings
    from lstm_assets.core.train import parallel_fits

    return parallel_fits(Settings(**cfg.settings))


def ensure_gpu_pool(instance: dg.DagsterInstance) -> bool:
    """Give the ``gpu`` pool its limit when it has another (or none). True when it changed."""
    want = gpu_pool_limit()
    try:
        have = instance.event_log_storage.get_concurrency_info(GPU_POOL).slot_count
    except Exception:  # storage without pool support: nothing to do
        return False
    if have == want:
        return False
    instance.event_log_storage.set_concurrency_slots(GPU_POOL, want)
    return True


def prepare_instance(instance: dg.DagsterInstance) -> None:
    """Apply what the YAML cannot say: the ``gpu`` pool's limit (:func:`gpu_pool_limit`)."""
    ensure_gpu_pool(instance)


def sync_partitions(instance: dg.DagsterInstance, symbols: list[str],
                    name: str = "symbols") -> tuple[list[str], list[str]]:
    """Add partitions for new symbols. Returns (added, known_without_file); nothing is deleted."""
    have = set(instance.get_dynamic_partitions(name))
    added = [s for s in symbols if s not in have]
    if added:
        instance.add_dynamic_partitions(name, added)
    return added, sorted(have - set(symbols))
