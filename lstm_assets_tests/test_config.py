"""``lstm_assets.core.config``: each environment variable, its default, its checks, one reader."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from lstm_assets.core import config
from lstm_assets.core.config import ConfigError, ProjectConfig

PACKAGE = Path(config.__file__).resolve().parent.parent


def test_defaults_when_the_environment_is_empty() -> None:
    cfg = ProjectConfig.from_env({})
    assert cfg == ProjectConfig()
    assert (cfg.raw_dir, cfg.warehouse_dir, cfg.truth_dir) == (
        "data/raw", "data/warehouse", "data/demo_truth")
    assert cfg.dagster_home is None and cfg.instance == "local"
    assert cfg.max_concurrent_runs is None and cfg.gpu_pool_limit is None  # auto
    assert cfg.settings == {} and cfg.model_run_partitions == 500
    assert (cfg.retrain_cron, cfg.retrain_tz, cfg.raw_sensor_interval) == ("0 2 * * *", "UTC", 30)
    assert cfg.automation is True and cfg.executor is None and cfg.celery_broker is None
    assert (cfg.celery_gpu_queue, cfg.celery_cpu_queue) == ("gpu", "cpu")
    assert cfg.k8s_gpu_node_selector == {"nvidia.com/gpu.present": "true"}
    assert cfg.s3_endpoint is None and cfg.s3_region is None
    # an empty or blank value counts as unset
    assert ProjectConfig.from_env({"LSTM_RAW_DIR": "", "LSTM_GPU_POOL_LIMIT": " "}) == cfg


OVERRIDES: list[tuple[str, str, str, Any]] = [
    ("LSTM_RAW_DIR", "/in", "raw_dir", "/in"),
    ("LSTM_WAREHOUSE_DIR", "s3://b/p", "warehouse_dir", "s3://b/p"),
    ("LSTM_TRUTH_DIR", "/truth", "truth_dir", "/truth"),
    ("DAGSTER_HOME", "/home/d", "dagster_home", "/home/d"),
    ("LSTM_INSTANCE", "Postgres", "instance", "postgres"),
    ("DAGSTER_PG_HOST", "db", "instance", "postgres"),
    ("LSTM_MAX_CONCURRENT_RUNS", "3", "max_concurrent_runs", 3),
    ("LSTM_GPU_POOL_LIMIT", "2", "gpu_pool_limit", 2),
    ("LSTM_S3_ENDPOINT", "http://s3:9000", "s3_endpoint", "http://s3:9000"),
    ("AWS_ENDPOINT_URL_S3", "http://s3:9001", "s3_endpoint", "http://s3:9001"),
    ("AWS_ENDPOINT_URL", "http://s3:9002", "s3_endpoint", "http://s3:9002"),
    ("AWS_REGION", "eu-west-1", "s3_region", "eu-west-1"),
    ("AWS_DEFAULT_REGION", "us-east-2", "s3_region", "us-east-2"),
    ("LSTM_SETTINGS", '{"max_epochs": 5, "device": "cpu", "learning_rate": 1}', "settings",
     {"max_epochs": 5, "device": "cpu", "learning_rate": 1.0}),
    ("LSTM_MODEL_RUN_PARTITIONS", "40", "model_run_partitions", 40),
    ("LSTM_RETRAIN_CRON", "30 3 * * 1-5", "retrain_cron", "30 3 * * 1-5"),
    ("LSTM_RETRAIN_TZ", "America/New_York", "retrain_tz", "America/New_York"),
    ("LSTM_RAW_SENSOR_INTERVAL", "5", "raw_sensor_interval", 5),
    ("LSTM_AUTOMATION", "off", "automation", False),
    ("LSTM_EXECUTOR", "K8S", "executor", "k8s"),
    ("LSTM_CELERY_BROKER", "redis://r:6379/0", "celery_broker", "redis://r:6379/0"),
    ("LSTM_CELERY_GPU_QUEUE", "g", "celery_gpu_queue", "g"),
    ("LSTM_CELERY_CPU_QUEUE", "c", "celery_cpu_queue", "c"),
    ("LSTM_K8S_NAMESPACE", "lstm", "k8s_namespace", "lstm"),
    ("LSTM_K8S_IMAGE", "img:1", "k8s_image", "img:1"),
    ("LSTM_K8S_MAX_CONCURRENT", "2", "k8s_max_concurrent", 2),
    ("LSTM_K8S_STEP_CPU", "500m", "k8s_step_cpu", "500m"),
    ("LSTM_K8S_STEP_MEMORY", "1Gi", "k8s_step_memory", "1Gi"),
    ("LSTM_K8S_ENV_SECRETS", "a, b,", "k8s_env_secrets", ("a", "b")),
    ("LSTM_K8S_ENV_CONFIG_MAPS", "env", "k8s_env_config_maps", ("env",)),
    ("LSTM_K8S_GPUS", "4", "k8s_gpus", 4),
    ("LSTM_K8S_GPU_NODE_SELECTOR", "a=1, b=2", "k8s_gpu_node_selector", {"a": "1", "b": "2"}),
    ("LSTM_K8S_GPU_IMAGE", "img:cuda", "k8s_gpu_image", "img:cuda"),
    ("LSTM_K8S_GPU_STEP_CPU", "4", "k8s_gpu_step_cpu", "4"),
    ("LSTM_K8S_GPU_STEP_MEMORY", "16Gi", "k8s_gpu_step_memory", "16Gi"),
]


@pytest.mark.parametrize(("name", "value", "attr", "expected"), OVERRIDES,
                         ids=[f"{o[0]}->{o[2]}" for o in OVERRIDES])
def test_each_variable_overrides_its_value(name: str, value: str, attr: str,
                                           expected: Any) -> None:
    assert getattr(ProjectConfig(), attr) != expected
    assert getattr(ProjectConfig.from_env({name: value}), attr) == expected


def test_the_process_environment_is_read_when_no_mapping_is_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSTM_WAREHOUSE_DIR", "/wh")
    monkeypatch.setenv("LSTM_GPU_POOL_LIMIT", "3")
    cfg = ProjectConfig.from_env()
    assert cfg.warehouse_dir == "/wh" and cfg.gpu_pool_limit == 3


def test_precedence_among_fallbacks() -> None:
    both = {"LSTM_S3_ENDPOINT": "http://a", "AWS_ENDPOINT_URL_S3": "http://b",
            "AWS_ENDPOINT_URL": "http://c", "AWS_REGION": "r1", "AWS_DEFAULT_REGION": "r2"}
    cfg = ProjectConfig.from_env(both)
    assert (cfg.s3_endpoint, cfg.s3_region) == ("http://a", "r1")
    assert ProjectConfig.from_env({"LSTM_INSTANCE": "local", "DAGSTER_PG_HOST": "db"}).instance \
        == "local"
    for on in ("on", "1", "TRUE", "yes", "running"):
        assert ProjectConfig.from_env({"LSTM_AUTOMATION": on}).automation
    for off in ("off", "0", "False", "no", "stopped"):
        assert not ProjectConfig.from_env({"LSTM_AUTOMATION": off}).automation


BAD: list[tuple[dict[str, str], str]] = [
    ({"LSTM_GPU_POOL_LIMIT": "two"}, r"LSTM_GPU_POOL_LIMIT='two' is not an integer"),
    ({"LSTM_GPU_POOL_LIMIT": "0"}, r"LSTM_GPU_POOL_LIMIT='0' is below 1"),
    ({"LSTM_MAX_CONCURRENT_RUNS": "1.5"}, r"LSTM_MAX_CONCURRENT_RUNS='1.5' is not an integer"),
    ({"LSTM_MODEL_RUN_PARTITIONS": "many"}, r"LSTM_MODEL_RUN_PARTITIONS"),
    ({"LSTM_RAW_SENSOR_INTERVAL": "-1"}, r"LSTM_RAW_SENSOR_INTERVAL"),
    ({"LSTM_K8S_GPUS": "all"}, r"LSTM_K8S_GPUS"),
    ({"LSTM_K8S_MAX_CONCURRENT": "x"}, r"LSTM_K8S_MAX_CONCURRENT"),
    ({"LSTM_AUTOMATION": "maybe"}, r"LSTM_AUTOMATION='maybe' is neither on"),
    ({"LSTM_EXECUTOR": "dask"}, r"LSTM_EXECUTOR='dask' is not one of"),
    ({"LSTM_INSTANCE": "mysql"}, r"LSTM_INSTANCE='mysql' is not one of local, postgres"),
    ({"LSTM_K8S_GPU_NODE_SELECTOR": "novalue"}, r"LSTM_K8S_GPU_NODE_SELECTOR"),
    ({"LSTM_SETTINGS": '{"max_epoch": 5}'},
     r"LSTM_SETTINGS names unknown settings \['max_epoch'\]"),
    ({"LSTM_SETTINGS": "{max_epochs: 5}"}, r"LSTM_SETTINGS is not valid JSON"),
    ({"LSTM_SETTINGS": "[1, 2]"}, r"LSTM_SETTINGS must be a JSON object"),
    ({"LSTM_SETTINGS": '{"max_epochs": 2.5}'}, r"LSTM_SETTINGS: max_epochs=2.5 is not a int"),
    ({"LSTM_SETTINGS": '{"device": 1}'}, r"LSTM_SETTINGS: device=1 is not a str"),
    ({"LSTM_SETTINGS": '{"class_weighted": "sometimes"}'}, r"LSTM_SETTINGS: class_weighted"),
]


@pytest.mark.parametrize(("env", "message"), BAD,
                         ids=[" ".join(f"{k}={v}" for k, v in b[0].items()) for b in BAD])
def test_a_bad_value_is_an_error_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ProjectConfig.from_env(env)
    assert issubclass(ConfigError, ValueError)


def test_the_cli_reports_a_bad_variable_without_a_traceback(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from lstm_assets import cli

    monkeypatch.setenv("LSTM_GPU_POOL_LIMIT", "two")
    with pytest.raises(SystemExit, match="lstm-assets: LSTM_GPU_POOL_LIMIT='two'"):
        cli.main(["signals", "--help"])


def test_the_dagster_layer_reads_through_config(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    from lstm_assets import instance
    from lstm_assets.defs import automation
    from lstm_assets.defs.resources import default_paths, settings_from_env

    monkeypatch.setenv("LSTM_RAW_DIR", str(tmp_path / "raw"))
    monkeypatch.setenv("LSTM_SETTINGS", '{"max_epochs": 3}')
    monkeypatch.setenv("LSTM_GPU_POOL_LIMIT", "2")
    monkeypatch.setenv("LSTM_MAX_CONCURRENT_RUNS", "5")
    monkeypatch.setenv("LSTM_AUTOMATION", "off")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert default_paths().raw_dir == str(tmp_path / "raw")
    assert default_paths().warehouse_dir == config.WAREHOUSE_DIR
    assert settings_from_env().max_epochs == 3
    assert instance.gpu_pool_limit() == 2 and instance.machine_run_limit() == 5
    assert not automation.automation_on()
    assert instance.ensure_dagster_home() == tmp_path / "home"
    monkeypatch.setenv("LSTM_SETTINGS", '{"epochs": 3}')
    with pytest.raises(ConfigError, match="LSTM_SETTINGS names unknown settings"):
        settings_from_env()


def test_export_env_and_child_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSTM_TRUTH_DIR", "/before")
    config.export_env({"LSTM_TRUTH_DIR": "/after"})
    assert ProjectConfig.from_env().truth_dir == "/after"
    child = config.child_env({"LSTM_AUTOMATION": "off"})
    assert child["LSTM_TRUTH_DIR"] == "/after" and child["LSTM_AUTOMATION"] == "off"
    assert ProjectConfig.from_env(child).automation is False


# ---- one reader --------------------------------------------------------------------------------

_NAME = r"""f?["'](?:LSTM_|DAGSTER_)"""
READS = [
    re.compile(r"\b(?:os\.)?(?:environ\.get|getenv|environ\.setdefault|environ\.pop)\(\s*" + _NAME),
    # a subscript that is not the target of an assignment (``os.environ["X"] = v`` is a write)
    re.compile(r"\benviron\[\s*" + _NAME + r"[^\]]*\](?!\s*=[^=])"),
]


def _reads(text: str) -> list[str]:
    return [m.group(0) for rx in READS for m in rx.finditer(text)]


def test_the_patterns_catch_reads_and_allow_writes() -> None:
    assert _reads('x = os.environ.get("LSTM_RAW_DIR", "data/raw")')
    assert _reads("x = os.getenv('DAGSTER_HOME')")
    assert _reads('print(os.environ["DAGSTER_HOME"])')
    assert _reads('if os.environ["LSTM_X"] == "1": pass')
    assert not _reads('os.environ["LSTM_RAW_DIR"] = str(raw)')
    assert not _reads('os.environ.get("PYTHONPATH")')


def test_only_config_reads_project_variables() -> None:
    """No module but core/config.py reads an ``LSTM_*`` / ``DAGSTER_*`` variable itself."""
    own = Path(config.__file__).resolve()
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.resolve() == own:
            continue
        hits = _reads(path.read_text())
        if hits:
            found[str(path.relative_to(PACKAGE.parent))] = hits
    assert not found, f"read these through lstm_assets.core.config.ProjectConfig: {found}"


def test_every_variable_named_in_the_package_is_in_the_reference_table() -> None:
    doc = config.__doc__ or ""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        names |= set(re.findall(r"\b(?:LSTM|DAGSTER)_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    names -= set(vars(config))  # constants such as DAGSTER_HOME_DIR
    missing = sorted(n for n in names if f"``{n}``" not in doc)
    assert not missing, f"add to the table in lstm_assets/core/config.py: {missing}"


def test_config_imports_only_the_standard_library() -> None:
    import subprocess
    import sys

    code = ("import sys; import lstm_assets.core.config as c; c.ProjectConfig.from_env("
            "{'LSTM_SETTINGS': '{\"max_epochs\": 1}'}); "
            "bad = [m for m in ('dagster', 'torch', 'pandas', 'numpy', 'pydantic') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_gpu_pool_limit_unset_is_what_the_training_device_runs_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``LSTM_GPU_POOL_LIMIT``: one training step per core on a CPU (a fit uses
    ``num_threads`` cores), one on a GPU (a step there trains many symbols together)."""
    import os

    from lstm_assets import instance
    from lstm_assets.core.settings import Settings
    from lstm_assets.core.train import parallel_fits

    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("LSTM_GPU_POOL_LIMIT", raising=False)
    monkeypatch.setenv("LSTM_SETTINGS", '{"device": "cpu"}')
    assert instance.gpu_pool_limit() == cores
    monkeypatch.setenv("LSTM_SETTINGS", '{"device": "cpu", "num_threads": 2}')
    assert instance.gpu_pool_limit() == max(1, cores // 2)
    assert parallel_fits(Settings(device="cpu", num_threads=0)) == 1
