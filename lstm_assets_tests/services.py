"""Local servers for the scale-out tests: PostgreSQL, Redis, moto (S3), and background processes.

Each starts on 127.0.0.1 on a free port with its own temporary data folder and is stopped (its
whole process group) when the context exits. Nothing here touches system-wide services.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent  # the virtualenv's bin (moto_server, dagster, celery)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None,
                  timeout: float = 60.0, log: Path | None = None) -> None:
    """Wait until 127.0.0.1:port accepts connections; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}"
                               + (f"; log:\n{log.read_text()[-3000:]}" if log and log.exists()
                                  else ""))
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s"
                       + (f"; log:\n{log.read_text()[-3000:]}" if log and log.exists() else ""))


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the process group ``proc`` leads (started with start_new_session), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    # children may outlive the leader (e.g. a Celery worker under `dagster-celery worker start`)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def background(args: Sequence[str], log: Path, env: Mapping[str, str] | None = None,
               cwd: str | Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in its own session (so its whole group can be stopped), output to ``log``."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT,
                                env=dict(env) if env is not None else None, cwd=cwd,
                                start_new_session=True)
    try:
        yield proc
    finally:
        stop_group(proc)


# ------------------------------------------------------------------------------- PostgreSQL


def pg_bindir() -> Path | None:
    """Debian's PostgreSQL binaries (newest version), or the ones on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    password: str
    db: str

    def env(self) -> dict[str, str]:
        """The DAGSTER_PG_* variables deploy/postgres/dagster.yaml reads."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port),
                "DAGSTER_PG_USERNAME": self.user, "DAGSTER_PG_PASSWORD": self.password,
                "DAGSTER_PG_DB": self.db}

    def connect(self):  # noqa: ANN201 (psycopg2 connection)
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user,
                                password=self.password, dbname=self.db, connect_timeout=10)


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@contextlib.contextmanager
def postgres_server(db: str = "dagster") -> Iterator[Postgres]:
    """initdb a throw-away cluster, start it on 127.0.0.1:<free port>, create ``db``, stop it.

    PostgreSQL refuses to run as root: under root the cluster belongs to the ``postgres`` user
    (Debian's package creates it), else ``nobody``.
    """
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL binaries not found: apt-get install postgresql")
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        try:
            pwd.getpwnam(user)
        except KeyError:
            user = "nobody"
    # under root the server user must reach the folder: /tmp is world-traversable
    root = Path(tempfile.mkdtemp(prefix="lstm_pg_", dir="/tmp" if user else None))
    if user:
        os.chmod(root, 0o755)
        pw = pwd.getpwnam(user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data, sock, log = root / "data", root / "sock", root / "server.log"
    password = "lstm-test-pw"
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    sock.mkdir()
    if user:
        for p in (pwfile, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    port = free_port()
    run = dict(check=True, capture_output=True, timeout=120, cwd=root)
    try:
        subprocess.run(_as_user([str(bindir / "initdb"), "-D", str(data), "-U", "dagster",
                                 f"--pwfile={pwfile}", "--auth-host=scram-sha-256",
                                 "--auth-local=trust", "-E", "UTF8", "--locale=C", "-N"],
                                user), **run)
        opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        subprocess.run(_as_user([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log),
                                 "-o", opts, "-w", "-t", "60", "start"], user), **run)
        try:
            server = Postgres("127.0.0.1", port, "dagster", password, "postgres")
            conn = server.connect()
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{db}"')
            conn.close()
            yield Postgres("127.0.0.1", port, "dagster", password, db)
        finally:
            subprocess.run(_as_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                                     "-w", "-t", "60", "stop"], user),
                           capture_output=True, timeout=90, cwd=root)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"{e.cmd}: {e.stderr.decode(errors='replace')}"
                           + (log.read_text() if log.exists() else "")) from e
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------------------------ Redis


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """Debian's redis-server on 127.0.0.1:<free port>, no persistence. Yields its URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server not found: apt-get install redis-server")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "redis.log"
    args = [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--daemonize", "no", "--protected-mode", "yes"]
    with background(args, log) as proc:
        wait_for_port(port, proc, 30, log)
        yield f"redis://127.0.0.1:{port}/0"


# ------------------------------------------------------------------------------ moto (S3)


@contextlib.contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1:<free port>. Yields its endpoint URL."""
    exe = BIN / "moto_server"
    if not exe.exists():
        exe = Path(shutil.which("moto_server") or "moto_server")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "moto.log"
    with background([str(exe), "-H", "127.0.0.1", "-p", str(port)], log) as proc:
        wait_for_port(port, proc, 60, log)
        yield f"http://127.0.0.1:{port}"
