"""The GPU part of the benchmark, runnable on a bare GPU box (core libraries only, no dagster).

``python -m lstm_assets.bench.gpu --out DIR`` (what ``scripts/gpu_bench.sh`` runs) writes
demo data for N symbols x Y years, runs the data stages over all cores, then measures on the GPU:

- the device's bf16 and fp32 matmul rate (the yardsticks);
- ``core.train.fit`` on one symbol with bf16 autocast, at the default batch and a large batch;
- the reference loop (:mod:`lstm_assets.bench.reference`, DataLoader over copies, ``.item()``
  per batch) on the same GPU, for the ratio;
- all N symbols trained at once with stacked weights (``core.train.fit_many``): the wall
  time to train every symbol with the project's settings (early stopping included), and its
  throughput against the CPU throughput of the project's loop on the same box;
- one symbol trained alone with the same settings, for the quality and the sequential estimate.

``--dry-run`` does all of it tiny, on CPU, so the script can be checked where there is no GPU.
In ``lstm-assets bench`` the same measurements are the ``gpu`` section (:func:`gpu`); the
measurements themselves are in :mod:`lstm_assets.bench.gpu_steps`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lstm_assets.bench.config import BenchSize
from lstm_assets.bench.context import Bench
from lstm_assets.bench.data_stages import time_data_stages, time_data_stages_parallel
from lstm_assets.bench.demo import make_demo
from lstm_assets.bench.gpu_steps import GPU_KEYS, GpuRow, gpu_section
from lstm_assets.bench.report import clean_json, met_cell
from lstm_assets.bench.yardsticks import machine_info
from lstm_assets.core import stages
from lstm_assets.core.sequences import SequenceSet


def gpu(bench: Bench) -> None:
    """The ``gpu`` section of ``lstm-assets bench`` (only where CUDA is present): the GPU
    figures on the main demo set, against the CPU figure of the training section."""
    f = bench.figures
    for k in GPU_KEYS:
        f.setdefault(k, None)
    if not torch.cuda.is_available():
        bench.add("gpu", "GPU section", "skipped: no CUDA device")
        return
    layout, symbols = bench.main_data()
    wh = layout.warehouse
    if not all(wh.sequences(s).exists() for s in symbols):
        time_data_stages(layout, symbols, bench.settings)
    seqs = [SequenceSet.load(wh.sequences(s)) for s in symbols if wh.sequences(s).exists()]
    for s in symbols:  # the signals section's untrained stand-ins: the GPU fits start cold
        wh.model(s).unlink(missing_ok=True)
    out = gpu_section(seqs, bench.size, bench.say,
                      cpu_sps=f.get("train_sequences_per_second"), layout=layout)
    f.update(out["figures"])
    bench.details["gpu"] = out["details"]
    for r in out["rows"]:
        bench.add("gpu", *r)


# ------------------------------------------------------------------------ the GPU script


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT", "gpu_bench_out"))
    p.add_argument("--quick", action="store_true", help="16 symbols x 5 years")
    p.add_argument("--dry-run", action="store_true", help="tiny, on CPU (checks the script)")
    p.add_argument("--symbols", type=int, default=None)
    p.add_argument("--years", type=int, default=None)
    p.add_argument("--group-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--workdir", default=None)
    p.add_argument("--skip", default="", help="comma-separated step names to leave out, e.g. "
                   "'all symbols at once'")
    p.add_argument("--plain", action="store_true", help="also train all symbols without "
                   "compaction and with the unfused cell, for a same-run ratio")
    return p


def _size(args: argparse.Namespace) -> BenchSize:
    """The size the flags ask for: tiny (dry run), quick or full, with any of ``--symbols``,
    ``--years`` and ``--group-size`` put in."""
    size = BenchSize.named("tiny" if args.dry_run else "quick" if args.quick else "full")
    changes = {k: v for k, v in (("gpu_symbols", args.symbols), ("gpu_years", args.years),
                                 ("gpu_group_size", args.group_size)) if v}
    return dataclasses.replace(size, **changes)


def _say(msg: str) -> None:
    print(f"[gpu-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/gpu_bench.sh``: data, GPU section, JSON + Markdown in ``--out``."""
    args = _parser().parse_args(argv)
    # the training loop logs each epoch at INFO (a stacked group: time, symbols still training)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("lstm_assets.core.train").setLevel(logging.INFO)

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        _say("no CUDA device: nothing to measure (use --dry-run to check the script on CPU)")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lstm_gpu_bench_"))
    try:
        return _run(args, _size(args), device, out, work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


@dataclass
class _Report:
    """Writes ``gpu_bench.json`` and ``gpu_bench.md`` into ``out``: after every step
    (``complete`` false) and at the end."""

    out: Path
    size: BenchSize
    device: str
    meta: dict[str, Any]
    symbols: int
    workers: int
    t0: float

    def write(self, res: dict[str, Any], final: bool = False) -> str:
        meta = self.meta
        meta.update(seconds=time.perf_counter() - self.t0, complete=final,
                    dagster_imported="dagster" in sys.modules)
        result = {**res["figures"], "meta": meta, "details": res["details"],
                  "table": [dict(zip(("figure", "value", "target", "met"), r, strict=True))
                            for r in res["rows"]]}
        (self.out / "gpu_bench.json").write_text(json.dumps(clean_json(result), indent=2)
                                                 + "\n")
        table = self.table(res["rows"], final)
        (self.out / "gpu_bench.md").write_text(table)
        return table

    def table(self, rows: list[GpuRow], final: bool) -> str:
        meta = self.meta
        lines = [f"GPU bench ({self.size.name}, {self.device}"
                 f"{'' if final else ', INCOMPLETE'}): {meta['cuda'] or meta['cpu']}; torch "
                 f"{meta['torch']}; {meta['date']}; {self.symbols} symbols x "
                 f"{self.size.gpu_years} y; {meta['seconds']:.0f}s in all (data stages "
                 f"{meta['data_stages_parallel_seconds']:.1f}s on {self.workers} processes); "
                 f"dagster imported: {meta['dagster_imported']}", "",
                 "| figure | measured | target | met |", "|---|---|---|---|"]
        for fig, val, tgt, met in rows:
            lines.append(f"| {fig} | {val} | {tgt} | {met_cell(met)} |")
        return "\n".join(lines) + "\n"


def _run(args: argparse.Namespace, size: BenchSize, device: str, out: Path,
         work: Path) -> int:
    t0 = time.perf_counter()
    _say(f"demo data: {size.gpu_symbols} symbols x {size.gpu_years} years in {work}")
    raw = make_demo(work / "main", size.gpu_symbols, size.gpu_years)
    t_gen = time.perf_counter() - t0
    layout = stages.Layout.from_dirs(raw, work / "main" / "wh")
    symbols = layout.symbols()
    _say(f"data stages over {args.workers} processes")
    t_data = time_data_stages_parallel(layout, symbols, size.settings, max(1, args.workers))
    seqs = [SequenceSet.load(layout.warehouse.sequences(s)) for s in symbols
            if layout.warehouse.sequences(s).exists()]
    meta = machine_info()
    meta.update(size=size.name, generate_seconds=t_gen, data_stages_parallel_seconds=t_data,
                data_stages_workers=args.workers, device=device)
    report = _Report(out, size, device, meta, len(seqs), args.workers, t0)
    skip = frozenset(x.strip() for x in args.skip.split(",") if x.strip())
    res = gpu_section(seqs, size, _say, device=device, save=report.write, layout=layout,
                      skip=skip, plain=args.plain)
    print(report.write(res, final=True))
    if "dagster" in sys.modules:
        _say("dagster was imported on the GPU path: that is a bug")
        return 1
    return 1 if res["details"].get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
