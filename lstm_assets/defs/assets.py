"""The asset graph. Per-symbol assets are computed by two multi-asset steps:

- ``symbol_data``: raw_features -> clean_frames -> sequence_tensors (CPU, light), with the raw
  freshness check and the blocking data-quality checks;
- ``symbol_model``: lstm_model -> evaluation_report (pool ``gpu``), with the baseline check;

then ``leaderboard`` and ``latest_signals`` over all symbols. Both steps accept a range of
partitions (a backfill of 164 symbols is one data run and one model run, not 164 of each) and
fail per symbol (see ``defs/ranges.py``). The two steps have different backfill policies on
purpose: a symbol whose data failed then never shares a run with the models of the good ones.
Each stage is one core call; the metadata is built here.
"""


import base64
from typing import Any

import dagster as dg

from lstm_assets import deploy
from lstm_assets.core import stages
from lstm_assets.core.config import ProjectConfig
from lstm_assets.core.lifecycle.outcomes import run_outcomes, scorecard_markdown
from lstm_assets.core.report import leaderboard_markdown, markdown
from lstm_assets.core.research.compare import DEFAULT_FAMILIES, CompareSpec
from lstm_assets.core.research.report import markdown as comparison_markdown
from lstm_assets.core.research.report import verdict
from lstm_assets.core.settings import parse_overrides
from lstm_assets.core.signals import latest_signals as compute_signals
from lstm_assets.core.signals import signals_markdown
from lstm_assets.core.storage import read_json
from lstm_assets.defs.ranges import Check, Stage, run_stages, to_metadata
from lstm_assets.defs.resources import LstmSettings, PathsResource

symbols_partitions = dg.DynamicPartitionsDefinition(name="symbols")

# Upstream one run for the whole range, downstream runs of up to N symbols: different policies,
# so the backfill daemon never puts a failed symbol's data and the good symbols' models in one run.
DATA_BACKFILL_POLICY = dg.BackfillPolicy.single_run()
MODEL_BACKFILL_POLICY = dg.BackfillPolicy.multi_run(
    max_partitions_per_run=ProjectConfig.from_env().model_run_partitions)

# After symbols change (a backfill, the nightly retrain, a new file), once nothing upstream is
# still running: the cross-symbol assets follow by themselves (automation sensor in defs/jobs).
AFTER_SYMBOL_UPDATES = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after symbol updates")


def _spec(key: str, deps: list[str], group: str, kinds: set[str], desc: str) -> dg.AssetSpec:
    return dg.AssetSpec(key, deps=deps, group_name=group, kinds=kinds, description=desc,
                        partitions_def=symbols_partitions, skippable=True)


# ---- checks (core functions; severity and blocking said here) ------------------------------

def _checks_data(paths: PathsResource, settings: LstmSettings) -> dict[str, Check]:
    s = settings.to_core()
    return {
        "raw_file_fresh": Check(
            "raw_file_fresh", "raw_features",
            lambda sym, meta: stages.check_raw_freshness(meta, s),
            f"Warns when the raw file's last date is older than raw_max_age_days "
            f"({s.raw_max_age_days}).", severity=dg.AssetCheckSeverity.WARN),
        "clean_frame_quality": Check(
            "clean_frame_quality", "clean_frames",
            lambda sym, meta: stages.check_clean_frame(paths.layout(), sym, s),
            "Blocking: no NaN/inf features, unique sorted dates, valid labels, enough rows for "
            "lookback + three splits.", blocking=True),
        "sequence_tensors_quality": Check(
            "sequence_tensors_quality", "sequence_tensors",
            lambda sym, meta: stages.check_sequences(paths.layout(), sym),
            "Blocking: 2-D float32 matrix, shapes agree, no NaN/inf, every split has samples; "
            "class balance per split recorded.", blocking=True),
        "input_drift": Check(
            "input_drift", "sequence_tensors",
            lambda sym, meta: stages.check_drift(paths.layout(), sym, s),
            f"Warns when a feature the serving model uses (or the label mix) drifted: its last "
            f"drift_window ({s.drift_window}) rows against the train rows, PSI above "
            f"drift_threshold ({s.drift_threshold}) and above what a train window shows, and a "
            "KS / chi-square test beyond chance. Metadata: the drifted features, their PSI and "
            "their share of the model's input weights (before a model exists, every feature "
            "counts).",
            severity=dg.AssetCheckSeverity.WARN),
    }


