"""The pipeline's stages, one module each, per symbol: read inputs from the warehouse, compute,
write atomically, return the metadata the asset shows. The Dagster assets call these; so do the
CLI and the benchmark (no Dagster needed, e.g. on a GPU box).

- :mod:`.data`: raw file -> clean frame (features, labels) -> scaled sequences
- :mod:`.training`: the retrain policy (cold / warm / skip) and the model step
- :mod:`.evaluation`: the per-symbol report and the leaderboard
- :mod:`.comparison`: model families side by side over all symbols (``core/research/``), and
  the pooled model that can serve the signals
- :mod:`.checks`: data-quality, drift and freshness checks
- :mod:`.layout`: where the files are
"""

from __future__ import annotations

import time
from typing import Any

from lstm_assets.core.settings import Settings
from lstm_assets.core.stages.checks import (
    check_clean_frame,
    check_drift,
    check_model_freshness,
    check_raw_freshness,
    check_sequences,
)
from lstm_assets.core.stages.comparison import ASSET as COMPARISON_ASSET
from lstm_assets.core.stages.comparison import run_comparison, run_pooled_model
from lstm_assets.core.stages.data import run_clean, run_raw, run_sequences
from lstm_assets.core.stages.evaluation import reload_and_predict, run_evaluate, run_leaderboard
from lstm_assets.core.stages.layout import Layout, file_hash
from lstm_assets.core.stages.training import (
    plan_training,
    run_train,
    run_train_many,
    stacks_symbols,
)

__all__ = [
    "COMPARISON_ASSET", "Layout", "check_clean_frame", "check_drift", "check_model_freshness",
    "check_raw_freshness", "check_sequences",
    "file_hash", "plan_training", "reload_and_predict", "run_clean", "run_comparison",
    "run_pooled_model",
    "run_evaluate", "run_leaderboard", "run_raw", "run_sequences", "run_symbol", "run_train",
    "run_train_many", "stacks_symbols",
]


def run_symbol(layout: Layout, symbol: str, settings: Settings) -> dict[str, Any]:
    """All per-symbol stages in order (no Dagster). Returns each stage's metadata."""
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    out["raw"] = run_raw(layout, symbol, settings)
    out["clean"] = run_clean(layout, symbol, settings)
    out["sequences"] = run_sequences(layout, symbol, settings)
    out["model"] = run_train(layout, symbol, settings)
    out["report"] = run_evaluate(layout, symbol, settings)
    out["seconds"] = time.perf_counter() - t0
    return out
