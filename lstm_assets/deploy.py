"""Deployment choices made by environment variables: the executor, the instance YAML, GPU routing.

The same code runs on a laptop, against a shared Postgres instance, on Celery workers or on
Kubernetes; only the environment differs (see docs/deploy.md).

The variables are read and checked by :class:`lstm_assets.core.config.ProjectConfig` (their
defaults are listed there); each function here takes an optional ``env`` mapping in place of the
process environment.

``LSTM_EXECUTOR``
    unset                     the code location's default (``executor_from_env(default=...)``).
    ``in_process``            every step in the run process.
    ``multiprocess``          one process per step, on the machine of the run.
    ``celery``                dagster-celery: steps become Celery tasks on a broker
                              (``LSTM_CELERY_BROKER``, e.g. ``redis://host:6379/0``, which also
                              keeps the results). The training step goes to queue ``gpu``
                              (``LSTM_CELERY_GPU_QUEUE``), the rest to ``cpu``
                              (``LSTM_CELERY_CPU_QUEUE``). Workers: deploy/celery/worker.yaml.
    ``k8s``                   dagster-k8s: one Kubernetes Job per step; the training step asks for
                              ``nvidia.com/gpu`` (``LSTM_K8S_GPUS``, default 1) on nodes matching
                              ``LSTM_K8S_GPU_NODE_SELECTOR`` (``key=value[,key=value]``, default
                              ``nvidia.com/gpu.present=true``), optionally in another image
                              (``LSTM_K8S_GPU_IMAGE``, e.g. the CUDA build).

``LSTM_INSTANCE``
    unset / ``local``   ``dagster_home_template/dagster.yaml`` (SQLite under DAGSTER_HOME).
    ``postgres``        ``deploy/postgres/dagster.yaml`` (credentials from ``DAGSTER_PG_*``).
    If unset but ``DAGSTER_PG_HOST`` is set, ``postgres`` is chosen.

Routing needs the training op to carry :func:`training_op_tags`: either pass
``op_tags=training_op_tags()`` to its ``@dg.asset`` or wrap the asset with :func:`route_training`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from lstm_assets.core.config import ProjectConfig
from lstm_assets.core.config import parse_selector as parse_selector  # part of this interface
from lstm_assets.core.storage import write_text

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = ROOT / "deploy"
LOCAL_TEMPLATE = ROOT / "dagster_home_template" / "dagster.yaml"
INSTANCE_VARIANTS: dict[str, Path] = {
    "local": LOCAL_TEMPLATE,
    "postgres": DEPLOY_DIR / "postgres" / "dagster.yaml",
}

TRAINING_ASSET = "lstm_model"
CELERY_QUEUE_TAG = "dagster-celery/queue"  # read by dagster_celery for each step
K8S_CONFIG_TAG = "dagster-k8s/config"  # read by dagster_k8s for each step's Job/Pod
GPU_RESOURCE = "nvidia.com/gpu"

Env = Mapping[str, str]


def _config(env: Env | None) -> ProjectConfig:
    return ProjectConfig.from_env(env)


def gpu_queue(env: Env | None = None) -> str:
    """The Celery queue that training steps are sent to (workers on GPU machines consume it)."""
    return _config(env).celery_gpu_queue


def cpu_queue(env: Env | None = None) -> str:
    """The Celery queue for every other step (Celery's ``task_default_queue``)."""
    return _config(env).celery_cpu_queue


def gpu_k8s_config(env: Env | None = None) -> dict[str, Any]:
    """The ``dagster-k8s/config`` value for the training step: a GPU, a GPU node, its taint."""
    cfg = _config(env)
    gpus = str(cfg.k8s_gpus)
    resources: dict[str, dict[str, str]] = {
        "requests": {GPU_RESOURCE: gpus}, "limits": {GPU_RESOURCE: gpus}}
    for kind, value in (("cpu", cfg.k8s_gpu_step_cpu), ("memory", cfg.k8s_gpu_step_memory)):
        if value:
            resources["requests"][kind] = value
    container: dict[str, Any] = {"resources": resources}
    if cfg.k8s_gpu_image:  # e.g. the CUDA build of the image, for this step only
        container["image"] = cfg.k8s_gpu_image
    return {
        "container_config": container,
        "pod_spec_config": {
            "node_selector": dict(cfg.k8s_gpu_node_selector),
            # GPU node pools are usually tainted so that only GPU pods land there
            "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
        },
    }


def training_op_tags(env: Env | None = None) -> dict[str, str]:
    """Op tags of the training step: Celery queue ``gpu`` and a GPU pod on Kubernetes.

    Harmless under the other executors (each executor reads only its own tag).
    """
    return {CELERY_QUEUE_TAG: gpu_queue(env), K8S_CONFIG_TAG: json.dumps(gpu_k8s_config(env))}


def with_op_tags(asset: dg.AssetsDefinition, tags: Mapping[str, str]) -> dg.AssetsDefinition:
    """A copy of ``asset`` whose op carries ``tags`` too (for assets defined without op_tags)."""
    op = asset.op
    # the public ``with_attributes`` cannot change op tags; rebuild the op as Dagster does in
    # ``OpDefinition.with_replaced_properties`` (same compute fn, ins, outs, pool, retry policy)
    new_op = dg.OpDefinition.dagster_internal_init(
        compute_fn=op.compute_fn, name=op.name,
        ins={i.name: dg.In.from_definition(i) for i in op.input_defs},
        outs={o.name: dg.Out.from_definition(o) for o in op.output_defs},
        description=op.description, config_schema=op.config_schema,
        required_resource_keys=op.required_resource_keys, tags={**op.tags, **tags},
        version=None, retry_policy=op.retry_policy,
        code_version=op._version,  # noqa: SLF001 (the public ``version`` property warns)
        pool=op.pool,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "execution_type is beta": we pass the asset's own
        return dg.AssetsDefinition(**{**asset.get_attributes_dict(), "node_def": new_op})


def computes_training(asset: dg.AssetsDefinition) -> bool:
    """True for the asset (or multi-asset) whose op trains the model (``lstm_model``)."""
    return TRAINING_ASSET in {k.to_user_string() for k in asset.keys}


def training_op_name(assets: Sequence[dg.AssetsDefinition]) -> str:
    """The op (= step key in a run) that computes ``lstm_model``."""
    names = {a.op.name for a in assets if computes_training(a)}
    if len(names) != 1:
        raise ValueError(f"expected one op computing {TRAINING_ASSET}, found {sorted(names)}")
    return names.pop()


def route_training(assets: Sequence[dg.AssetsDefinition],
                   env: Env | None = None) -> list[dg.AssetsDefinition]:
    """``assets`` (duplicates dropped) with the training op tagged by :func:`training_op_tags`."""
    tags = training_op_tags(env)
    out: list[dg.AssetsDefinition] = []
    for a in dict.fromkeys(assets):  # a multi-asset may be listed once per asset it computes
        tagged = all(a.op.tags.get(k) == v for k, v in tags.items())
        out.append(with_op_tags(a, tags) if computes_training(a) and not tagged else a)
    return out


def celery_config(env: Env | None = None) -> dict[str, Any]:
    """dagster-celery executor config: broker/backend from the environment, queue ``cpu``."""
    if not _config(env).celery_broker:
        raise ValueError("LSTM_EXECUTOR=celery needs LSTM_CELERY_BROKER "
                         "(e.g. redis://redis-host:6379/0); see docs/deploy.md")
    return {
        # read when the run starts, so a password in the URL never shows in the UI; the broker
        # (Redis) also holds the results, as in deploy/celery/worker.yaml for the workers
        "broker": {"env": "LSTM_CELERY_BROKER"},
        "backend": {"env": "LSTM_CELERY_BROKER"},
        "config_source": {
            "task_default_queue": cpu_queue(env),
            "worker_prefetch_multiplier": 1,  # a training task is long: do not hoard them
            "task_acks_late": True,  # a task whose worker dies is redelivered
        },
    }


def k8s_config(env: Env | None = None) -> dict[str, Any]:
    """k8s_job_executor config: namespace, image (when not taken from the code location), CPU."""
    c = _config(env)
    cfg: dict[str, Any] = {
        "job_namespace": c.k8s_namespace,
        "max_concurrent": c.k8s_max_concurrent,
        "step_k8s_config": {"container_config": {"resources": {"requests": {
            "cpu": c.k8s_step_cpu, "memory": c.k8s_step_memory}}}},
        "env_secrets": list(c.k8s_env_secrets),
        "env_config_maps": list(c.k8s_env_config_maps),
    }
    if c.k8s_image:
        cfg["job_image"] = c.k8s_image
    return cfg


def executor_name(env: Env | None = None) -> str | None:
    """``LSTM_EXECUTOR``, one of ``core.config.EXECUTORS`` (None when unset)."""
    return _config(env).executor


def executor_from_env(env: Env | None = None,
                      default: dg.ExecutorDefinition | None = None) -> dg.ExecutorDefinition | None:
    """The executor chosen by ``LSTM_EXECUTOR``; ``default`` when it is unset.

    ``celery`` and ``k8s`` need their extras (dagster-celery / dagster-k8s) and a persistent
    instance shared by every worker (deploy/postgres/dagster.yaml, or the Helm chart's).
    """
    name = executor_name(env)
    if name is None:
        return default
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_config(env), name="celery")
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured(k8s_config(env), name="k8s")


def instance_variant(env: Env | None = None) -> str:
    """``LSTM_INSTANCE``, else ``postgres`` when ``DAGSTER_PG_HOST`` is set, else ``local``."""
    return _config(env).instance


def instance_template(env: Env | None = None) -> Path:
    """The dagster.yaml to copy into DAGSTER_HOME for the chosen instance variant."""
    return INSTANCE_VARIANTS[instance_variant(env)]


def write_instance_yaml(home: str | Path, env: Env | None = None,
                        overwrite: bool | None = None) -> Path:
    """Copy the chosen variant to ``home/dagster.yaml``.

    A non-local variant always replaces the file (the environment asked for it); the local
    template is written only when there is no dagster.yaml yet (a user's edits are kept).
    """
    target = Path(home) / "dagster.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    variant = instance_variant(env)
    if overwrite is None:
        overwrite = variant != "local"
    if overwrite or not target.exists():
        write_text(target, INSTANCE_VARIANTS[variant].read_text())
    return target