def _beats_majority(paths: PathsResource) -> Check:
    def evaluate(sym: str, meta: dict[str, Any]) -> dict[str, Any]:
        rep = read_json(paths.layout().warehouse.report(sym, ".json"))
        acc, maj = rep["model"]["accuracy"], rep["baselines"]["majority"]["accuracy"]
        return {"passed": acc > maj, "metadata": {"model_accuracy": acc, "majority_accuracy": maj},
                "description": f"{sym}: model {acc:.1%} {'>' if acc > maj else '<='} majority "
                f"{maj:.1%} (test split)"}

    return Check("beats_majority_baseline", "evaluation_report", evaluate,
                 "Warns when the model does not beat the majority-class baseline.",
                 severity=dg.AssetCheckSeverity.WARN)


def _model_fresh(paths: PathsResource, settings: LstmSettings) -> Check:
    s = settings.to_core()
    return Check("model_fresh", "lstm_model",
                 lambda sym, meta: stages.check_model_freshness(paths.layout(), sym, s),
                 f"Warns when the serving model was trained more than model_max_age_days "
                 f"({s.model_max_age_days}) ago: the symbol is stale.",
                 severity=dg.AssetCheckSeverity.WARN)


def model_checks(paths: PathsResource, settings: LstmSettings | None = None) -> list[Check]:
    """The checks of the model step (``lstm-assets promote`` re-evaluates them too)."""
    return [_beats_majority(paths), _model_fresh(paths, settings or LstmSettings())]


# Specs only need names; the evaluate functions are bound to the resources at run time.
_DATA_CHECKS = _checks_data(PathsResource(), LstmSettings())
_MODEL_CHECK = _beats_majority(PathsResource())
_FRESH_CHECK = _model_fresh(PathsResource(), LstmSettings())


@dg.multi_asset(
    name="symbol_data",
    specs=[
        _spec("raw_features", [], "data", {"pandas"},
              "The symbol's raw file, read and validated: rows, dates, columns and defects."),
        _spec("clean_frames", ["raw_features"], "data", {"parquet"},
              "One row per trading day, numeric, no NaN/inf, technical features, UP/DOWN/FLAT "
              "label."),
        _spec("sequence_tensors", ["clean_frames"], "data", {"numpy"},
              "Scaled 2-D float32 matrix + labels + chronological split bounds (train-only "
              "scaler)."),
    ],
    check_specs=[c.spec(symbols_partitions) for c in _DATA_CHECKS.values()],
    partitions_def=symbols_partitions,
    backfill_policy=DATA_BACKFILL_POLICY,
    can_subset=True,
)
def symbol_data(context: dg.AssetExecutionContext, paths: PathsResource,
                settings: LstmSettings) -> Any:
    """Raw file -> clean frame -> sequences, for each symbol of the run's partition range."""
    layout, s = paths.layout(), settings.to_core()
    checks = _checks_data(paths, settings)
    yield from run_stages(context, [
        Stage("raw_features", lambda sym: stages.run_raw(layout, sym, s),
              data_version=lambda m: m.get("content_hash"), checks=(checks["raw_file_fresh"],)),
        Stage("clean_frames", lambda sym: stages.run_clean(layout, sym, s),
              checks=(checks["clean_frame_quality"],)),
        Stage("sequence_tensors", lambda sym: stages.run_sequences(layout, sym, s),
              checks=(checks["sequence_tensors_quality"], checks["input_drift"])),
    ])


