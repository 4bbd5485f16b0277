"""What ``lstm-assets backfill --wait`` shows while it waits: symbols done / failed / to go,
the runs in progress, an estimate of the time left; counted from fake backfill data."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pytest

from lstm_assets.defs.console import format_seconds
from lstm_assets.orchestration_cli import (
    BackfillProgress,
    ProgressReporter,
    estimate_left,
    progress_line,
    run_label,
    symbol_counts,
)

ASSETS = ["raw_features", "clean_frames", "sequence_tensors", "lstm_model", "evaluation_report"]


@dataclass
class FakePartitions:
    keys: list[str]

    def get_partition_keys(self) -> list[str]:
        return self.keys


@dataclass
class FakeSubset:
    """The part of Dagster's ``AssetGraphSubset`` the counting reads."""

    partitions_subsets_by_asset_key: dict[str, FakePartitions] = field(default_factory=dict)


def _subset(**by_asset: list[str]) -> FakeSubset:
    return FakeSubset({a: FakePartitions(k) for a, k in by_asset.items()})


@dataclass
class FakeBackfillData:
    target_subset: FakeSubset
    materialized_subset: FakeSubset
    failed_and_downstream_subset: FakeSubset


SYMS = [f"S{i:03d}" for i in range(10)]


def test_symbol_counts_done_failed_to_go() -> None:
    data = FakeBackfillData(
        target_subset=_subset(**{a: SYMS for a in ASSETS}),
        # the data step is done for all but S009; two model ranges are done
        materialized_subset=_subset(**{a: SYMS[:9] for a in ASSETS[:3]},
                                    lstm_model=SYMS[:6], evaluation_report=SYMS[:5]),
        # S009's raw file failed: Dagster marks its later assets failed as well
        failed_and_downstream_subset=_subset(**{a: ["S009"] for a in ASSETS}),
    )
    assert symbol_counts(data, ASSETS) == (10, 5, 1)
    nothing_yet = FakeBackfillData(_subset(**{a: SYMS for a in ASSETS}), _subset(), _subset())
    assert symbol_counts(nothing_yet, ASSETS) == (10, 0, 0)


def test_symbol_counts_a_retried_symbol_that_succeeded_is_done_not_failed() -> None:
    data = FakeBackfillData(_subset(**{a: ["A", "B"] for a in ASSETS}),
                            _subset(evaluation_report=["A", "B"]),
                            _subset(lstm_model=["B"], evaluation_report=["B"]))
    assert symbol_counts(data, ASSETS) == (2, 2, 0)


def test_symbol_counts_materialized_since_the_daemon_tick() -> None:
    """The daemon updates the backfill's data once per tick; a symbol whose report was
    materialized since counts as done at once (a failed one stays failed until then)."""
    data = FakeBackfillData(_subset(**{a: ["A", "B", "C"] for a in ASSETS}),
                            _subset(evaluation_report=["A"]),
                            _subset(evaluation_report=["C"]))
    assert symbol_counts(data, ASSETS, also_done={"B", "OTHER"}) == (3, 2, 1)


def test_run_label_range_single_partition_and_time() -> None:
    rng = {"dagster/asset_partition_range_start": "SYN021",
           "dagster/asset_partition_range_end": "SYN040"}
    assert run_label("symbol_model", rng, 80.4) == "symbol_model SYN021..SYN040 (1m20s)"
    assert run_label("symbol_data", {"dagster/partition": "AAPL"}) == "symbol_data AAPL"
    one = {"dagster/asset_partition_range_start": "X", "dagster/asset_partition_range_end": "X"}
    assert run_label("symbol_model", one, 5) == "symbol_model X (5s)"
    assert run_label("leaderboard_job", {}) == "leaderboard_job"


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (44.6, "45s"), (60, "1m00s"), (485, "8m05s"), (3720, "1h02m"), (-3, "0s")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_estimate_and_line() -> None:
    start = BackfillProgress(total=164)
    assert start.to_go == 164 and estimate_left(start, 30.0) is None
    assert progress_line(start, 30.0, "REQUESTED") == (
        "REQUESTED: 0 done, 0 failed, 164 to go of 164 symbols")
    mid = BackfillProgress(total=164, done=40, failed=1,
                           running=("symbol_model SYN041..SYN060 (1m20s)",), queued_runs=2)
    assert mid.to_go == 123
    assert estimate_left(mid, 41 * 6.0) == pytest.approx(123 * 6.0)
    assert progress_line(mid, 246.0, "REQUESTED") == (
        "REQUESTED: 40 done, 1 failed, 123 to go of 164 symbols | running symbol_model "
        "SYN041..SYN060 (1m20s) | 2 run(s) queued | about 12m18s left")
    done = BackfillProgress(total=164, done=163, failed=1)
    assert estimate_left(done, 600.0) is None
    assert progress_line(done, 600.0, "COMPLETED_FAILED").endswith("0 to go of 164 symbols")


def test_plain_reporter_prints_on_change_and_every_interval() -> None:
    out = io.StringIO()
    rep = ProgressReporter("abc", tty=False, every_s=20.0, out=out)
    p = BackfillProgress(total=4)
    for t in (0.0, 2.0, 10.0, 21.0, 23.0):  # the first poll, then every 20 s
        rep.update("REQUESTED", p, t)
    rep.update("COMPLETED_SUCCESS", BackfillProgress(total=4, done=4), 24.0)  # a change
    rep.close()
    lines = out.getvalue().splitlines()
    assert [line.split("]")[0].strip("[ ") for line in lines] == ["0s", "21s", "24s"]
    assert lines[0] == "[     0s] backfill abc: REQUESTED: 0 done, 0 failed, 4 to go of 4 symbols"
    assert lines[-1].endswith("COMPLETED_SUCCESS: 4 done, 0 failed, 0 to go of 4 symbols")
    # without counts (they could not be read) the line still names the status
    rep2 = ProgressReporter("abc", tty=False, out=(out2 := io.StringIO()))
    rep2.update("REQUESTED", None, 0.0)
    assert out2.getvalue() == "[     0s] backfill abc: REQUESTED\n"


def test_tty_reporter_draws_a_bar_over_symbols(capsys: pytest.CaptureFixture[str]) -> None:
    rep = ProgressReporter("abc", tty=True)
    rep.update("REQUESTED", BackfillProgress(total=4, running=("symbol_data S1..S4 (3s)",)), 3)
    assert rep.bar is not None and rep.bar.n == 0 and rep.bar.total == 4
    rep.update("REQUESTED", BackfillProgress(total=4, done=2, failed=1), 9.0)
    assert rep.bar.n == 3
    rep.close()
    err = capsys.readouterr().err
    assert "backfill abc: REQUESTED" in err and "2 done, 1 failed" in err
