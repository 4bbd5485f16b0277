"""The asset chain. Each body calls one core stage and attaches its metadata."""


import base64
import contextlib
from collections.abc import Iterator
from typing import Any

import dagster as dg

from lstm_assets.core import pipeline
from lstm_assets.core.report import leaderboard_markdown, markdown
from lstm_assets.core.storage import InputError
from lstm_assets.defs.resources import LstmSettings, PathsResource

symbols_partitions = dg.DynamicPartitionsDefinition(name="symbols")


@contextlib.contextmanager
def symbol_errors(symbol: str) -> Iterator[None]:
    """Bad input fails this symbol's partition with file, problem and fix; no retry."""
    try:
        yield
    except InputError as e:
        raise dg.Failure(
            description=f"[{symbol}] {e}",
            metadata={"file": str(e.path), "problem": e.problem, "fix": e.fix},
            allow_retries=False,
        ) from e


def to_metadata(d: dict[str, Any]) -> dict[str, Any]:
    """Plain values stay plain (Dagster types them); nested ones become JSON; paths are paths."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k.startswith("_") or k == "history":
            continue
        if k == "path" or k == "file":
            out[k] = dg.MetadataValue.path(str(v))
        elif isinstance(v, dict | list):
            out[k] = dg.MetadataValue.json(v)
        elif v is None:
            out[k] = dg.MetadataValue.null()
        else:
            out[k] = v
    return out


@dg.asset(partitions_def=symbols_partitions, group_name="data", kinds={"pandas"})
def raw_features(context: dg.AssetExecutionContext, paths: PathsResource) -> dg.MaterializeResult:
    """The symbol's raw file, read and validated: rows, dates, columns and defects found."""
    sym = context.partition_key
    with symbol_errors(sym):
        meta = pipeline.run_raw(paths.layout(), sym)
    return dg.MaterializeResult(metadata=to_metadata(meta),
                                data_version=dg.DataVersion(meta["content_hash"]))


@dg.asset(partitions_def=symbols_partitions, group_name="data", deps=[raw_features],
          kinds={"parquet"})
def clean_frames(context: dg.AssetExecutionContext, paths: PathsResource,
                 settings: LstmSettings) -> dg.MaterializeResult:
    """One row per trading day, numeric, no NaN/inf, technical features, UP/DOWN/FLAT label."""
    sym = context.partition_key
    with symbol_errors(sym):
        meta = pipeline.run_clean(paths.layout(), sym, settings.to_core())
    return dg.MaterializeResult(metadata=to_metadata(meta))


@dg.asset(partitions_def=symbols_partitions, group_name="data", deps=[clean_frames],
          kinds={"numpy"})
def sequence_tensors(context: dg.AssetExecutionContext, paths: PathsResource,
                     settings: LstmSettings) -> dg.MaterializeResult:
    """Scaled 2-D float32 matrix + labels + chronological split bounds (train-only scaler)."""
    sym = context.partition_key
    with symbol_errors(sym):
        meta = pipeline.run_sequences(paths.layout(), sym, settings.to_core())
    return dg.MaterializeResult(metadata=to_metadata(meta))


@dg.asset(partitions_def=symbols_partitions, group_name="model", deps=[sequence_tensors],
          pool="gpu", kinds={"pytorch"})
def lstm_model(context: dg.AssetExecutionContext, paths: PathsResource,
               settings: LstmSettings) -> dg.MaterializeResult:
    """The symbol's trained LSTM (safetensors weights + JSON config; no pickle)."""
    sym = context.partition_key

    def progress(row: dict[str, float]) -> None:
        context.log.info(
            f"[{sym}] epoch {int(row['epoch'])}: train_loss {row['train_loss']:.4f} "
            f"val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.3f} "
            f"lr {row['lr']:.2g} ({row['seconds']:.1f}s)")

    with symbol_errors(sym):
        meta = pipeline.run_train(paths.layout(), sym, settings.to_core(), on_epoch=progress)
    return dg.MaterializeResult(metadata=to_metadata(meta))


@dg.asset(partitions_def=symbols_partitions, group_name="evaluation", deps=[lstm_model],
          kinds={"markdown"})
def evaluation_report(context: dg.AssetExecutionContext, paths: PathsResource,
                      settings: LstmSettings) -> dg.MaterializeResult:
    """Test-split metrics of the model beside baselines (and the oracle on demo data)."""
    sym = context.partition_key
    with symbol_errors(sym):
        rep = pipeline.run_evaluate(paths.layout(), sym, settings.to_core())
    png = rep.pop("_png")
    m = rep["model"]
    meta = {
        "report": dg.MetadataValue.md(markdown(rep, png=png)),
        "accuracy": m["accuracy"],
        "balanced_accuracy": m["balanced_accuracy"],
        "macro_f1": m["macro_f1"],
        "log_loss": m["log_loss"],
        "majority_accuracy": rep["baselines"]["majority"]["accuracy"],
        "best_baseline": rep["best_baseline"],
        "edge_vs_best_baseline": rep["edge_over_best_baseline"]["accuracy_diff"],
        "significant_edge": rep["significant_edge"],
        "oracle_accuracy": (rep["oracle"] or {}).get("expected_accuracy"),
        "path": paths.layout().warehouse.report(sym, ".json"),
        "plots_png_bytes": len(base64.b64encode(png)),
    }
    return dg.MaterializeResult(metadata=to_metadata(meta))


@dg.asset_check(asset=evaluation_report, partitions_def=symbols_partitions,
                description="Warns when the model does not beat the majority-class baseline.")
def beats_majority_baseline(context: dg.AssetCheckExecutionContext,
                            paths: PathsResource) -> dg.AssetCheckResult:
    from lstm_assets.core.storage import read_json

    sym = context.partition_key
    rep = read_json(paths.layout().warehouse.report(sym, ".json"))
    acc, maj = rep["model"]["accuracy"], rep["baselines"]["majority"]["accuracy"]
    return dg.AssetCheckResult(
        passed=acc > maj,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"model_accuracy": acc, "majority_accuracy": maj},
        description=None if acc > maj else f"{sym}: model {acc:.3f} <= majority {maj:.3f}",
    )


@dg.asset(group_name="evaluation", deps=[evaluation_report], kinds={"markdown"})
def leaderboard(paths: PathsResource) -> dg.MaterializeResult:
    """All symbols' test results side by side, means with 95% intervals across symbols."""
    summary = pipeline.run_leaderboard(paths.layout())
    mean = summary.get("mean", {})
    return dg.MaterializeResult(metadata={
        "leaderboard": dg.MetadataValue.md(leaderboard_markdown(summary)),
        "symbols": summary["symbols"],
        "significant_wins": summary.get("significant_wins", 0),
        "mean_model_accuracy": (mean.get("model_accuracy") or {}).get("mean"),
        "mean_majority_accuracy": (mean.get("majority_accuracy") or {}).get("mean"),
        "path": dg.MetadataValue.path(str(paths.layout().warehouse.leaderboard(".md"))),
    })