def _model_stage(context: dg.AssetExecutionContext, paths: PathsResource,
                 settings: LstmSettings) -> Stage:
    layout, s = paths.layout(), settings.to_core()
    together: dict[str, dict[str, Any] | Exception] = {}

    def train_together(symbols: list[str]) -> None:
        """On a GPU (or with stack_symbols > 1) the range's symbols train together; any symbol
        this leaves out (e.g. its group ran out of GPU memory) trains alone in ``train``."""
        if not stages.stacks_symbols(s, len(symbols)):
            return

        def progress(row: dict[str, float]) -> None:
            context.log.info(f"group of {int(row['symbols'])}: epoch {int(row['epoch'])} "
                             f"({row['seconds']:.1f}s), {int(row['training'])} still training")

        context.log.info(f"training the models of {len(symbols)} symbols together")
        together.update(stages.run_train_many(layout, symbols, s, on_epoch=progress))

    def train(sym: str) -> dict[str, Any]:
        def progress(row: dict[str, float]) -> None:
            context.log.info(
                f"[{sym}] epoch {int(row['epoch'])}: train_loss {row['train_loss']:.4f} "
                f"val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.3f} "
                f"lr {row['lr']:.2g} ({row['seconds']:.1f}s)")

        got = together.pop(sym) if sym in together else None
        if isinstance(got, Exception):
            raise got
        meta = got or stages.run_train(layout, sym, s, on_epoch=progress)
        context.log.info(f"[{sym}] model {meta['init']}: {meta['init_reason']}")
        return meta

    return Stage("lstm_model", train, before=train_together,
                 checks=(_model_fresh(paths, settings),))


def _percent(x: float | None, ci: list[float] | None = None) -> str | None:
    """A fraction as the report writes it, with its 95% interval when there is one:
    0.657, [0.631, 0.682] -> ``65.7% [63.1, 68.2]``."""
    if x is None:
        return None
    text = f"{100 * x:.1f}%"
    if ci:
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return text


def _points(diff: float, ci: list[float] | None = None) -> str:
    """A difference of two accuracies in percentage points, with its 95% interval:
    0.0281, [-0.01, 0.06] -> ``+2.8 points [-1.0, 6.0]``."""
    text = f"{100 * diff:+.1f} points"
    if ci:
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return text


def _threshold_metadata(th: dict[str, Any] | None) -> dict[str, Any]:
    """The ABSTAIN threshold chosen on validation and the test figures at it."""
    if not th:
        return {}
    test = th.get("test") or {}
    return {"abstain_threshold": round(th["threshold"], 4),
            "test_coverage_at_threshold": _percent(test.get("coverage")),
            "test_accuracy_at_threshold": _percent(test.get("accuracy"),
                                                   test.get("accuracy_ci"))}


def report_metadata(paths: PathsResource) -> Any:
    """The report's figures as the UI shows them: percentages with 95% intervals (text), the
    log loss to 4 decimals, and the whole report (Markdown with the plots) under ``report``."""
    def build(sym: str, rep: dict[str, Any]) -> dict[str, Any]:
        png = rep.pop("_png")
        m = rep["model"]
        best = rep["best_baseline"]
        edge = rep["edge_over_best_baseline"]
        majority = rep["baselines"]["majority"]
        return to_metadata({
            "accuracy": _percent(m["accuracy"], m.get("accuracy_ci")),
            "balanced_accuracy": _percent(m["balanced_accuracy"]),
            "macro_f1": _percent(m["macro_f1"], m.get("macro_f1_ci")),
            "log_loss": m["log_loss"],
            "majority_accuracy": _percent(majority["accuracy"], majority.get("accuracy_ci")),
            "best_baseline": best,
            "best_baseline_accuracy": _percent(rep["baselines"][best]["accuracy"],
                                              rep["baselines"][best].get("accuracy_ci")),
            "edge_vs_best_baseline": _points(edge["accuracy_diff"], edge.get("ci")),
            "significant_edge": rep["significant_edge"],
            "oracle_accuracy": _percent((rep["oracle"] or {}).get("expected_accuracy")),
            "model_init": (rep.get("retrain") or {}).get("init"),
            "model_version": rep.get("model_version"),
            **_threshold_metadata(rep.get("threshold")),
            "path": paths.layout().warehouse.report(sym, ".json"),
            "plots_png_bytes": len(base64.b64encode(png)),
        }) | {"report": dg.MetadataValue.md(markdown(rep, png=png))}

    return build


