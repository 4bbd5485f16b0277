"""Run per-symbol stages over every partition key of a step, one symbol failing alone.

A backfill of many symbols is fast when one run covers a whole range of partitions
(``BackfillPolicy``), so each multi-asset step below loops over ``context.partition_keys``
(a single-symbol run is the range of one) and, per symbol and stage:

- calls the core and logs ``AssetMaterialization(partition=symbol)`` with that symbol's metadata,
- evaluates the stage's checks and logs ``AssetCheckEvaluation(partition=symbol)``; a failed
  blocking (ERROR) check stops that symbol's later stages, as a blocking check would,
- on an error, stops that symbol's later stages and goes on with the next symbol.

(In a range run these events are logged together when the step ends, see ``pending`` below.)

At the end the step raises ``dg.Failure`` naming every failed symbol, or succeeds without an
output: the logged events are the materializations (the asset specs are ``skippable``). So a
good symbol ends MATERIALIZED and a bad one FAILED, in the same run, with per-symbol metadata.

A run of one symbol (the UI, the sensor, the schedule) yields ordinary ``MaterializeResult`` /
``AssetCheckResult`` objects instead. A range run that also contains the next step (a range
launched on ``symbol_chain_job``; backfills never do this, the two steps have different backfill
policies) yields an output for the asset the next step needs once every symbol succeeded, so
that step runs; its metadata only names the range.
"""

from __future__ import annotations

import math
import numbers
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from lstm_assets.core.storage import InputError

DATA_VERSION_TAG = "dagster/data_version"


def to_metadata(d: dict[str, Any]) -> dict[str, Any]:
    """Metadata for the UI: plain values stay plain (Dagster types them), nested ones become
    JSON, paths are paths, and floats are rounded to what they mean (the keys name the unit):

    - a fraction whose key names an accuracy, a share, an edge or a confidence becomes a
      percentage under ``<key>_pct`` (``best_val_accuracy`` 0.35135 -> ``best_val_accuracy_pct``
      35.14; inside JSON too: ``label_share`` -> ``label_share_pct``);
    - seconds keep 2 decimals, losses 4; any other float keeps 4 significant digits (in JSON
      too). Integers, booleans and text are unchanged.
    """
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k.startswith("_") or k == "history":
            continue
        if k in ("path", "file"):
            out[k] = dg.MetadataValue.path(str(v))
            continue
        if v is None:
            out[k] = dg.MetadataValue.null()
            continue
        if _is_float(v) or isinstance(v, dict | list | tuple):
            unit = _unit(k)
            if unit == "pct":
                k = f"{k}_pct"
            v = _readable(v, unit)
        out[k] = dg.MetadataValue.json(v) if isinstance(v, dict | list | tuple) else v
    return out


_PCT_WORDS = ("accuracy", "share", "edge", "confidence")


def _unit(key: str) -> str:
    """How a float under ``key`` reads: ``pct`` (a fraction shown x 100), ``seconds``,
    ``loss`` or ``plain`` (4 significant digits)."""
    name = key.lower()
    if name.endswith(("_pct", "_per_second")):
        return "plain"
    if any(w in name for w in _PCT_WORDS):
        return "pct"
    if name == "seconds" or name.endswith("_seconds"):
        return "seconds"
    if "loss" in name:
        return "loss"
    return "plain"


def _is_float(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral)


def _readable(v: Any, unit: str) -> Any:
    """``v`` rounded for ``unit``, floats inside dicts and lists too."""
    if isinstance(v, dict):
        return {k: _readable(x, unit) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_readable(x, unit) for x in v]
    if not _is_float(v):
        return v
    x = float(v)
    if not math.isfinite(x):
        return x
    if unit == "pct":
        return float(f"{100 * x:.4g}")
    if unit == "seconds":
        return round(x, 2)
    if unit == "loss":
        return round(x, 4)
    return float(f"{x:.4g}")


