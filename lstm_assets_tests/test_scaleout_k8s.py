"""Kubernetes, at the pod-spec level: the k8s_job_executor's own step handler builds the Job.

No cluster: the instance has a K8sRunLauncher (as the Helm chart configures it) pointed at a
fake kubeconfig, and the Kubernetes API is a mock that records the Job body. The training step's
Job must ask for ``nvidia.com/gpu: 1`` on a GPU node (selector + toleration) with the project
image; a CPU step must not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.execution.api import create_execution_plan
from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import create_context_free_log_manager
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.init import InitExecutorContext
from dagster._core.executor.step_delegating import StepHandlerContext
from dagster._grpc.types import ExecuteStepArgs
from dagster_k8s import k8s_job_executor
from dagster_k8s.client import DagsterKubernetesClient
from dagster_k8s.executor import _K8S_EXECUTOR_CONFIG_SCHEMA

from lstm_assets import deploy

# the project chain mixes backfill policies on purpose (defs/jobs.py); Dagster warns each time
pytestmark = pytest.mark.filterwarnings("ignore:Asset job .* varying BackfillPolicies")
REPO = Path(__file__).resolve().parent.parent
IMAGE = "registry.example.com/lstm-assets:1.0"
GPU_IMAGE = "registry.example.com/lstm-assets:1.0-cuda"
GPU_SELECTOR = "cloud.google.com/gke-accelerator=nvidia-l4"
ENV = {"LSTM_EXECUTOR": "k8s", "LSTM_K8S_IMAGE": IMAGE, "LSTM_K8S_GPU_IMAGE": GPU_IMAGE,
       "LSTM_K8S_NAMESPACE": "lstm",
       "LSTM_K8S_GPU_NODE_SELECTOR": GPU_SELECTOR, "LSTM_K8S_ENV_CONFIG_MAPS": "lstm-env"}

KUBECONFIG = {
    "apiVersion": "v1", "kind": "Config", "current-context": "fake",
    "clusters": [{"name": "fake", "cluster": {"server": "https://127.0.0.1:6443"}}],
    "users": [{"name": "fake", "user": {"token": "fake"}}],
    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
}


def _launcher_config(kubeconfig: Path) -> dict[str, Any]:
    """The K8sRunLauncher block the Helm values produce (deploy/helm/values.yaml)."""
    values = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": {
        "instance_config_map": "dagster-instance", "dagster_home": "/opt/dagster/dagster_home",
        "postgres_password_secret": "dagster-postgresql-secret",
        "service_account_name": "dagster", "job_namespace": "lstm",
        "env_secrets": [s["name"] for s in k8s.get("envSecrets", [])],
        "env_config_maps": [c["name"] for c in k8s.get("envConfigMaps", [])],
        "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}}


def _step_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """step key -> the V1Job the k8s executor would create for it."""
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(KUBECONFIG))
    from lstm_assets_tests import scaleout_defs  # builds the job from the env set above

    recon = dg.reconstructable(scaleout_defs.k8s_chain_job)
    assert isinstance(recon, ReconstructableJob)
    job = recon.get_definition()
    assert job.executor_def.name == "k8s"
    cfg = process_config(resolve_to_config_type(_K8S_EXECUTOR_CONFIG_SCHEMA),
                         deploy.k8s_config())
    assert cfg.success, cfg.errors
    created: dict[str, Any] = {}
    with dg.instance_for_test(overrides={"run_launcher": _launcher_config(kubeconfig)}) as inst:
        executor = k8s_job_executor.executor_creation_fn(InitExecutorContext(  # type: ignore[misc]
            job=recon, executor_def=k8s_job_executor, executor_config=cfg.value, instance=inst))
        batch = mock.MagicMock()
        batch.create_namespaced_job.side_effect = (
            lambda body, namespace, **_: created.__setitem__(
                body.metadata.labels["dagster/op"], (namespace, body)))
        handler = executor._step_handler  # noqa: SLF001
        handler._api_client = DagsterKubernetesClient.production_client(  # noqa: SLF001
            batch_api_override=batch, core_api_override=mock.MagicMock())
        run = inst.create_run_for_job(job, tags={"dagster/partition": "SYN001"})
        plan = create_execution_plan(recon)
        plan_context = PlanOrchestrationContext(
            plan_data=PlanData(job=recon, dagster_run=run, instance=inst, execution_plan=plan,
                               raise_on_error=True, retry_mode=RetryMode.DISABLED),
            log_manager=create_context_free_log_manager(inst, run), executor=executor,
            output_capture=None)
        for step in plan.steps:
            args = ExecuteStepArgs(recon.get_python_origin(), run.run_id, [step.key],
                                   print_serialized_events=False)
            ctx = StepHandlerContext(instance=inst, plan_context=plan_context, steps=plan.steps,
                                     execute_step_args=args, dagster_run=run)
            list(handler.launch_step(ctx))
    return created


def test_k8s_training_step_pod_asks_for_a_gpu_node(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    created = _step_jobs(tmp_path, monkeypatch)
    from lstm_assets_tests.scaleout_defs import CHAIN_ASSETS, TRAINING_STEP

    assert set(created) == {a.op.name for a in CHAIN_ASSETS}
    namespace, body = created[TRAINING_STEP]
    assert namespace == "lstm"
    pod = body.spec.template.spec
    (container,) = pod.containers
    assert container.image == GPU_IMAGE  # the CUDA build, for this step only
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert container.resources.requests["nvidia.com/gpu"] == "1"
    assert pod.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in pod.tolerations)
    # the Dagster step command, with S3 credentials from the run launcher's secret (Helm
    # values) and the executor's config map (LSTM_K8S_ENV_CONFIG_MAPS)
    assert container.args[:3] == ["dagster", "api", "execute_step"]
    assert any(e.secret_ref and e.secret_ref.name == "lstm-s3" for e in container.env_from)
    assert any(e.config_map_ref and e.config_map_ref.name == "lstm-env"
               for e in container.env_from)
    assert body.metadata.labels["dagster/op"] == TRAINING_STEP


def test_k8s_cpu_steps_get_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    created = _step_jobs(tmp_path, monkeypatch)
    from lstm_assets_tests.scaleout_defs import TRAINING_STEP

    cpu_steps = {k: v for k, v in created.items() if k != TRAINING_STEP}
    assert cpu_steps
    for _, body in cpu_steps.values():
        pod = body.spec.template.spec
        (container,) = pod.containers
        assert container.image == IMAGE
        assert "nvidia.com/gpu" not in (container.resources.limits or {})
        assert container.resources.requests["cpu"] == "1"
        assert not pod.node_selector


def test_k8s_tags_and_selector_parsing() -> None:
    tags = deploy.training_op_tags({"LSTM_K8S_GPUS": "2",
                                    "LSTM_K8S_GPU_NODE_SELECTOR": "a=1, b=2"})
    cfg = json.loads(tags[deploy.K8S_CONFIG_TAG])
    assert cfg["container_config"]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert cfg["pod_spec_config"]["node_selector"] == {"a": "1", "b": "2"}
    assert tags[deploy.CELERY_QUEUE_TAG] == "gpu"
    with pytest.raises(ValueError, match="key=value"):
        deploy.parse_selector("novalue")
    assert deploy.executor_from_env({}) is None
    assert deploy.executor_from_env({}, default=dg.in_process_executor) is dg.in_process_executor
    assert deploy.executor_from_env({"LSTM_EXECUTOR": "multiprocess"}) is dg.multiprocess_executor
    assert deploy.executor_from_env({"LSTM_EXECUTOR": "in_process"}) is dg.in_process_executor
    with pytest.raises(ValueError, match="LSTM_CELERY_BROKER"):
        deploy.executor_from_env({"LSTM_EXECUTOR": "celery"})
    with pytest.raises(ValueError, match="not one of"):
        deploy.executor_name({"LSTM_EXECUTOR": "dask"})
    assert deploy.instance_variant({}) == "local"
    assert deploy.instance_variant({"DAGSTER_PG_HOST": "db"}) == "postgres"
    assert deploy.instance_template({"LSTM_INSTANCE": "postgres"}).exists()
