"""Test helpers for the deployment tests: a systemd notify socket and unit-file staging.

NotifySocket is the receiving end of systemd's $NOTIFY_SOCKET datagram protocol, so
the tests can see exactly what the daemon tells systemd (READY=1, WATCHDOG=1, ...).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SYSTEMD_DIR = REPO / "systemd"
UNITS = sorted(p.name for p in SYSTEMD_DIR.glob("*.service"))
INSTALLED_BINARY = "/opt/entry-buzzer/venv/bin/entry-buzzer"


class NotifySocket:
    """A bound AF_UNIX datagram socket collecting sd_notify messages on a thread.

    The path lives in a short temp dir (sun_path is limited to 108 bytes).
    """

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="eb-notify-", dir="/tmp")
        self.path = os.path.join(self._dir, "notify.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.1)
        self.messages: "queue.Queue[str]" = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._recv, name="notify-socket", daemon=True)
        self._thread.start()

    def _recv(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            for line in data.decode(errors="replace").splitlines():
                self.messages.put(line)

    def wait_for(self, wanted: str, timeout: float = 30.0) -> list[str]:
        """Block until a message line equal to ``wanted`` arrives; return the lines seen (inclusive)."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {wanted!r} within {timeout}s; got {seen!r}")
            try:
                line = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            seen.append(line)
            if line == wanted:
                return seen

    def drain(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "NotifySocket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stage_units(dest: Path, names: list[str] | None = None) -> tuple[Path, list[Path]]:
    """Copy the unit files to ``dest`` with the installed binary path replaced by a real
    executable script there, so `systemd-analyze verify` can resolve every Exec line."""
    dest.mkdir(parents=True, exist_ok=True)
    fake = dest / "entry-buzzer"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    staged = []
    for name in names or UNITS:
        text = (SYSTEMD_DIR / name).read_text()
        assert INSTALLED_BINARY in text, f"{name} does not run {INSTALLED_BINARY}"
        out = dest / name
        out.write_text(text.replace(INSTALLED_BINARY, str(fake)))
        staged.append(out)
    return fake, staged


# --- systemd-analyze, shared by tests/test_systemd.py (campus units) and test_systemd_district.py
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


def systemd_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(SYSTEMD_LOG_LEVEL="info", SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER="", LC_ALL="C.UTF-8")
    return env


def unit_directives(path: Path) -> dict[str, list[str]]:
    """Unit file -> {Key: [values...]} (systemd allows repeated keys)."""
    out: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def systemd_verify(paths: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", *map(str, paths)],
                          cwd=cwd, env=systemd_env(), capture_output=True, text=True, timeout=120)


def exposure(path: Path) -> float:
    """`systemd-analyze security --offline=true` overall exposure score of one unit file."""
    result = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(path)],
                            env=systemd_env(), capture_output=True, text=True, timeout=120)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, f"no exposure score in output:\n{result.stdout}\n{result.stderr}"
    return float(match.group(1))
