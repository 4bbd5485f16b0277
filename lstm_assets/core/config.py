"""Every environment variable the project reads, and every default folder, in one place.

:meth:`ProjectConfig.from_env` is the one reader of ``os.environ`` for project settings: a module
asks it (``ProjectConfig.from_env().raw_dir``) instead of reading a variable itself, and a bad
value is a :class:`ConfigError` (a ``ValueError``) that names the variable. An empty value counts
as unset. Only the standard library is imported here (``core`` runs on bare GPU machines).

Folders and the Dagster instance

============================== ==================== ============================================
variable                       default              meaning (read by)
============================== ==================== ============================================
``LSTM_RAW_DIR``               ``data/raw``         raw per-symbol input files (``PathsResource``;
                                                    ``--raw-dir`` of ``run``, ``ui``, ``backfill``)
``LSTM_WAREHOUSE_DIR``         ``data/warehouse``   the artifact warehouse, a folder or
                                                    ``s3://bucket/prefix`` (``PathsResource``;
                                                    ``--warehouse-dir``)
``LSTM_TRUTH_DIR``             ``data/demo_truth``  the demo generator's ground truth
                                                    (``PathsResource``; ``run``, ``backfill``)
``DAGSTER_HOME``               ``.dagster_home``    the Dagster instance folder; when unset, the
                                                    default under the working directory
                                                    (``instance.ensure_dagster_home``; Dagster)
``LSTM_INSTANCE``              ``local``            the instance YAML: ``local`` (SQLite, from
                                                    dagster_home_template/) or ``postgres``
                                                    (deploy/postgres/; ``deploy.py``)
``DAGSTER_PG_HOST``            unset                when set and ``LSTM_INSTANCE`` is not:
                                                    ``postgres`` (``deploy.py``)
``DAGSTER_PG_PORT``,           unset                Postgres credentials, read by Dagster from
``DAGSTER_PG_USERNAME``,                            deploy/postgres/dagster.yaml (``env:``
``DAGSTER_PG_PASSWORD``,                            entries), never by this project's code
``DAGSTER_PG_DB``
``LSTM_MAX_CONCURRENT_RUNS``   one per core, 1-8    runs at once, written into a new
                                                    dagster.yaml (``instance.py``)
``LSTM_GPU_POOL_LIMIT``        1 on a GPU, else     steps at once in the ``gpu`` pool (training;
                               one per core         ``instance.py``, the new-file sensor;
                                                    ``train.parallel_fits``)
``LSTM_S3_ENDPOINT``           unset                S3 endpoint URL of an ``s3://`` warehouse
                                                    (``core/storage.py``); when unset,
                                                    ``AWS_ENDPOINT_URL_S3``, else
                                                    ``AWS_ENDPOINT_URL``, else AWS's own
``AWS_REGION``                 unset                the S3 region (``core/storage.py``); when
                                                    unset, ``AWS_DEFAULT_REGION``, else AWS's
                                                    default. Credentials come from the AWS chain
                                                    (``AWS_ACCESS_KEY_ID``, ..., a profile, an
                                                    instance role), read by boto, not here
============================== ==================== ============================================

Pipeline settings and automation (read when the code location loads, unless said otherwise)

============================== ==================== ============================================
variable                       default              meaning (read by)
============================== ==================== ============================================
``LSTM_SETTINGS``              ``{}``               a JSON object of ``core.settings.Settings``
                                                    overrides for every run, e.g.
                                                    ``{"max_epochs": 5}``; launchpad config and
                                                    ``--set`` win over it
                                                    (``defs/resources.py``; ``run``)
``LSTM_MODEL_RUN_PARTITIONS``  ``500``              symbols per model run of a backfill
                                                    (``defs/assets.py``)
``LSTM_RETRAIN_CRON``          ``0 2 * * *``        when the nightly retrain runs
                                                    (``defs/automation.py``)
``LSTM_RETRAIN_TZ``            ``UTC``              the time zone of that cron
                                                    (``defs/automation.py``)
``LSTM_RAW_SENSOR_INTERVAL``   ``30``               seconds between scans of the raw folder
                                                    (``defs/automation.py``)
``LSTM_AUTOMATION``            ``on``               ``off``, ``0``, ``false``, ``no`` or
                                                    ``stopped`` start the sensors and the
                                                    schedule stopped; ``on``, ``1``, ``true``,
                                                    ``yes`` or ``running`` started; read when
                                                    each is built (``defs/automation.py``)
============================== ==================== ============================================

Executors (read when the definitions are built, by ``deploy.py``; see docs/deploy.md)

============================== ==================== ============================================
variable                       default              meaning
============================== ==================== ============================================
``LSTM_EXECUTOR``              unset: in-process    ``in_process``, ``multiprocess``, ``celery``
                                                    or ``k8s``
``LSTM_CELERY_BROKER``         unset                the Celery broker and result backend, e.g.
                                                    ``redis://host:6379/0``; ``celery`` needs it
                                                    (Dagster's Celery executor and the workers
                                                    read it again themselves)
``LSTM_CELERY_GPU_QUEUE``      ``gpu``              the Celery queue of the training step
``LSTM_CELERY_CPU_QUEUE``      ``cpu``              the Celery queue of every other step
``LSTM_K8S_NAMESPACE``         ``dagster``          the namespace of the step Jobs
``LSTM_K8S_IMAGE``             unset                the image of the step Jobs (unset: the code
                                                    location's image)
``LSTM_K8S_MAX_CONCURRENT``    ``8``                step pods at once per run
``LSTM_K8S_STEP_CPU``          ``1``                the CPU request of a step pod
``LSTM_K8S_STEP_MEMORY``       ``2Gi``              the memory request of a step pod
``LSTM_K8S_ENV_SECRETS``       none                 comma-separated Secrets for the step pods
``LSTM_K8S_ENV_CONFIG_MAPS``   none                 comma-separated ConfigMaps for the step pods
``LSTM_K8S_GPUS``              ``1``                ``nvidia.com/gpu`` of the training pod
``LSTM_K8S_GPU_NODE_SELECTOR`` see meaning          ``key=value[,key=value]``: the training
                                                    pod's nodes (default
                                                    ``nvidia.com/gpu.present=true``)
``LSTM_K8S_GPU_IMAGE``         unset                the training pod's image, e.g. a CUDA build
                                                    (unset: the other steps' image)
``LSTM_K8S_GPU_STEP_CPU``      unset                the CPU request of the training pod
``LSTM_K8S_GPU_STEP_MEMORY``   unset                the memory request of the training pod
============================== ==================== ============================================

Read by shell scripts, not by Python

============================== ==================== ============================================
variable                       default              meaning (read by)
============================== ==================== ============================================
``LSTM_TORCH``                 ``torch==2.13.0``    the torch requirement installed into .venv,
                                                    e.g. a CUDA build (``run.sh``)
``PYTHON``                     ``python3``          the interpreter that makes .venv (``run.sh``)
``DAGSTER_HOME``               $PWD/.dagster_home   exported by ``run.sh`` when unset
``LSTM_BENCH_DRY_RUN``         ``0``                ``1``: a tiny CPU run of the GPU benchmark
                                                    (``scripts/gpu_bench.sh``)
``OUT``                        ``gpu_bench_out``    the GPU benchmark's output folder
                                                    (``scripts/gpu_bench.sh``; the default of
                                                    the GPU benchmark's ``--out``)
============================== ==================== ============================================

``lstm-assets run`` exports the folders it is given (``LSTM_RAW_DIR``, ``LSTM_WAREHOUSE_DIR``) and
:func:`~lstm_assets.instance.ensure_dagster_home` exports ``DAGSTER_HOME``, both through
:func:`export_env`, so that definitions loaded later in the process and child processes (the
Dagster UI, a daemon) see the same values; :func:`child_env` builds a child's environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# ---- path defaults (relative to the working directory: the project root in the README) ----------
RAW_DIR = "data/raw"
WAREHOUSE_DIR = "data/warehouse"
TRUTH_DIR = "data/demo_truth"
DAGSTER_HOME_DIR = ".dagster_home"

# ---- allowed values -----------------------------------------------------------------------------
EXECUTORS = ("multiprocess", "in_process", "celery", "k8s")
INSTANCES = ("local", "postgres")
DEFAULT_GPU_NODE_SELECTOR = "nvidia.com/gpu.present=true"  # label set by NVIDIA's GPU operator
_ON = ("on", "1", "true", "yes", "running")
_OFF = ("off", "0", "false", "no", "stopped")


class ConfigError(ValueError):
    """An environment variable whose value cannot be used; the message names the variable."""


def _get(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value, stripped; None when unset or empty."""
    value = env.get(name, "").strip()
    return value or None


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    value = _optional_int(env, name, minimum)
    return default if value is None else value


