"""``lstm-assets run``'s demo: the quick and the full sizes and settings, the user's settings
winning over the demo's, a demo of another size rewritten, and the progress it prints."""

from __future__ import annotations

import argparse
import io
import json
import logging
from pathlib import Path

import dagster as dg
import pytest

from lstm_assets import cli
from lstm_assets.core.demo import DemoSpec, generate
from lstm_assets.defs import console
from lstm_assets.defs.console import RunProgress

TINY_SET = ["lookback=10", "hidden_size=8", "num_layers=1", "max_epochs=2",
            "bootstrap_samples=50", "device=cpu", "num_threads=1", "stack_symbols=1"]


def _args(*argv: str) -> argparse.Namespace:
    ns = argparse.Namespace(full=False, demo_symbols=0, demo_years=0, set=[])
    for a in argv:
        if a == "--full":
            ns.full = True
        else:
            ns.set.append(a)
    return ns


def test_quick_demo_by_default_full_demo_one_option_away() -> None:
    quick, full = cli.demo_plan(_args()), cli.demo_plan(_args("--full"))
    assert (quick.symbols, quick.years) == (cli.DEFAULT_RUN_SYMBOLS, cli.DEFAULT_RUN_YEARS)
    assert (full.symbols, full.years) == (8, 20)
    sized = cli.demo_plan(argparse.Namespace(full=True, demo_symbols=3, demo_years=5, set=[]))
    assert (sized.symbols, sized.years) == (3, 5)


def test_run_settings_defaults_then_env_then_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from lstm_assets.core.settings import Settings

    monkeypatch.delenv("LSTM_SETTINGS", raising=False)
    assert cli.run_settings(_args()) == Settings()  # the demo trains with the defaults
    monkeypatch.setenv("LSTM_SETTINGS", json.dumps({"bootstrap_samples": 50, "max_epochs": 7}))
    settings = cli.run_settings(_args("max_epochs=60"))  # --set wins over the env
    assert (settings.max_epochs, settings.bootstrap_samples) == (60, 50)


def test_demo_detected_and_rewritten_own_files_left_alone(tmp_path: Path) -> None:
    raw, wh = tmp_path / "raw", tmp_path / "wh"
    plan = cli.DemoPlan(symbols=2, years=3)
    assert cli.prepare_demo(raw, str(wh), plan)  # empty: written
    assert sorted(p.name for p in raw.iterdir()) == ["SYN001.csv", "SYN002.csv"]
    assert cli.prepare_demo(raw, str(wh), plan)  # the same demo: used as it is
    (wh / "evaluation_report").mkdir(parents=True)
    (wh / "evaluation_report" / "SYN002.json").write_text("{}")
    smaller = cli.DemoPlan(symbols=1, years=3)
    assert cli.prepare_demo(raw, str(wh), smaller)  # another size: rewritten
    assert [p.name for p in raw.iterdir()] == ["SYN001.csv"]
    assert not (wh / "evaluation_report" / "SYN002.json").exists()
    (raw / "MINE.csv").write_text("date,close\n2020-01-01,1\n")  # someone's own file
    assert not cli.prepare_demo(raw, str(wh), plan)
    assert (raw / "MINE.csv").exists() and not (raw / "SYN002.csv").exists()


def test_progress_without_a_terminal_is_plain_lines() -> None:
    now = [0.0]
    out = io.StringIO()
    with RunProgress(["A", "B"], expected_epochs=10, file=out, every_s=15,
                     clock=lambda: now[0]) as p:
        p.begin("A")
        for stage in ("raw_features", "clean_frames", "sequence_tensors"):
            p.message(f"[A] {stage} ok (0.10 s)")
        for epoch in range(1, 11):
            now[0] += 4
            p.message(f"[A] epoch {epoch}: train_loss 1.0 val_loss 1.0 val_acc 0.500 lr 1e-3 "
                      "(4.0s)")
        p.message("[A] lstm_model ok (40.00 s)")
        p.message("[A] evaluation_report ok (2.00 s)")
        p.symbol_done(1, "A", True, 42.0)
        p.begin("B")
        p.symbol_done(2, "B", False, 1.0, "bad file")
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text  # no bar
    lines = text.splitlines()
    # an epoch line at most every 15 s while training, one line per symbol with the time left
    assert [ln for ln in lines if "epoch" in ln] == [
        "  A lstm_model: epoch 4 val_acc 0.500; about 1m04s left",
        "  A lstm_model: epoch 8 val_acc 0.500; about 55s left"]
    assert lines[-2] == "[1/2] A: ok (42s; about 40s left)"
    assert lines[-1] == "[2/2] B: FAILED (1s): bad file"


