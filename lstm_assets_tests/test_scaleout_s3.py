"""S3: the warehouse on ``s3://bucket/prefix`` against a local moto_server (127.0.0.1, free port).

Credentials and endpoint come from the environment, as in a deployment. The chain runs for one
symbol with every artifact in the bucket (nothing written locally), then the model is read back
from S3 alone and its predictions match the ones the evaluation stored.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import torch

from lstm_assets.core import storage
from lstm_assets.core.demo import DemoSpec, generate
from lstm_assets.core.model import LoadedModel
from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.settings import CLASSES
from lstm_assets.core.stages import Layout, reload_and_predict, run_leaderboard
from lstm_assets.defs.resources import PathsResource
from lstm_assets_tests.services import moto_server

# the project chain mixes backfill policies on purpose (defs/jobs.py); Dagster warns each time
pytestmark = pytest.mark.filterwarnings("ignore:Asset job .* varying BackfillPolicies")
BUCKET = "lstm-artifacts"
PREFIX = "team/warehouse"
SYM = "SYN001"


@pytest.fixture
def s3_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 endpoint with one bucket; AWS_* / LSTM_S3_ENDPOINT set as a deployment would."""
    with moto_server(tmp_path / "moto") as endpoint:
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1", "LSTM_S3_ENDPOINT": endpoint,
                     "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                     "AWS_CONFIG_FILE": str(tmp_path / "none")}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint


def _keys(endpoint: str) -> set[str]:
    import boto3

    out = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)
    return {o["Key"][len(PREFIX) + 1:] for o in out.get("Contents", [])}


def test_s3_storage_helpers_roundtrip_and_keep_old_object_on_failed_write(s3_env: str) -> None:
    wh = storage.Warehouse(f"s3://{BUCKET}/{PREFIX}")
    assert wh.remote and not isinstance(wh.base, Path)
    target = wh.report("ABC", ".json")
    storage.write_json(target, {"a": 1, "nan": float("nan")})
    assert storage.read_json(target) == {"a": 1, "nan": None}
    assert storage.exists(target) and storage.file_size(target) > 0
    # a write that dies half-way uploads nothing: the previous object stays
    with pytest.raises(RuntimeError), storage.atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("killed")
    assert storage.read_json(target) == {"a": 1, "nan": None}
    # torch checkpoints: saved through atomic_path, loaded weights-only from a local copy
    ck = wh.checkpoint("ABC")
    with storage.atomic_path(ck) as tmp:
        torch.save({"w": torch.arange(3)}, tmp)
    with storage.local_file(ck) as local:
        assert torch.equal(torch.load(local, weights_only=True)["w"], torch.arange(3))
    storage.remove(ck)
    assert not storage.exists(ck)
    assert wh.report_symbols() == ["ABC"]
    assert {"evaluation_report/ABC.json"} == _keys(s3_env)
    with pytest.raises(storage.InputError):
        wh.model("../x")


def test_s3_local_paths_unchanged_and_work_without_s3_libraries(tmp_path: Path) -> None:
    wh = storage.Warehouse(tmp_path / "wh")
    assert isinstance(wh.base, Path) and not wh.remote
    assert isinstance(storage.as_path("file:///tmp/x"), Path)
    assert isinstance(storage.as_path("data/warehouse"), Path)
    # local use never imports upath/s3fs (the core runs without the scale-out extra)
    code = ("import sys; sys.modules['upath'] = None; sys.modules['s3fs'] = None\n"
            "from lstm_assets.core import storage as s\n"
            f"w = s.Warehouse({str(tmp_path / 'wh2')!r}); s.write_json(w.report('A'), {{'x': 1}})\n"
            "assert s.read_json(w.report('A')) == {'x': 1} and w.report_symbols() == ['A']\n"
            "try:\n    s.Warehouse('s3://b/p')\nexcept ImportError as e:\n"
            "    assert 'scaleout' in str(e)\nelse:\n    raise SystemExit('no ImportError')\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120,
                   cwd=Path(__file__).resolve().parent.parent)


def test_s3_chain_one_symbol_then_model_read_back_from_s3(
        s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lstm_assets_tests.scaleout_defs import CHAIN, CHAIN_ASSETS, tiny_settings

    raw = tmp_path / "raw"
    generate(raw, DemoSpec(symbols=2, years=4, seed=9, defect_share=0.0))
    url = f"s3://{BUCKET}/{PREFIX}"
    monkeypatch.chdir(tmp_path)  # so a path mistake would show up as a local "s3:" folder
    paths = PathsResource(raw_dir=str(raw), warehouse_dir=url,
                          truth_dir=str(tmp_path / "demo_truth"))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", [SYM])
        res = dg.materialize(CHAIN_ASSETS, partition_key=SYM, instance=instance,
                             resources={"settings": tiny_settings(), "paths": paths})
        assert res.success
        mats = {m.asset_key.to_user_string() for m in res.get_asset_materialization_events()}
        assert set(CHAIN) <= mats
    keys = _keys(s3_env)
    expected = {f"clean_frames/{SYM}.parquet", f"sequence_tensors/{SYM}.npz",
                f"lstm_model/{SYM}.safetensors", f"lstm_model/{SYM}.json",
                f"evaluation_report/{SYM}.json", f"evaluation_report/{SYM}.md",
                f"evaluation_report/{SYM}.png", f"evaluation_report/{SYM}.predictions.parquet"}
    assert expected <= keys, keys
    assert not any(k.startswith("checkpoints/") for k in keys)  # removed after training
    assert not (tmp_path / "s3:").exists() and not (tmp_path / "data").exists()

    # the model, read back from S3 alone, reproduces the stored test predictions
    wh = storage.Warehouse(url)
    model = LoadedModel.load(wh.model(SYM))
    seq = SequenceSet.load(wh.sequences(SYM))
    assert model.config["features"] == seq.features and model.lookback == 10
    proba = model.predict_proba(seq.X, seq.end_rows("test"))
    stored = storage.read_parquet(wh.report(SYM, ".predictions.parquet"))
    cols = [f"p_{c.lower()}" for c in CLASSES]
    np.testing.assert_allclose(proba, stored[cols].to_numpy(), rtol=1e-5, atol=1e-6)
    layout = Layout.from_dirs(raw, url, tmp_path / "demo_truth")
    np.testing.assert_allclose(reload_and_predict(layout, SYM), proba, rtol=1e-5, atol=1e-6)
    board = run_leaderboard(layout)
    assert [r["symbol"] for r in board["rows"]] == [SYM]
    assert storage.read_text(wh.leaderboard(".md")).count(f"| {SYM}") == 1
    assert os.environ["LSTM_S3_ENDPOINT"] == s3_env