def _optional_int(env: Mapping[str, str], name: str, minimum: int = 1) -> int | None:
    raw = _get(env, name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} is below {minimum}")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    raw = _get(env, name)
    if raw is None:
        return None
    value = raw.lower()
    if value not in allowed:
        raise ConfigError(f"{name}={raw!r} is not one of {', '.join(allowed)}")
    return value


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    if raw.lower() in _ON:
        return True
    if raw.lower() in _OFF:
        return False
    raise ConfigError(f"{name}={raw!r} is neither on ({', '.join(_ON)}) "
                      f"nor off ({', '.join(_OFF)})")


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in (_get(env, name) or "").split(",") if p.strip())


def parse_selector(text: str, name: str = "LSTM_K8S_GPU_NODE_SELECTOR") -> dict[str, str]:
    """``"a=1,b=2"`` -> ``{"a": "1", "b": "2"}`` (a Kubernetes node selector)."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"node selector item {part!r} is not key=value "
                              f"(set {name} like {DEFAULT_GPU_NODE_SELECTOR!r})")
        out[key.strip()] = value.strip()
    return out


def _setting_value(key: str, value: Any, default: Any) -> Any:
    """``value`` as the type of the setting's default (lenient with numbers written as strings)."""
    kind = type(default)
    bad = ConfigError(f"LSTM_SETTINGS: {key}={value!r} is not a {kind.__name__}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _ON + _OFF:
            return value.strip().lower() in _ON
        raise bad
    if isinstance(value, bool | list | dict) or value is None:
        raise bad
    if kind is str:
        if isinstance(value, str):
            return value
        raise bad
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise bad from None
    if kind is int:
        if not number.is_integer():
            raise bad
        return int(number)
    return number


def parse_settings(raw: str | None) -> dict[str, Any]:
    """``LSTM_SETTINGS`` (a JSON object) -> typed overrides of :class:`Settings`.

    Unknown keys, values of the wrong type and text that is not a JSON object are a
    :class:`ConfigError` naming ``LSTM_SETTINGS``.
    """
    from lstm_assets.core.settings import Settings  # stdlib-only; imported late, no cycle

    if not raw:
        return {}
    try:
        overrides = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"LSTM_SETTINGS is not valid JSON ({e}): {raw!r}") from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"LSTM_SETTINGS must be a JSON object like "
                          f'{{"max_epochs": 5}}, not {raw!r}')
    defaults = Settings().as_dict()
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ConfigError(f"LSTM_SETTINGS names unknown settings {unknown}; known: "
                          f"{', '.join(sorted(defaults))}")
    return {k: _setting_value(k, v, defaults[k]) for k, v in overrides.items()}


