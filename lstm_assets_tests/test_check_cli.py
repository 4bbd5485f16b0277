"""``lstm-assets check`` (the data stages only, one line per raw file) and the exit codes a
script can trust: 0 every symbol ok, 1 some symbols failed, 2 could not run at all. The same
codes for ``lstm-assets run`` and ``lstm-assets backfill --wait``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lstm_assets import cli
from lstm_assets.core.demo import DemoSpec, generate

SET = ["--set", "lookback=10"]  # the data stages with a short window: fast, enough rows
BROKEN = "date,open,volume\n2020-01-02,1.0,100\n2020-01-03,1.1,120\n"  # no close column


@pytest.fixture(scope="module")
def good_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 clean demo symbols x 4 years."""
    root = tmp_path_factory.mktemp("check")
    generate(root / "raw", DemoSpec(symbols=2, years=4, seed=13, defect_share=0.0))
    return root / "raw"


@pytest.fixture
def mixed_raw(good_raw: Path, tmp_path: Path) -> Path:
    """The 2 good files and one broken one (BROKEN.csv: no close column)."""
    raw = tmp_path / "raw"
    shutil.copytree(good_raw, raw)
    (raw / "BROKEN.csv").write_text(BROKEN)
    return raw


def test_check_prints_a_line_per_file_and_exits_1_when_one_fails(
        mixed_raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "check.json"
    rc = cli.main(["check", "--raw-dir", str(mixed_raw), "--json", str(out_json), *SET])
    out = capsys.readouterr().out
    assert rc == 1, out
    lines = out.strip().splitlines()
    by_symbol = {line.split(":", 1)[0]: line for line in lines}
    assert {"BROKEN", "SYN001", "SYN002"} <= set(by_symbol), out
    assert "FAILED" in by_symbol["BROKEN"] and "no close price column" in by_symbol["BROKEN"]
    assert "BROKEN.csv" in by_symbol["BROKEN"] and "Fix:" in by_symbol["BROKEN"]
    for sym in ("SYN001", "SYN002"):
        line = by_symbol[sym]
        assert ": ok;" in line and " rows " in line and "adjusted:" in line, line
        assert "price jumps:" in line and "defects:" in line, line
    assert lines[-1].startswith("2 files ok, 1 failed, ") and "with adjustments" in lines[-1]
    records = json.loads(out_json.read_text())
    assert len(records) == 3
    bad = next(r for r in records if r["symbol"] == "BROKEN")
    assert not bad["ok"] and "no close price column" in bad["error"]
    assert bad["error"] in by_symbol["BROKEN"]
    good = [r for r in records if r["ok"]]
    assert len(good) == 2 and all(r["rows"] > 500 and r["first_date"] < r["last_date"]
                                  for r in good)
    assert all(isinstance(r["corporate_actions"], list) and isinstance(r["price_jumps"], list)
               for r in records)


def test_check_all_good_exits_0_and_json_to_stdout(
        mixed_raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wh = tmp_path / "wh"
    rc = cli.main(["check", "--raw-dir", str(mixed_raw), "--symbols", "syn001,SYN002",
                   "--json", "-", "--warehouse-dir", str(wh), *SET])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    records = json.loads(cap.out)  # stdout is the JSON alone; the lines went to stderr
    assert [r["symbol"] for r in records] == ["SYN001", "SYN002"]
    assert all(r["ok"] and r["error"] is None for r in records)
    assert "2 files ok, 0 failed, " in cap.err
    assert (wh / "sequence_tensors").is_dir()  # --warehouse-dir keeps the artifacts


def test_check_exits_2_when_it_cannot_run(tmp_path: Path, good_raw: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "--raw-dir", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["check", "--raw-dir", str(tmp_path / "empty")]) == 2
    assert "no raw files" in capsys.readouterr().err
    assert cli.main(["check", "--raw-dir", str(good_raw), "--symbols", "NOPE"]) == 2
    with pytest.raises(SystemExit) as e:  # a bad --set
        cli.main(["check", "--raw-dir", str(good_raw), "--set", "no_such_setting=1"])
    assert e.value.code == 2 and "no_such_setting" in str(e.value)
    with pytest.raises(SystemExit) as e:  # a bad argument (argparse)
        cli.main(["check", "--no-such-flag"])
    assert e.value.code == 2


def test_run_with_a_broken_file_exits_1(mixed_raw: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`lstm-assets run` where one file is broken: the good symbol is done, the exit code is 1;
    a symbol with no raw file is exit code 2 before anything runs."""
    import lstm_assets.definitions  # noqa: F401 - built before the command sets its folders

    (mixed_raw / "SYN002.csv").unlink()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LSTM_TRUTH_DIR", str(mixed_raw.parent / "demo_truth"))
    tiny = ["--set", "lookback=10", "--set", "hidden_size=8", "--set", "num_layers=1",
            "--set", "max_epochs=2", "--set", "batch_size=64", "--set", "bootstrap_samples=50",
            "--set", "device=cpu", "--set", "num_threads=1", "--set", "stack_symbols=1"]
    args = ["run", "--raw-dir", str(mixed_raw), "--warehouse-dir", str(tmp_path / "wh"), *tiny]
    assert cli.main([*args, "--symbols", "SYN001,NOPE"]) == 2
    rc = cli.main(args)
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "1 symbol(s) failed: BROKEN" in out
    assert (tmp_path / "wh" / "evaluation_report").is_dir()


@pytest.mark.parametrize(("status", "failed_runs", "summary_ok", "code"), [
    ("COMPLETED_SUCCESS", 0, True, 0),
    ("COMPLETED", 0, True, 0),
    ("COMPLETED_SUCCESS", 0, False, 1),  # the leaderboard or signals job failed
    ("COMPLETED_FAILED", 1, True, 1),  # some partitions failed, the others done
    ("COMPLETED", 2, True, 1),
    ("FAILED", 0, True, 1),
    ("CANCELED", 0, True, 1),
    (None, 0, True, 1),  # did not finish within --timeout
])
def test_backfill_wait_exit_code(status: str | None, failed_runs: int, summary_ok: bool,
                                 code: int) -> None:
    from lstm_assets.orchestration_cli import backfill_exit_code

    assert backfill_exit_code(status, failed_runs, summary_ok) == code


def test_backfill_that_cannot_start_exits_2(tmp_path: Path, good_raw: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "empty").mkdir()
    assert cli.main(["backfill", "--raw-dir", str(tmp_path / "empty")]) == 2
    assert cli.main(["backfill", "--raw-dir", str(good_raw), "--symbols", "NOPE"]) == 2
