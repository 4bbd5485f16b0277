"""A real browser on the Dagster UI: headless Debian Chromium driven by Playwright.

Against a live ``dagster dev`` (webserver + daemon, see ``test_orch_server.py``): open the
asset lineage graph and the data group's graph, open ``symbol_chain_job``, click *Materialize
all…*, pick the partition SYN001, *Launch 1 run*, follow the toast to the run page and wait
there for *Success*. Then open the ``evaluation_report`` asset, pick the partition just
materialized and check what a newcomer reads there: the figures as percentages with their
intervals, and the report itself (*[Show Markdown]*: its heading, the metrics table, the plot).
Screenshots land in the test's tmp folder (their paths are printed).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from lstm_assets.defs.assets import SYMBOL_ASSETS
from lstm_assets_tests.test_orch_server import CHROMIUM, CHROMIUM_ARGS, DagsterDev, shared_server

SYMBOL = "SYN001"


@pytest.fixture(scope="session")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterDev]:
    with shared_server(tmp_path_factory.mktemp("dagster_dev")) as server:
        yield server


@contextlib.contextmanager
def _page() -> Iterator[Any]:
    """A page of headless Debian Chromium (1600 x 1000, 90 s timeouts), closed after use."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
            page.set_default_timeout(90_000)
            yield page
        finally:
            browser.close()


def _dismiss_welcome(page: object) -> None:
    """The first visit may show a 'Join the Dagster community' dialog: skip it."""
    skip = page.get_by_role("button", name="Skip")  # type: ignore[attr-defined]
    if skip.count():
        skip.first.click()


def _full_run_id(server: DagsterDev, short: str) -> str:
    runs = server.graphql("{ runsOrError(limit: 20) { ... on Runs { results { runId } } } }")
    ids = [r["runId"] for r in runs["runsOrError"]["results"] if r["runId"].startswith(short)]
    assert len(ids) == 1, (short, runs)
    return str(ids[0])


def _materialize_all(page: Any, url: str, job: str) -> None:
    """Open a job's page and click *Materialize all…*."""
    page.goto(f"{url}/locations/lstm_assets/jobs/{job}")
    materialize = page.get_by_role("button", name=re.compile("Materialize all"))
    materialize.wait_for()
    page.wait_for_timeout(1500)
    _dismiss_welcome(page)
    materialize.click()


def _follow_launched_run(page: Any, server: DagsterDev) -> str:
    """The toast's run id; open the run page, as the toast's View does, and wait for Success."""
    toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    toast.wait_for()
    short = re.search(r"Launched run ([0-9a-f]{8})", toast.inner_text()).group(1)
    run_id = _full_run_id(server, short)
    page.goto(f"{server.url}/runs/{run_id}")
    page.get_by_text("Success", exact=True).first.wait_for(timeout=240_000)
    return run_id


def _check_report_page(page: Any, url: str, shots: Path) -> None:
    """The evaluation_report asset, partition SYMBOL: the metadata table reads in percentages,
    and *[Show Markdown]* opens the report with its heading, metrics table and plot."""
    page.goto(f"{url}/assets/evaluation_report?view=partitions")
    page.get_by_text(SYMBOL, exact=True).first.click()  # the materialized partition's row
    # the metadata table: "accuracy" reads like "33.6% [23.1, 40.9]", not 0.3355704697986577
    page.get_by_text(re.compile(r"^\d+\.\d% \[\d+\.\d, \d+\.\d\]$")).first.wait_for()
    page.get_by_text(re.compile(r"^[+-]\d+\.\d points \[")).first.wait_for()
    _dismiss_welcome(page)
    page.screenshot(path=shots / "6_report_partition.png")
    page.get_by_text("[Show Markdown]").first.click()
    report = page.get_by_role("dialog")
    report.get_by_role("heading", name=re.compile(f"{SYMBOL} — test split")).wait_for()
    for column in ("accuracy", "balanced acc.", "log loss"):
        report.get_by_role("columnheader", name=column, exact=True).first.wait_for()
    report.get_by_role("cell", name="LSTM model").first.wait_for()
    plot = report.locator("img[src^='data:image/png;base64,']").first
    plot.scroll_into_view_if_needed()
    # the image is decoded and drawn (a broken image has no natural width)
    page.wait_for_function("img => img.complete && img.naturalWidth > 100",
                           arg=plot.element_handle())
    box = plot.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100, box
    page.screenshot(path=shots / "7_report_markdown.png")
    page.keyboard.press("Escape")