@dataclass(frozen=True)
class ProjectConfig:
    """The project's environment, parsed and checked (one field per variable of the table)."""

    # folders and the instance
    raw_dir: str = RAW_DIR
    warehouse_dir: str = WAREHOUSE_DIR
    truth_dir: str = TRUTH_DIR
    dagster_home: str | None = None
    instance: str = "local"
    max_concurrent_runs: int | None = None
    gpu_pool_limit: int | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    # pipeline settings and automation
    settings: Mapping[str, Any] = field(default_factory=dict)
    model_run_partitions: int = 500
    retrain_cron: str = "0 2 * * *"
    retrain_tz: str = "UTC"
    raw_sensor_interval: int = 30
    automation: bool = True
    # executors
    executor: str | None = None
    celery_broker: str | None = None
    celery_gpu_queue: str = "gpu"
    celery_cpu_queue: str = "cpu"
    k8s_namespace: str = "dagster"
    k8s_image: str | None = None
    k8s_max_concurrent: int = 8
    k8s_step_cpu: str = "1"
    k8s_step_memory: str = "2Gi"
    k8s_env_secrets: tuple[str, ...] = ()
    k8s_env_config_maps: tuple[str, ...] = ()
    k8s_gpus: int = 1
    k8s_gpu_node_selector: Mapping[str, str] = field(
        default_factory=lambda: parse_selector(DEFAULT_GPU_NODE_SELECTOR))
    k8s_gpu_image: str | None = None
    k8s_gpu_step_cpu: str | None = None
    k8s_gpu_step_memory: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProjectConfig:
        """The configuration from ``env`` (default: this process's environment)."""
        e: Mapping[str, str] = os.environ if env is None else env
        d = cls()

        def text(name: str, default: str) -> str:
            return _get(e, name) or default

        instance = _choice(e, "LSTM_INSTANCE", INSTANCES)
        return cls(
            raw_dir=text("LSTM_RAW_DIR", d.raw_dir),
            warehouse_dir=text("LSTM_WAREHOUSE_DIR", d.warehouse_dir),
            truth_dir=text("LSTM_TRUTH_DIR", d.truth_dir),
            dagster_home=_get(e, "DAGSTER_HOME"),
            instance=instance or ("postgres" if _get(e, "DAGSTER_PG_HOST") else "local"),
            max_concurrent_runs=_optional_int(e, "LSTM_MAX_CONCURRENT_RUNS"),
            gpu_pool_limit=_optional_int(e, "LSTM_GPU_POOL_LIMIT"),
            s3_endpoint=(_get(e, "LSTM_S3_ENDPOINT") or _get(e, "AWS_ENDPOINT_URL_S3")
                         or _get(e, "AWS_ENDPOINT_URL")),
            s3_region=_get(e, "AWS_REGION") or _get(e, "AWS_DEFAULT_REGION"),
            settings=parse_settings(_get(e, "LSTM_SETTINGS")),
            model_run_partitions=_int(e, "LSTM_MODEL_RUN_PARTITIONS", d.model_run_partitions),
            retrain_cron=text("LSTM_RETRAIN_CRON", d.retrain_cron),
            retrain_tz=text("LSTM_RETRAIN_TZ", d.retrain_tz),
            raw_sensor_interval=_int(e, "LSTM_RAW_SENSOR_INTERVAL", d.raw_sensor_interval),
            automation=_switch(e, "LSTM_AUTOMATION", d.automation),
            executor=_choice(e, "LSTM_EXECUTOR", EXECUTORS),
            celery_broker=_get(e, "LSTM_CELERY_BROKER"),
            celery_gpu_queue=text("LSTM_CELERY_GPU_QUEUE", d.celery_gpu_queue),
            celery_cpu_queue=text("LSTM_CELERY_CPU_QUEUE", d.celery_cpu_queue),
            k8s_namespace=text("LSTM_K8S_NAMESPACE", d.k8s_namespace),
            k8s_image=_get(e, "LSTM_K8S_IMAGE"),
            k8s_max_concurrent=_int(e, "LSTM_K8S_MAX_CONCURRENT", d.k8s_max_concurrent),
            k8s_step_cpu=text("LSTM_K8S_STEP_CPU", d.k8s_step_cpu),
            k8s_step_memory=text("LSTM_K8S_STEP_MEMORY", d.k8s_step_memory),
            k8s_env_secrets=_list(e, "LSTM_K8S_ENV_SECRETS"),
            k8s_env_config_maps=_list(e, "LSTM_K8S_ENV_CONFIG_MAPS"),
            k8s_gpus=_int(e, "LSTM_K8S_GPUS", d.k8s_gpus),
            k8s_gpu_node_selector=parse_selector(
                text("LSTM_K8S_GPU_NODE_SELECTOR", DEFAULT_GPU_NODE_SELECTOR)),
            k8s_gpu_image=_get(e, "LSTM_K8S_GPU_IMAGE"),
            k8s_gpu_step_cpu=_get(e, "LSTM_K8S_GPU_STEP_CPU"),
            k8s_gpu_step_memory=_get(e, "LSTM_K8S_GPU_STEP_MEMORY"),
        )


def export_env(values: Mapping[str, str]) -> None:
    """Set variables in this process's environment, for code that reads them later and for the
    processes it starts (the CLI's chosen folders, ``DAGSTER_HOME``)."""
    os.environ.update({k: str(v) for k, v in values.items()})


def child_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with ``overrides``: the environment of a child process."""
    return {**os.environ, **(overrides or {})}
