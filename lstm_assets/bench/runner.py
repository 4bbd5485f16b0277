"""``run_bench``: run the chosen sections in order on demo data in a work folder, and hand back
(and write) the result: flat figures, the machine, the settings, details and the table."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from lstm_assets.bench.config import REQUIRED_KEYS, SECTIONS, BenchSize
from lstm_assets.bench.context import Bench
from lstm_assets.bench.data_stages import data
from lstm_assets.bench.gpu import gpu
from lstm_assets.bench.memory import memory
from lstm_assets.bench.report import clean_json
from lstm_assets.bench.retrain import retrain
from lstm_assets.bench.scaling import scaling
from lstm_assets.bench.signals import signals
from lstm_assets.bench.training import training
from lstm_assets.bench.yardsticks import load_average, machine_info

SECTION_FUNCTIONS: dict[str, Callable[[Bench], None]] = {
    "training": training, "retrain": retrain, "data": data, "memory": memory,
    "signals": signals, "scaling": scaling, "gpu": gpu,
}
"""Each section's function, by the name ``--sections`` takes (the keys are ``SECTIONS``)."""


def run_sections(bench: Bench, sections: Sequence[str] = SECTIONS) -> dict[str, Any]:
    """The chosen sections in :data:`SECTIONS` order; the JSON-ready result."""
    t0 = time.perf_counter()
    meta = machine_info()
    meta["load_average_start"] = load_average()
    meta["size"] = bench.size.name
    bench.figures.update(dict.fromkeys(REQUIRED_KEYS))
    for name in SECTIONS:
        if name not in sections:
            continue
        ts = time.perf_counter()
        bench.say(f"== {name}")
        SECTION_FUNCTIONS[name](bench)
        bench.details.setdefault("section_seconds", {})[name] = time.perf_counter() - ts
    meta["load_average_end"] = load_average()
    meta["seconds"] = time.perf_counter() - t0
    meta["dagster_imported"] = "dagster" in sys.modules
    return {**{k: clean_json(v) for k, v in bench.figures.items()}, "meta": meta,
            "settings": bench.settings.as_dict(), "size": dataclasses.asdict(bench.size),
            "details": clean_json(bench.details),
            "table": [dataclasses.asdict(r) for r in bench.rows]}


def _say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_bench(size: BenchSize, *, json_path: Path | None = None, workdir: Path | None = None,
              keep: bool = False, sections: Sequence[str] = SECTIONS, workers: int = 1,
              say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark, print nothing itself (progress goes to ``say``, by default stderr);
    returns the result (and writes ``json_path``). The work folder is a temporary one, removed
    at the end, unless ``workdir`` is given or ``keep``."""
    if size.settings.num_threads > 0:
        torch.set_num_threads(size.settings.num_threads)
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="lstm_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = run_sections(Bench(size, work, say or _say, workers), sections)
    finally:
        if not keep and workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result