def test_browser_materialize_one_symbol_through_the_ui(dagster_dev: DagsterDev,
                                                       tmp_path: Path) -> None:
    assert Path(CHROMIUM).exists(), "Debian chromium is needed (apt-get install chromium)"
    server = dagster_dev
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with _page() as page:

        # the asset graph: global lineage (groups), then the data group's assets
        page.goto(f"{server.url}/asset-groups")
        page.get_by_text("Global asset lineage").wait_for()
        page.get_by_text("signals", exact=True).first.wait_for()
        page.wait_for_timeout(1500)
        _dismiss_welcome(page)
        page.screenshot(path=shots / "1_asset_lineage.png")
        page.goto(f"{server.url}/locations/lstm_assets/asset-groups/data")
        page.get_by_text("sequence_tensors").first.wait_for()
        page.get_by_text("latest_signals").first.wait_for()
        page.wait_for_timeout(1500)
        _dismiss_welcome(page)
        page.screenshot(path=shots / "2_data_assets.png")

        # the per-symbol chain's graph, and a materialization of one symbol
        _materialize_all(page, server.url, "symbol_chain_job")
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Select a partition or create one").click()
        page.get_by_role("menuitem", name=re.compile(f"^{SYMBOL}")).click()
        page.keyboard.press("Escape")  # close the partition menu, not the dialog
        page.screenshot(path=shots / "3_launch_dialog.png")
        t0 = time.time()
        dialog.get_by_role("button", name="Launch 1 run").click()
        run_id = _follow_launched_run(page, server)
        took = time.time() - t0
        page.wait_for_timeout(1000)
        page.screenshot(path=shots / "4_run_success.png")
        page.goto(f"{server.url}/locations/lstm_assets/asset-groups/data")
        page.get_by_text("sequence_tensors").first.wait_for()
        page.wait_for_timeout(2000)
        page.screenshot(path=shots / "5_data_assets_after.png")

        # the report of the partition just materialized, as the UI shows it
        _check_report_page(page, server.url, shots)
    print(f"UI run {run_id} succeeded in {took:.0f} s; screenshots in {shots}")

    with server.instance() as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags.get("dagster/partition") == SYMBOL
        for asset in SYMBOL_ASSETS:
            assert SYMBOL in instance.get_materialized_partitions(dg.AssetKey(asset)), asset
    for name in ("1_asset_lineage.png", "2_data_assets.png", "3_launch_dialog.png",
                 "4_run_success.png", "5_data_assets_after.png", "6_report_partition.png",
                 "7_report_markdown.png"):
        assert (shots / name).stat().st_size > 10_000


def test_browser_scorecard_of_signal_outcomes(dagster_dev: DagsterDev, tmp_path: Path) -> None:
    """After a symbol's chain (the test above): launch ``signals_job`` from its page, then open
    ``signal_outcomes``: the scorecard figures, the Markdown table beside the promised test
    accuracy, and its check."""
    server = dagster_dev
    with server.instance() as instance:
        done = instance.get_materialized_partitions(dg.AssetKey("lstm_model"))
    assert SYMBOL in done, "run after test_browser_materialize_one_symbol_through_the_ui"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with _page() as page:
        _materialize_all(page, server.url, "signals_job")  # unpartitioned: launches
        run_id = _follow_launched_run(page, server)

        page.goto(f"{server.url}/assets/signal_outcomes?view=events")
        page.get_by_text("scorecard", exact=True).first.wait_for()
        _dismiss_welcome(page)
        for key in ("live_accuracy", "promised_test_accuracy", "pending"):
            page.get_by_text(key, exact=True).first.wait_for()  # metadata rows
        # the scorecard's Markdown table, rendered inline in the metadata
        for column in ("live accuracy", "promised", "hit rate (acted)", "P&L bps/signal"):
            page.get_by_role("columnheader", name=column, exact=True).first.wait_for()
        page.get_by_role("cell", name=SYMBOL, exact=True).first.wait_for()
        page.get_by_text(re.compile(r"^\d+\.\d%$")).first.wait_for()  # the promise
        page.screenshot(path=shots / "9_scorecard.png")
        page.goto(f"{server.url}/assets/signal_outcomes?view=checks")
        page.get_by_text("live_accuracy_vs_test").first.wait_for()
        page.wait_for_timeout(1000)
        page.screenshot(path=shots / "10_scorecard_check.png")
    with server.instance() as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        ev = instance.get_latest_materialization_event(dg.AssetKey("signal_outcomes"))
        assert ev is not None and ev.asset_materialization.metadata["signals"].value >= 1
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("signal_outcomes"), "live_accuracy_vs_test")])
        assert check, "the scorecard's check ran with it"
    for name in ("9_scorecard.png", "10_scorecard_check.png"):
        assert (shots / name).stat().st_size > 10_000
