"""``lstm-assets bench`` as a user runs it: the real command in a fresh process, at the tiny
size (every section, a few seconds each), writing JSON with every required key."""

from __future__ import annotations

import json
import numbers
import subprocess
import sys
from pathlib import Path

from lstm_assets.bench.config import REQUIRED_KEYS

ROOT = Path(__file__).resolve().parents[1]


def test_bench_command_writes_every_required_key(tmp_path: Path) -> None:
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    proc = subprocess.run(
        [sys.executable, "-m", "lstm_assets.cli", "bench", "--tiny", "--json", str(out),
         "--markdown", str(md), "--workdir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    for key in REQUIRED_KEYS:
        assert key in data, key
        v = data[key]
        assert v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool)), (key, v)
        if not key.startswith("gpu_"):  # every CPU figure is measured
            assert v is not None, key
    assert data["meta"]["size"] == "tiny"
    assert data["data_stages_vs_bare_read"] > 0
    # the table printed is the one written, with the bare-read ratio's row and its target
    table = md.read_text()
    assert table in proc.stdout
    assert "bare pyarrow read + numpy scale" in table and "<= 3.2x" in table


def test_bench_command_rejects_an_unknown_section(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lstm_assets.bench.cli", "--tiny", "--sections", "data,nope"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert "unknown section(s) ['nope']" in proc.stderr
