"""``lstm-assets models SYMBOL`` and ``lstm-assets promote SYMBOL VERSION``: the model versions.

``models`` lists every kept version of a symbol's model (oldest first): when it was trained,
how (cold / warm), on which data (the raw file's content hash, the last training day), its
validation and test scores, whether it serves, and the promotion decision with its figures.

``promote`` makes a kept version the serving model, byte for byte (a rollback or a roll
forward), then re-evaluates the symbol (the report, the chosen ABSTAIN threshold) and rewrites
``latest_signals`` so they come from that model. When the project's Dagster instance exists,
the change is recorded there as a materialization of ``lstm_model`` and ``evaluation_report``
for the symbol, so the UI shows it and the automation sensor refreshes the cross-symbol assets.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from lstm_assets.core.config import ProjectConfig


def register(subparsers: Any) -> None:
    cfg = ProjectConfig.from_env()
    m = subparsers.add_parser("models", help="list a symbol's kept model versions")
    m.add_argument("symbol")
    m.add_argument("--warehouse-dir", default=cfg.warehouse_dir)
    m.add_argument("--json", action="store_true", help="print the records as JSON")
    m.set_defaults(func=cmd_models)

    p = subparsers.add_parser("promote", help="serve a kept model version (rollback / forward)")
    p.add_argument("symbol")
    p.add_argument("version", help="16 hex digits, as `lstm-assets models SYMBOL` lists")
    p.add_argument("--raw-dir", default=cfg.raw_dir)
    p.add_argument("--warehouse-dir", default=cfg.warehouse_dir)
    p.add_argument("--truth-dir", default=cfg.truth_dir)
    p.add_argument("--reason", default="lstm-assets promote",
                   help="why, recorded with the promotion")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="settings for the re-evaluation, e.g. bootstrap_samples=200")
    p.set_defaults(func=cmd_promote)


def _score(rec: dict[str, Any], key: str) -> str:
    v = (rec.get("scores") or {}).get(key)
    return "" if v is None else f"{100 * v:.1f}%"


def versions_table(records: list[dict[str, Any]]) -> str:
    lines = ["| version | trained | init | data ends | val acc. | test acc. | serving | decision |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        decision = r.get("decision") or {}
        verdict = "promoted" if decision.get("promote") else "kept out"
        if r.get("promotions"):  # promoted by hand since: its latest decision, then the first
            last = r["promotions"][-1]
            decision = {"reason": f"{last['reason']}, {str(last['at'])[:19]}; after training: "
                        f"{verdict}: {decision.get('reason', '')}"}
            verdict = "promoted by hand"
        lines.append(
            f"| {r['version']} | {str(r.get('created_at', ''))[:19]} | {r.get('init', '')} | "
            f"{(r.get('trained_on') or {}).get('data_end', '')} | "
            f"{_score(r, 'val_accuracy')} | {_score(r, 'test_accuracy')} | "
            f"{'**yes**' if r['serving'] else ''} | {verdict}: {decision.get('reason', '')} |")
    return "\n".join(lines)


def cmd_models(args: argparse.Namespace) -> int:
    from lstm_assets.core.lifecycle.versions import list_versions
    from lstm_assets.core.storage import Warehouse, normalize_symbol

    sym = normalize_symbol(args.symbol)
    records = list_versions(Warehouse(args.warehouse_dir), sym)
    if args.json:
        print(json.dumps(records, indent=2, default=str))
        return 0 if records else 1
    if not records:
        print(f"{sym}: no model versions in {args.warehouse_dir}")
        return 1
    print(f"{sym}: {len(records)} model version(s), oldest first")
    print(versions_table(records))
    return 0


def _record_in_dagster(args: argparse.Namespace, sym: str, record: dict[str, Any],
                       rep: dict[str, Any]) -> str:
    """Report the promotion to the project's Dagster instance (when there is one): a
    materialization of ``lstm_model`` (the version now serving) and of ``evaluation_report``
    with the metadata the asset itself shows."""
    from pathlib import Path

    from lstm_assets.core.config import DAGSTER_HOME_DIR

    home = Path(ProjectConfig.from_env().dagster_home or Path(DAGSTER_HOME_DIR).resolve())
    if not (home / "dagster.yaml").exists():
        return f"no Dagster instance at {home} to record it in"
    try:
        import dagster as dg

        from lstm_assets.defs.assets import model_checks, report_metadata
        from lstm_assets.defs.ranges import to_metadata
        from lstm_assets.defs.resources import PathsResource
        from lstm_assets.instance import ensure_dagster_home, sync_partitions

        ensure_dagster_home()
        paths = PathsResource(raw_dir=args.raw_dir, warehouse_dir=args.warehouse_dir,
                              truth_dir=args.truth_dir or "")
        model_meta = to_metadata({
            "version": record["version"], "serving_version": record["version"],
            "promoted": True, "promotion_reason": args.reason, "init": record.get("init"),
            "trained_at": record.get("created_at"),
            **{f"new_{k}": v for k, v in (record.get("scores") or {}).items()},
            "path": str(paths.layout().warehouse.model(sym))})
        with dg.DagsterInstance.get() as instance:
            sync_partitions(instance, [sym])
            instance.report_runless_asset_event(dg.AssetMaterialization(
                "lstm_model", partition=sym, metadata=model_meta))
            instance.report_runless_asset_event(dg.AssetMaterialization(
                "evaluation_report", partition=sym, metadata=report_metadata(paths)(sym, rep)))
            for check in model_checks(paths):  # the model's checks, on the promoted model
                res = check.evaluate(sym, {})
                instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                    asset_key=dg.AssetKey(check.asset), check_name=check.name,
                    passed=bool(res["passed"]), partition=sym,
                    description=res.get("description"),
                    metadata=to_metadata(res.get("metadata") or {}),
                    severity=check.severity))
        return "recorded in the Dagster instance (lstm_model, evaluation_report, their checks)"
    except Exception as e:  # noqa: BLE001 - the files are the truth; the UI record is extra
        return f"not recorded in Dagster ({type(e).__name__}: {e})"


def cmd_promote(args: argparse.Namespace) -> int:
    from lstm_assets.core import stages
    from lstm_assets.core.lifecycle.versions import promote, serving_version
    from lstm_assets.core.settings import Settings, parse_overrides
    from lstm_assets.core.signals import latest_signals
    from lstm_assets.core.storage import normalize_symbol

    sym = normalize_symbol(args.symbol)
    settings = Settings().replace(**parse_overrides(args.set))
    layout = stages.Layout.from_dirs(args.raw_dir, args.warehouse_dir, args.truth_dir or None)
    version = args.version.lower()
    if version == serving_version(layout.warehouse, sym):
        print(f"{sym}: version {version} already serves; re-evaluating it")
    try:
        record = promote(layout.warehouse, sym, version, reason=args.reason)
    except (ValueError, FileNotFoundError) as e:  # a typo, an unknown or damaged version
        raise SystemExit(f"lstm-assets promote: {e}") from None
    print(f"{sym}: version {version} now serves")
    rep = stages.run_evaluate(layout, sym, settings)
    print(f"{sym}: re-evaluated: test accuracy {100 * rep['model']['accuracy']:.1f}% (majority "
          f"{100 * rep['baselines']['majority']['accuracy']:.1f}%), ABSTAIN threshold "
          f"{rep['threshold']['threshold']:.3f}")
    table = latest_signals(layout.warehouse, settings)
    row = table.frame[table.frame["symbol"] == sym]
    if len(row):
        print(f"{sym}: signal {row['signal'].iloc[0]} as of {row['as_of'].iloc[0]} "
              f"(model {row['model_version'].iloc[0]}); {layout.warehouse.signals()} rewritten")
    print(f"{sym}: {_record_in_dagster(args, sym, record, rep)}")
    return 0
