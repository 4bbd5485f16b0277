"""A live ``dagster dev`` (webserver + daemon) for the browser and GraphQL tests (no tests here).

One server per test session, shared by ``test_browser.py`` and ``test_graphql.py``: a temporary
DAGSTER_HOME made from the project's template, temporary raw / warehouse folders with small
demo data, tiny settings (``LSTM_SETTINGS``), automation off (no sensor runs interfere), on
127.0.0.1 and a free port. It is stopped (its whole process tree) when the last user releases
it, and at interpreter exit at the latest.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from lstm_assets.core.demo import DemoSpec, generate

ROOT = Path(__file__).resolve().parent.parent
TINY_SETTINGS = {"lookback": 10, "hidden_size": 8, "num_layers": 1, "max_epochs": 2,
                 "batch_size": 64, "bootstrap_samples": 50, "device": "cpu", "num_threads": 1}
SYMBOLS = ["SYN001", "SYN002", "SYN003", "SYN004", "SYN005"]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DagsterDev:
    """``dagster dev`` with the project's workspace.yaml (code location ``lstm_assets``) on
    temporary folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "dagster_home"
        self.raw = root / "raw"
        self.wh = root / "warehouse"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "dagster_dev.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.users = 0

    # -- life cycle --------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {**os.environ, "DAGSTER_HOME": str(self.home), "LSTM_RAW_DIR": str(self.raw),
                "LSTM_WAREHOUSE_DIR": str(self.wh),
                "LSTM_TRUTH_DIR": str(self.root / "demo_truth"),
                "LSTM_SETTINGS": json.dumps(TINY_SETTINGS), "LSTM_AUTOMATION": "off",
                "LSTM_MAX_CONCURRENT_RUNS": "2", "DAGSTER_DISABLE_TELEMETRY": "1",
                "PYTHONUNBUFFERED": "1"}

    def start(self, timeout: float = 300) -> None:
        generate(self.raw, DemoSpec(symbols=len(SYMBOLS), years=4, seed=3, defect_share=0.0))
        (self.raw / "BAD.csv").write_text("date,close\n2020-01-02,10\n")  # too short: fails
        self.home.mkdir(parents=True)
        from lstm_assets.instance import TEMPLATE, prepare_instance, render_template

        (self.home / "dagster.yaml").write_text(render_template(TEMPLATE.read_text(), 2))
        import dagster as dg

        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            prepare_instance(instance)
            instance.add_dynamic_partitions("symbols", [*SYMBOLS, "BAD"])
        exe = str(Path(sys.executable).parent / "dagster")
        log = open(self.log_path, "wb")  # noqa: SIM115 - owned by the child; closed on stop
        self.proc = subprocess.Popen(
            [exe, "dev", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1",
             "-p", str(self.port)],
            cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        atexit.register(self.stop)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Until the webserver answers GraphQL and the daemons we need are healthy."""
        t0 = time.time()
        need = {"BACKFILL", "QUEUED_RUN_COORDINATOR"}
        last = ""
        while time.time() - t0 < timeout:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited ({self.proc.returncode}):\n"
                                   f"{self.log_tail()}")
            try:
                data = self.graphql("{ instance { daemonHealth { allDaemonStatuses "
                                    "{ daemonType healthy } } } }", timeout=10)
                st = data["instance"]["daemonHealth"]["allDaemonStatuses"]
                healthy = {d["daemonType"] for d in st if d["healthy"]}
                if need <= healthy:
                    return
                last = f"daemons healthy: {sorted(healthy)}"
            except Exception as e:  # not up yet
                last = str(e)
            time.sleep(2)
        raise TimeoutError(f"dagster dev not ready after {timeout:.0f} s ({last}):\n"
                           f"{self.log_tail()}")

    def stop(self) -> None:
        """Stop dagster dev and every process it started (by pid), gently first."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            tree = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        # dagster dev shuts its services down on Ctrl-C; then the group, then force
        for sig, group, wait in ((signal.SIGINT, False, 20), (signal.SIGTERM, True, 10),
                                 (signal.SIGKILL, True, 10)):
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(proc.pid, sig)
                else:
                    proc.send_signal(sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        _, alive = psutil.wait_procs(tree, timeout=10)
        for p in alive:  # children that left the process group
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # -- GraphQL -----------------------------------------------------------------------------

    def graphql(self, query: str, variables: dict[str, Any] | None = None,
                timeout: float = 60) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            out = json.loads(resp.read())
        if out.get("errors"):
            raise RuntimeError(f"GraphQL errors: {out['errors']}")
        return out["data"]

    def instance(self) -> Any:
        import dagster as dg

        return dg.DagsterInstance.from_config(str(self.home))


_SERVER: DagsterDev | None = None


@contextlib.contextmanager
def shared_server(root: Path) -> Iterator[DagsterDev]:
    """The session's server (started on first use, stopped when the last user is done)."""
    global _SERVER
    if _SERVER is None:
        server = DagsterDev(root)
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        _SERVER = server
    server = _SERVER
    server.users += 1
    try:
        yield server
    finally:
        server.users -= 1
        if server.users == 0:
            server.stop()
            _SERVER = None