@dg.multi_asset(
    name="symbol_model",
    specs=[
        _spec("lstm_model", ["sequence_tensors"], "model", {"pytorch"},
              "The symbol's serving LSTM (safetensors weights + JSON config; no pickle): a full "
              "fit or a warm start, which serves only when not significantly worse than the "
              "serving model on recent windows (else it is kept as a version, not promoted), "
              "or skipped when nothing changed. `lstm-assets models SYMBOL` lists the versions."),
        _spec("evaluation_report", ["lstm_model"], "evaluation", {"markdown"},
              "Test-split metrics of the model beside baselines (and the oracle on demo "
              "data)."),
    ],
    check_specs=[_MODEL_CHECK.spec(symbols_partitions), _FRESH_CHECK.spec(symbols_partitions)],
    partitions_def=symbols_partitions,
    backfill_policy=MODEL_BACKFILL_POLICY,
    pool="gpu",
    # Celery queue "gpu" / a k8s GPU pod for the training step (each executor reads its own tag)
    op_tags=deploy.training_op_tags(),
    can_subset=True,
)
def symbol_model(context: dg.AssetExecutionContext, paths: PathsResource,
                 settings: LstmSettings) -> Any:
    """Train (or warm-start, or skip) and evaluate each symbol of the run's partition range."""
    layout, s = paths.layout(), settings.to_core()
    yield from run_stages(context, [
        _model_stage(context, paths, settings),
        Stage("evaluation_report", lambda sym: stages.run_evaluate(layout, sym, s),
              metadata=report_metadata(paths), checks=(_beats_majority(paths),)),
    ])


# Names of the per-symbol assets, for selections (each multi-asset computes several).
raw_features = clean_frames = sequence_tensors = symbol_data
lstm_model = evaluation_report = symbol_model
SYMBOL_ASSETS = ["raw_features", "clean_frames", "sequence_tensors", "lstm_model",
                 "evaluation_report"]


def _mean_percent(stat: dict[str, Any] | None) -> str | None:
    """A leaderboard mean across symbols with its 95% interval, as text (None: no symbols)."""
    return _percent(stat.get("mean"), stat.get("ci")) if stat else None


@dg.asset(group_name="evaluation", deps=["evaluation_report"], kinds={"markdown"},
          automation_condition=AFTER_SYMBOL_UPDATES)
def leaderboard(paths: PathsResource) -> dg.MaterializeResult:
    """All symbols' test results side by side, means with 95% intervals across symbols."""
    summary = stages.run_leaderboard(paths.layout())
    mean = summary.get("mean", {})
    return dg.MaterializeResult(metadata={
        "leaderboard": dg.MetadataValue.md(leaderboard_markdown(summary)),
        **to_metadata({
            "symbols": summary["symbols"],
            "significant_wins": summary.get("significant_wins", 0),
            "mean_model_accuracy": _mean_percent(mean.get("model_accuracy")),
            "mean_majority_accuracy": _mean_percent(mean.get("majority_accuracy")),
            "path": paths.layout().warehouse.leaderboard(".md"),
        }),
    })


class ComparisonConfig(dg.Config):
    """What ``model_comparison`` runs (``lstm-assets compare`` has the same options)."""

    families: list[str] = list(DEFAULT_FAMILIES)
    horizons: list[int] = [1]
    targets: list[str] = ["raw"]
    folds: int = 4
    embedding: int = 8
    cost_bps: float = 10.0
    resamples: int = 1000
    tune: int = 0
    """Configurations of the pooled networks sampled and scored on the first fold's validation
    dates (besides the defaults); 0 = no search. p-values are corrected for every trial."""
    set: list[str] = []
    """``KEY=VALUE`` settings of the pooled networks (e.g. ``hidden_size=64``), over
    ``core/research/compare.POOLED_SETTINGS`` and this code location's settings."""


@dg.asset(group_name="research", deps=["clean_frames"], kinds={"pytorch", "markdown"},
          pool="gpu")