@dataclass(frozen=True)
class Check:
    """An asset check evaluated inside a stage, per symbol."""

    name: str
    asset: str
    evaluate: Callable[[str, dict[str, Any]], dict[str, Any]]
    """(symbol, stage metadata) -> {"passed", "description", "metadata"}"""
    description: str
    blocking: bool = False
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR

    def spec(self, partitions_def: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
        with warnings.catch_warnings():  # partitioned checks are "preview" in dagster 1.13
            warnings.simplefilter("ignore", dg.PreviewWarning)
            return dg.AssetCheckSpec(self.name, asset=self.asset, description=self.description,
                                     blocking=self.blocking, partitions_def=partitions_def)


@dataclass(frozen=True)
class Stage:
    """One asset of a multi-asset step: how to compute it for a symbol and what to attach."""

    asset: str
    run: Callable[[str], dict[str, Any]]
    metadata: Callable[[str, dict[str, Any]], dict[str, Any]] = lambda _s, m: to_metadata(m)
    data_version: Callable[[dict[str, Any]], str | None] = lambda _m: None
    checks: tuple[Check, ...] = field(default_factory=tuple)
    before: Callable[[list[str]], None] | None = None
    """Called once with all the step's symbols before the per-symbol loop, when this stage is
    selected (e.g. to train many symbols together on a GPU); ``run`` is still called per
    symbol, and a symbol's error is still that symbol's alone."""


@dataclass
class SymbolFailure:
    stage: str
    message: str
    input_error: InputError | None = None


def _failure_text(sym: str, f: SymbolFailure) -> str:
    return f"[{sym}] {f.message}"


def run_stages(context: dg.AssetExecutionContext, stages: list[Stage]) -> Iterator[Any]:
    """Run the selected ``stages`` for every partition key of the step (see module doc)."""
    step = _Step(context, stages)
    for st in step.stages:
        if st.before is not None:
            st.before(step.keys)
    for sym in step.keys:
        yield from step.run_symbol(sym)
    context.log.info(f"{len(step.keys) - len(step.failed)} of {len(step.keys)} symbol(s) ok "
                     f"in {time.perf_counter() - step.t0:.1f} s")
    for event in step.pending:
        context.log_event(event)
    if step.failed:
        raise _failure(step.keys, step.failed)
    if not step.single:
        keys = sorted(_outputs_needed_in_run(context), key=lambda k: k.to_user_string())
        for key in keys:
            yield dg.MaterializeResult(asset_key=key, metadata={
                "range_run": f"{step.keys[0]} .. {step.keys[-1]} ({len(step.keys)} symbols)",
                "details": "each symbol's metadata is on its materialization logged just before"})


class _Step:
    """One run of a multi-asset step over its partition keys: the selected stages, the
    symbols that failed, and (in a range run) the events to log when the step ends."""

    def __init__(self, context: dg.AssetExecutionContext, stages: list[Stage]) -> None:
        self.context = context
        self.keys = list(context.partition_keys)
        selected = {k.to_user_string() for k in context.selected_asset_keys}
        self.stages = [st for st in stages if st.asset in selected]
        self.checks = {(k.asset_key.to_user_string(), k.name)
                       for k in context.selected_asset_check_keys}
        self.single = len(self.keys) == 1
        self.failed: dict[str, SymbolFailure] = {}
        # range runs: the per-symbol events are logged together at the end of the step; logged
        # one by one, the backfill daemon would start the next step's runs for a few symbols at
        # a time (one run per daemon tick, each with its own launch cost) while this step runs
        self.pending: list[dg.AssetMaterialization | dg.AssetCheckEvaluation] = []
        self.t0 = time.perf_counter()

    def run_symbol(self, sym: str) -> Iterator[Any]:
        """The symbol's stages in order, stopping at its first failure or blocking check."""
        log = self.context.log
        for st in self.stages:
            t0 = time.perf_counter()
            meta = self._compute(st, sym)
            if meta is None:
                log.warning(f"[{sym}] {st.asset} FAILED: {self.failed[sym].message}")
                return
            seconds = time.perf_counter() - t0
            yield from self._materialized(st, sym, meta, seconds)
            results: list[dg.AssetCheckResult] = []
            blocked = _evaluate_checks(self.context, sym, st, meta, self.checks,
                                       results if self.single else None, self.pending)
            yield from results
            if blocked:
                self.failed[sym] = SymbolFailure(st.asset, blocked)
                log.warning(f"[{sym}] blocked after {st.asset}: {blocked}")
                return
            log.info(f"[{sym}] {st.asset} ok ({seconds:.2f} s)")

    def _compute(self, st: Stage, sym: str) -> dict[str, Any] | None:
        """The stage's metadata, or None with the failure recorded (this symbol alone)."""
        try:
            return st.run(sym)
        except InputError as e:
            self.failed[sym] = SymbolFailure(st.asset, str(e), e)
        except Exception as e:  # one symbol's error never stops the others; reported at the end
            self.context.log.error(f"[{sym}] {st.asset} failed:\n{traceback.format_exc()}")
            self.failed[sym] = SymbolFailure(st.asset, f"{st.asset}: {type(e).__name__}: {e}")
        return None

    def _materialized(self, st: Stage, sym: str, meta: dict[str, Any],
                      seconds: float) -> Iterator[dg.MaterializeResult]:
        """A one-symbol run yields the result; a range run keeps it for the end of the step."""
        md = {**st.metadata(sym, meta), "seconds": round(seconds, 2)}
        version = st.data_version(meta)
        if self.single:
            yield dg.MaterializeResult(asset_key=st.asset, metadata=md,
                                       data_version=dg.DataVersion(version) if version else None)
        else:
            self.pending.append(dg.AssetMaterialization(
                asset_key=st.asset, partition=sym, metadata=md,
                tags={DATA_VERSION_TAG: version} if version else None))


def _outputs_needed_in_run(context: dg.AssetExecutionContext) -> set[dg.AssetKey]:
    """This step's assets that a later step of the same run depends on."""
    own = set(context.assets_def.keys)
    layer = context.job_def.asset_layer
    in_run = context.run.asset_selection or layer.selected_asset_keys
    return {k for k in context.selected_asset_keys
            if any(c in in_run and c not in own for c in layer.asset_graph.get(k).child_keys)}


def _evaluate_checks(context: dg.AssetExecutionContext, sym: str, st: Stage,
                     meta: dict[str, Any], selected: set[tuple[str, str]],
                     results: list[dg.AssetCheckResult] | None,
                     pending: list[Any]) -> str | None:
    """Evaluate each selected check: into ``results`` (a one-symbol run) or logged with its
    partition (a range run). Returns the text of a failed blocking check, else None."""
    for chk in st.checks:
        if (chk.asset, chk.name) not in selected:
            continue
        try:
            res = chk.evaluate(sym, meta)
        except Exception as e:  # a check that cannot run fails (it says why)
            res = {"passed": False, "description": f"check could not run: {e}", "metadata": {}}
        md = to_metadata(res.get("metadata") or {})
        if results is not None:
            results.append(dg.AssetCheckResult(
                asset_key=chk.asset, check_name=chk.name, passed=bool(res["passed"]),
                metadata=md, severity=chk.severity, description=res.get("description")))
        else:
            pending.append(dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(chk.asset), check_name=chk.name,
                passed=bool(res["passed"]), metadata=md, severity=chk.severity,
                description=res.get("description"), blocking=chk.blocking, partition=sym))
        if (not res["passed"] and chk.blocking
                and chk.severity == dg.AssetCheckSeverity.ERROR):
            return f"check {chk.name} failed: {res.get('description')}"
    return None


def _failure(keys: list[str], failed: dict[str, SymbolFailure]) -> dg.Failure:
    only_input_errors = all(f.input_error is not None for f in failed.values())
    if len(keys) == 1:
        sym, f = next(iter(failed.items()))
        e = f.input_error
        meta: dict[str, Any] = {"stage": f.stage}
        if e is not None:
            meta.update({"file": str(e.path), "problem": e.problem, "fix": e.fix})
        return dg.Failure(description=_failure_text(sym, f), metadata=meta,
                          allow_retries=not only_input_errors)
    lines = [_failure_text(s, f) for s, f in failed.items()]
    return dg.Failure(
        description=(f"{len(failed)} of {len(keys)} symbols failed (the others are "
                     f"materialized): {', '.join(failed)}\n" + "\n".join(lines)),
        metadata={"failed_symbols": dg.MetadataValue.json(sorted(failed)),
                  "failures": dg.MetadataValue.json(
                      {s: {"stage": f.stage, "message": f.message} for s, f in failed.items()})},
        allow_retries=not only_input_errors,
    )