def test_console_logger_feeds_the_progress_only_while_it_is_open() -> None:
    def logger() -> logging.Logger:
        ctx = dg.build_init_logger_context(logger_config={"log_level": "WARNING",
                                                          "name": "t"})
        return console.console_logger.logger_fn(ctx)

    got: list[str] = []
    plain = logger()
    assert plain.level == logging.WARNING and len(plain.handlers) == 1
    progress = RunProgress(["A"], expected_epochs=5, file=io.StringIO(), tty=False)
    progress.message = got.append  # type: ignore[method-assign]
    with progress:
        log = logger()
        log.info("x", extra={"dagster_meta": {"orig_message": "[A] raw_features ok (0.1 s)"}})
        log.debug("not this")
    assert got == ["[A] raw_features ok (0.1 s)"]
    assert console._sink is None
    assert all(h.level >= logging.WARNING for h in log.handlers if
               not isinstance(h, console._SinkHandler))


def test_run_writes_the_demo_and_shows_progress(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny demo end to end: every symbol's line with the time left, the leaderboard."""
    import lstm_assets.definitions  # noqa: F401 - built before the command sets its folders

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LSTM_TRUTH_DIR", raising=False)
    monkeypatch.delenv("LSTM_SETTINGS", raising=False)
    sets = [a for kv in TINY_SET for a in ("--set", kv)]
    rc = cli.main(["run", "--raw-dir", str(tmp_path / "raw"), "--warehouse-dir",
                   str(tmp_path / "wh"), "--demo-symbols", "2", "--demo-years", "3", *sets])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "writing 2 demo symbols (3 years, signal mode)" in out
    # one symbol per core: on two cores either may finish first
    assert "[1/2] SYN00" in out and "left)" in out and "[2/2] SYN00" in out
    assert "SYN001: ok (" in out and "SYN002: ok (" in out
    assert "\r" not in out
    board = json.loads((tmp_path / "wh" / "leaderboard.json").read_text())
    assert board["symbols"] == 2 and board["mean"]["oracle_accuracy"]["mean"] > 0.4


def test_generated_demo_matches_its_manifest(tmp_path: Path) -> None:
    generate(tmp_path / "raw", DemoSpec(symbols=1, years=3))
    manifest = cli.demo_manifest(tmp_path / "raw")
    assert manifest is not None and manifest["spec"]["years"] == 3


def test_run_in_worker_processes_gives_the_same_models(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    """``--jobs 2`` runs two symbols at once, each in its own process; the models are those of
    one-at-a-time runs (each run seeds its own training), and a bad file fails only itself."""
    from safetensors.torch import load_file

    import lstm_assets.definitions  # noqa: F401 - built before the command sets its folders

    monkeypatch.delenv("LSTM_TRUTH_DIR", raising=False)
    monkeypatch.delenv("LSTM_SETTINGS", raising=False)
    raw = tmp_path / "raw"
    generate(raw, DemoSpec(symbols=2, years=3, defect_share=0.0))
    (raw / "SYN009.csv").write_text("date,close\n2020-01-01,abc\n")
    sets = [a for kv in TINY_SET for a in ("--set", kv)]
    outs = {}
    for jobs in ("1", "2"):
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / f"home{jobs}"))
        rc = cli.main(["run", "--raw-dir", str(raw), "--warehouse-dir", str(tmp_path / jobs),
                       "--symbols", "SYN001,SYN002,SYN009", "--jobs", jobs, *sets])
        outs[jobs] = capsys.readouterr().out
        assert rc == 1, outs[jobs]  # SYN009 failed, the others did not
        assert "SYN001: ok (" in outs[jobs] and "SYN002: ok (" in outs[jobs]
        assert "SYN009: FAILED" in outs[jobs]
    assert "2 symbols at a time, each in its own process" in outs["2"]
    assert "at a time" not in outs["1"]
    for sym in ("SYN001", "SYN002"):
        one, two = (load_file(str(tmp_path / j / "lstm_model" / f"{sym}.safetensors"))
                    for j in ("1", "2"))
        assert one.keys() == two.keys()
        assert all(one[k].equal(two[k]) for k in one)