def model_comparison(context: dg.AssetExecutionContext, config: ComparisonConfig,
                     paths: PathsResource, settings: LstmSettings) -> dg.MaterializeResult:
    """Pooled LSTM / GRU / ALSTM, gradient-boosted trees, an ensemble (and on request the
    per-symbol LSTM) beside factor baselines, over walk-forward folds of every symbol with a
    clean frame: rank IC, accuracy, long/short after costs, per-symbol significance (BH), paired
    and SPA tests (``core/research/compare.py``). Materialized on demand: it trains
    families x folds networks."""
    spec = CompareSpec(families=tuple(config.families), horizons=tuple(config.horizons),
                       targets=tuple(config.targets), folds=config.folds,
                       embedding=config.embedding, cost_bps=config.cost_bps,
                       n_resamples=config.resamples, tune_trials=config.tune)

    def progress(text: str, step: int) -> None:
        if step:
            context.log.info(text)

    overrides = parse_overrides(config.set)
    result, images = stages.run_comparison(paths.layout(), settings.to_core().replace(
        **overrides), spec, overrides=overrides, progress=progress)
    best = [max((r for r in run["families"] if r["kind"] == "model"),
                key=lambda r: r["ic"]["mean"]) for run in result["runs"]]
    return dg.MaterializeResult(metadata={
        "comparison": dg.MetadataValue.md(comparison_markdown(result, images)),
        **to_metadata({
            "symbols": result["symbols"],
            "configurations_tried": result["configurations_tried"],
            "best_family": [f"h{run['horizon']} {run['target']}: {b['family']}"
                            for run, b in zip(result["runs"], best, strict=True)],
            "best_mean_rank_ic": [round(b["ic"]["mean"], 4) for b in best],
            "best_rank_ic_t": [round(b["ic"]["t"], 2) for b in best],
            "verdict": [verdict(run, result["configurations_tried"]) for run in result["runs"]],
            "seconds": round(result["seconds"], 1),
            "path": paths.layout().warehouse.base / stages.COMPARISON_ASSET,
        }),
    })


class PooledModelConfig(dg.Config):
    """What ``pooled_model`` trains (defaults: the code location's settings)."""

    family: str = ""
    """``lstm``, ``gru``, ``alstm`` or ``linear`` (empty: the ``pooled_family`` setting)."""
    set: list[str] = []
    """``KEY=VALUE`` settings of the pooled network (e.g. ``hidden_size=64``), over
    ``core/research/compare.POOLED_SETTINGS`` and this code location's settings."""


@dg.asset(group_name="model", deps=["clean_frames"], kinds={"pytorch"}, pool="gpu")
def pooled_model(context: dg.AssetExecutionContext, config: PooledModelConfig,
                 paths: PathsResource, settings: LstmSettings) -> dg.MaterializeResult:
    """One network over every symbol with a clean frame (each symbol scaled on its own training
    rows, a symbol embedding), early-stopped on the last validation block of dates; it serves
    ``latest_signals`` when ``signal_source=pooled`` (rerun ``latest_signals`` after it).
    Materialized on demand. Its validation figures are optimistic (the block also chose the
    epoch): ``model_comparison`` judges the families fairly, over walk-forward folds."""
    s = settings.to_core()
    family = config.family or s.pooled_family

    def progress(row: dict[str, float]) -> None:
        context.log.info(f"epoch {int(row['epoch'])}: val_loss {row['val_loss']:.4f}")

    out = stages.run_pooled_model(paths.layout(), s, family, parse_overrides(config.set),
                                  on_epoch=progress)
    v = out["validation"]
    return dg.MaterializeResult(metadata=to_metadata({
        "family": family, "version": out["version"], "symbols": out["symbols"],
        "left_out": out["left_out"],
        "validation_accuracy": _percent(v["accuracy"]),
        "validation_majority_accuracy": _percent(v["majority_accuracy"]),
        "validation_rank_ic": v.get("rank_ic"), "validation_rank_ic_t": v.get("rank_ic_t"),
        "validation_dates": v.get("dates"), "train_dates": out["dates"].get("train"),
        "epochs_run": out["training"].get("epochs_run"), "path": out["path"],
    }))


# not a dependency of pooled_model: it is materialized on demand, and a never-materialized
# upstream asset makes the UI ask before every run of the signals
@dg.asset(group_name="signals", deps=["lstm_model", "clean_frames"], kinds={"parquet"},
          automation_condition=AFTER_SYMBOL_UPDATES)
