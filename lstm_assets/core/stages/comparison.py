"""The model comparison stage: the universe's clean frames -> every family over walk-forward
folds (:mod:`lstm_assets.core.research.compare`) -> ``model_comparison/`` in the warehouse:
``comparison.json`` (every figure), ``comparison.md`` (the tables and verdicts, plots beside
it) and one PNG per horizon and target (``h1_raw.png``, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from lstm_assets.core.research import report
from lstm_assets.core.research.compare import MIN_SYMBOLS, CompareSpec, Comparison
from lstm_assets.core.settings import Settings
from lstm_assets.core.stages.layout import Layout, read_clean
from lstm_assets.core.storage import AnyPath, write_bytes, write_json, write_text

ASSET = "model_comparison"


def compare_frames(frames: dict[str, pd.DataFrame], settings: Settings, spec: CompareSpec,
                   overrides: dict[str, Any] | None = None,
                   progress: Callable[[str, int], None] | None = None
                   ) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Run the comparison; returns the JSON-ready result and one PNG per horizon and target."""
    result = Comparison(frames, settings, spec, overrides, progress).run()
    images = {}
    for run in result["runs"]:
        images[report.run_key(run)] = report.plot_png(run, run.pop("_series"))
    return result, images


def write_comparison(folder: AnyPath, result: dict[str, Any], images: dict[str, bytes]) -> None:
    """``comparison.json``, ``comparison.md`` (the PNG files linked) and the PNGs into
    ``folder``, each written atomically."""
    for key, png in images.items():
        write_bytes(folder / f"{key}.png", png)
    md = report.markdown(result)
    links = "\n".join(f"![{k}]({k}.png)" for k in images)
    write_text(folder / "comparison.md", md + "\n" + links + "\n")
    write_json(folder / "comparison.json", result)


def run_comparison(layout: Layout, settings: Settings, spec: CompareSpec,
                   overrides: dict[str, Any] | None = None,
                   progress: Callable[[str, int], None] | None = None,
                   symbols: list[str] | None = None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The comparison over the symbols whose clean frame is in the warehouse (all of
    ``symbols``, default every raw file's symbol that has one), written to the warehouse."""
    wanted = symbols if symbols is not None else layout.symbols()
    frames = {s: read_clean(layout, s) for s in wanted
              if symbols is not None or layout.warehouse.clean_frame(s).exists()}
    if len(frames) < MIN_SYMBOLS:
        raise ValueError(f"a comparison needs clean frames of at least {MIN_SYMBOLS} symbols, "
                         f"found {len(frames)}: materialize clean_frames first")
    result, images = compare_frames(frames, settings, spec, overrides, progress)
    write_comparison(layout.warehouse.base / ASSET, result, images)
    return result, images


def run_pooled_model(layout: Layout, settings: Settings, family: str,
                     overrides: dict[str, Any] | None = None,
                     on_epoch: Callable[[dict[str, float]], None] | None = None
                     ) -> dict[str, Any]:
    """One pooled network (``family``) over every symbol with a clean frame, for serving
    (:func:`~lstm_assets.core.research.serving.fit_pooled`), saved to
    ``pooled_model/<family>.safetensors`` (a readable ``.json`` config beside it); returns its
    validation figures and where it is."""
    from lstm_assets.core.research.serving import fit_pooled

    frames = {s: read_clean(layout, s) for s in layout.symbols()
              if layout.warehouse.clean_frame(s).exists()}
    if len(frames) < MIN_SYMBOLS:
        raise ValueError(f"a pooled model needs clean frames of at least {MIN_SYMBOLS} symbols, "
                         f"found {len(frames)}: materialize clean_frames first")
    model = fit_pooled(frames, settings, family, overrides=overrides, on_epoch=on_epoch)
    path = layout.warehouse.pooled_model(family)
    version = model.save(path)
    write_json(path.with_suffix(".json"), model.config)
    return {"family": family, "version": version, "path": str(path),
            "symbols": len(model.symbols), "left_out": model.config.get("left_out"),
            "validation": model.config["validation"], "training": model.config["training"],
            "dates": model.config["dates"]}
