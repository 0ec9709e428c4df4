"""A private PostgreSQL cluster for the district tests (and the bench and demo).

Real server, never one on 5432: ``initdb`` in a fresh temporary directory, a free TCP port on
127.0.0.1 and the unix socket inside that directory, started and stopped by the suite. As
root, the cluster is owned by and run as the ``postgres`` OS user (Debian's package creates
it; PostgreSQL refuses to run as root); otherwise as the current user. Debian's binaries
(``/usr/lib/postgresql/<version>/bin``) are found without a PATH change.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from district import SCHEMA_SQL
from district.demo_services import DemoError, free_port, pg_bindir  # one lookup for demo, tests, bench


class PgCluster:
    """One private postgres: ``start()``, ``dsn``, ``connect()``, ``stop()``, ``destroy()``.

    ``durable=False`` (the tests) turns fsync off: the tests kill recorders, never the
    server, so durability of the server's own files is not under test and the shared disk
    is spared. The bench keeps the defaults (``durable=True``).
    """

    def __init__(self, durable: bool = False, dbname: str = "district"):
        self.bindir = pg_bindir()
        self.os_user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        # Directly under the system temp dir: pytest's tmp_path sits below a 0700 root-only
        # directory the postgres user could not enter.
        self.dir = Path(tempfile.mkdtemp(prefix="entry-pg-"))
        self.data = self.dir / "data"
        self.sockdir = self.dir / "sock"
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        self.dbname = dbname
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam(self.os_user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.dir.chmod(0o700)
        self._as_owner([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        self._as_owner(["mkdir", "-p", str(self.sockdir)])

    def _as_owner(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", self.os_user, "--", *argv]
        return subprocess.run(argv, check=True, capture_output=True, **kwargs)

    @property
    def dsn(self) -> str:
        """libpq connection string over the private unix socket."""
        return f"host={self.sockdir} port={self.port} dbname={self.dbname} user=postgres"

    @property
    def tcp_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={self.dbname} user=postgres"

    def start(self) -> "PgCluster":
        assert self.proc is None, "postgres already running"
        opts = ["listen_addresses=127.0.0.1", f"port={self.port}", f"unix_socket_directories={self.sockdir}",
                "max_connections=60", "shared_buffers=64MB", "logging_collector=off"]
        if not self.durable:
            opts += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        argv = [str(self.bindir / "postgres"), "-D", str(self.data)]
        for o in opts:
            argv += ["-c", o]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", self.os_user, "--", *argv]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"postgres exited at start:\n{self.log.read_text()[-2000:]}")
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-q", "-h", str(self.sockdir),
                                    "-p", str(self.port)], capture_output=True)
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("postgres did not become ready")
            time.sleep(0.1)
        self._ensure_db()
        return self

    def _ensure_db(self) -> None:
        import psycopg

        with psycopg.connect(f"host={self.sockdir} port={self.port} dbname=postgres user=postgres",
                             autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{self.dbname}"')

    def connect(self, **kwargs: Any) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, **kwargs)

    def apply_schema(self) -> None:
        with self.connect(autocommit=True) as conn:
            conn.execute(SCHEMA_SQL.read_text())

    def reset(self) -> None:
        """Empties every district table (between tests sharing one cluster)."""
        with self.connect(autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            conn.execute(SCHEMA_SQL.read_text())

    def stop(self) -> None:
        """Fast shutdown (open sessions are ended), waiting until the server is gone. Through
        pg_ctl: as root the server runs under runuser, which does not pass SIGTERM on."""
        if self.proc is None:
            return
        try:
            self._as_owner([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w",
                            "-t", "60"], timeout=90)
            self.proc.wait(timeout=30)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_pg(durable: bool = False) -> PgCluster:
    try:
        found = (pg_bindir() / "postgres").exists()
    except DemoError as exc:
        pytest.fail(str(exc))
    if not found:
        pytest.fail("PostgreSQL is not installed; run scripts/bootstrap.sh")
    return PgCluster(durable=durable).start()


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL with the district schema applied, one per test module."""
    cluster = start_pg()
    try:
        cluster.apply_schema()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg(pg_cluster: PgCluster) -> PgCluster:
    """The module's cluster with every district table emptied before the test."""
    pg_cluster.reset()
    return pg_cluster