def latest_signals(context: dg.AssetExecutionContext, paths: PathsResource,
                   settings: LstmSettings) -> dg.MaterializeResult:
    """Next-day class and probabilities per symbol from its serving model (or the pooled model,
    ``signal_source=pooled``) and latest window; ABSTAIN below the symbol's threshold chosen on
    validation (signal_min_confidence where none was). Written to latest_signals.parquet and
    appended to signal_history.parquet."""
    s = settings.to_core()
    wh = paths.layout().warehouse
    table = compute_signals(wh, s)
    for sym, msg in table.errors.items():
        context.log.warning(f"[{sym}] no signal: {msg}")
    if table.errors and table.frame.empty:
        raise dg.Failure(description=f"no symbol could be scored: {table.errors}",
                         metadata={"errors": dg.MetadataValue.json(table.errors)})
    return dg.MaterializeResult(metadata={
        "signals": dg.MetadataValue.md(signals_markdown(table, s.signal_min_confidence)),
        "dagster/row_count": len(table.frame),
        **to_metadata({
            "counts": table.counts(),
            "errors": table.errors,
            "abstain_thresholds": _threshold_range(table.frame),
            "as_of": sorted(set(table.frame["as_of"].astype(str))),
            "path": wh.signals(),
        }),
    })


def _threshold_range(frame: Any) -> str | None:
    """The ABSTAIN thresholds the signals used, as a range of percentages."""
    th = frame["threshold"].dropna() if len(frame) else frame.get("threshold", [])
    if len(th) == 0:
        return None
    lo, hi = float(th.min()), float(th.max())
    return f"{lo:.0%}" if lo == hi else f"{lo:.0%} .. {hi:.0%}"


def _promise_text(card: dict[str, Any]) -> str:
    o, below = card["overall"], card["symbols_below_promise"]
    if below or card["overall_below_promise"]:
        return (f"live accuracy below the test split's promise: overall "
                f"{'yes' if card['overall_below_promise'] else 'no'}, symbols {below}")
    if card["symbols_tested"] == 0 and o["p_below_promise"] is None:
        return (f"{o['scored']} signal(s) scored so far: at least {card['min_scored']} are "
                "needed to test live accuracy against the test split")
    return (f"live accuracy in line with the test split ({o['scored']} signals scored, "
            f"{card['symbols_tested']} symbols tested)")


@dg.asset(group_name="signals", deps=["latest_signals"], kinds={"parquet"},
          automation_condition=AFTER_SYMBOL_UPDATES,
          check_specs=[dg.AssetCheckSpec(
              "live_accuracy_vs_test", asset="signal_outcomes",
              description="Warns when live accuracy is significantly below what the test split "
              "promised (overall, or a symbol after a BH correction across symbols).")])
def signal_outcomes(paths: PathsResource, settings: LstmSettings) -> dg.MaterializeResult:
    """The live scorecard: every past signal (the signal history: one row per symbol and as-of
    date) scored once the raw file has the days after it: live accuracy and hit rate beside the
    test accuracy promised, P&L after costs, with intervals (``core/lifecycle/outcomes.py``)."""
    wh = paths.layout().warehouse
    card = run_outcomes(wh, settings.to_core())["card"]
    o = card["overall"]
    below = card["symbols_below_promise"]
    passed = not (below or card["overall_below_promise"])
    return dg.MaterializeResult(
        metadata={
            "scorecard": dg.MetadataValue.md(scorecard_markdown(card)),
            **to_metadata({
                "signals": o["signals"], "scored": o["scored"], "pending": o["pending"],
                "live_accuracy": _percent(o["live_accuracy"], o["live_accuracy_ci"]),
                "promised_test_accuracy": _percent(o["promised_test_accuracy"]),
                "hit_rate": _percent(o["hit_rate"], o["hit_rate_ci"]),
                "pnl_bps_per_signal": None if o["pnl"]["mean"] is None
                else round(1e4 * o["pnl"]["mean"], 2),
                "symbols_below_promise": below,
                "path": wh.outcomes(".parquet"),
            }),
        },
        check_results=[dg.AssetCheckResult(
            check_name="live_accuracy_vs_test", passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=_promise_text(card),
            metadata=to_metadata({"p_below_promise": o["p_below_promise"],
                                  "symbols_tested": card["symbols_tested"],
                                  "symbols_below_promise": below}))])
