"""The district demo's private servers: a Mosquitto and a PostgreSQL cluster in a temp directory.

Real servers, never the machine's own: each listens on a free port of 127.0.0.1 (the
PostgreSQL socket lives in the temp directory too), so a broker on 1883 or a PostgreSQL on
5432 is neither used nor touched. PostgreSQL refuses to run as root, so as root the cluster
is owned by and run as Debian's ``postgres`` user. Both are stopped by PID and the directory
removed when the demo ends.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MOSQUITTO = "/usr/sbin/mosquitto"

# The demo broker's ACL is the shipped campus ACL (as tests/support_district.py renders it for
# the bridge tests): its per-door blocks for each demo campus, everything else as shipped.
CAMPUS_ACL = Path(__file__).resolve().parent.parent / "systemd" / "mosquitto" / "campus.acl"
SHIPPED_CAMPUS = "lincoln-elementary"
USER_LINE = re.compile(r"^user (\S+)$")


class DemoError(RuntimeError):
    """A demo server could not start; the message says what to install or check."""


def door_account(campus: str, door: str) -> str:
    """The broker account of one demo door (the shipped ACL's ``entry-<door>``, made unique per campus)."""
    return f"entry-{campus}-{door}"


def render_acl(campuses: list[str], doors: tuple[str, ...], shipped: Path = CAMPUS_ACL) -> str:
    """systemd/mosquitto/campus.acl for one broker serving every demo campus directly: each
    ``user entry-<door>`` block once per campus (account ``entry-<campus>-<door>``, the shipped
    campus slug replaced), every other block (district-ro, district-operator, ...) once, as shipped.
    A shipped file that no longer has a demo door's block or the example campus is refused,
    so an edit there cannot silently change what the demo grants."""
    try:
        text = shipped.read_text(encoding="utf-8")
    except OSError as exc:
        raise DemoError(f"cannot read the shipped broker ACL {shipped} ({exc}); run the demo from the source tree")\
            from None
    header: list[str] = []                       # rules before the first ``user`` line (none shipped)
    blocks: dict[str, list[str]] = {}
    current = header
    for raw in text.splitlines():
        line = raw.strip()
        m = USER_LINE.match(line)
        if m:
            current = blocks.setdefault(m.group(1), [])
        elif line and not line.startswith("#"):
            current.append(line)
    missing = [f"user entry-{d}" for d in doors if f"entry-{d}" not in blocks]
    if missing or SHIPPED_CAMPUS not in text:
        raise DemoError(f"{shipped.name} changed: {(missing or [SHIPPED_CAMPUS])[0]!r} not found")
    out = header[:]
    for user, lines in blocks.items():
        door = user.removeprefix("entry-")
        if door not in doors:
            out += ["", f"user {user}", *lines]
            continue
        for campus in campuses:
            out += ["", f"user {door_account(campus, door)}", *(rule.replace(SHIPPED_CAMPUS, campus) for rule in lines)]
    return "\n".join(out).lstrip("\n") + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(proc: subprocess.Popen[bytes], port: int, what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise DemoError(f"{what} exited at start:\n{log.read_text()[-1500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise DemoError(f"{what} did not listen on port {port}") from None
            time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class DemoBroker:
    """Mosquitto with a password file and the shipped campus ACL (``render_acl``): every door,
    the recorder (district-ro) and the board (district-operator) have their own account."""

    def __init__(self, directory: Path, passwords: dict[str, str], acl: str):
        if not Path(MOSQUITTO).is_file() or shutil.which("mosquitto_passwd") is None:
            raise DemoError("mosquitto is not installed; run scripts/bootstrap.sh")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        passwd = self.dir / "passwd"
        for i, (user, password) in enumerate(passwords.items()):
            subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwd), user, password],
                           check=True, capture_output=True)
            secret = self.dir / f"{user}.pass"
            secret.write_text(password + "\n")
            secret.chmod(0o600)
        (self.dir / "acl").write_text(acl)
        lines = [*(["user root"] if os.geteuid() == 0 else []), "per_listener_settings false", "allow_anonymous false",
                 f"password_file {passwd}", f"acl_file {self.dir / 'acl'}", "persistence false",
                 "log_dest stderr", "log_type error", "log_type warning", f"listener {self.port} 127.0.0.1"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.log = self.dir / "mosquitto.log"

    def password_file(self, user: str) -> Path:
        return self.dir / f"{user}.pass"

    def start(self) -> "DemoBroker":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        _wait_port(self.proc, self.port, "mosquitto", self.log)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


def pg_bindir() -> Path:
    """Newest Debian PostgreSQL bin directory (``/usr/lib/postgresql/<version>/bin``, not on
    PATH), else whatever initdb is on PATH. One lookup for the demo, the tests and the bench
    (tests/support_pg.py imports it)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise DemoError("PostgreSQL is not installed; run scripts/district-demo.sh or scripts/bootstrap.sh "
                        "(they install it) or apt-get install postgresql")
    return Path(initdb).parent


class DemoPostgres:
    """``initdb`` in a fresh temp directory, a free port, the socket inside the directory."""

    def __init__(self, dbname: str = "district"):
        self.bindir = pg_bindir()
        self.os_user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.dir = Path(tempfile.mkdtemp(prefix="entry-district-pg-"))   # not below a root-only dir
        self.data, self.sock, self.log = self.dir / "data", self.dir / "sock", self.dir / "postgres.log"
        self.port = free_port()
        self.dbname = dbname
        self.proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(self.os_user)
            except KeyError:
                raise DemoError("running as root needs the 'postgres' user (apt-get install postgresql)") from None
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.dir.chmod(0o700)
        self._as_owner([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        self._as_owner(["mkdir", "-p", str(self.sock)])

    def _as_owner(self, argv: list[str]) -> None:
        program = Path(argv[0]).name
        if os.geteuid() == 0:
            argv = ["runuser", "-u", self.os_user, "--", *argv]
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise DemoError(f"{program} failed: {r.stderr.strip()[-500:]}")

    @property
    def dsn(self) -> str:
        return f"host={self.sock} port={self.port} dbname={self.dbname} user=postgres"

    def start(self) -> "DemoPostgres":
        argv = [str(self.bindir / "postgres"), "-D", str(self.data), "-c", "listen_addresses=127.0.0.1",
                "-c", f"port={self.port}", "-c", f"unix_socket_directories={self.sock}", "-c", "max_connections=60"]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", self.os_user, "--", *argv]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log)
        _wait_port(self.proc, self.port, "postgres", self.log)
        import psycopg
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(f"host={self.sock} port={self.port} dbname=postgres user=postgres",
                                     autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{self.dbname}"')
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
