"""The real daemon as a subprocess for footprint, start-up and memory-growth measures.

It runs ``entry-buzzer simulate --console`` (MockFactory pins, simulated camera) and is driven
through the console, so the measured process is exactly the daemon, nothing of the benchmark.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .stats import free_port

ROOT = Path(__file__).parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS   # utime + stime


class DaemonProcess:
    def __init__(self, state_dir: Path, config_text: str, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None):
        self.state_dir = state_dir
        config = state_dir.parent / f"{state_dir.name}.toml"
        config.write_text(config_text)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "entry_buzzer", "simulate", "--console", "--json", "--state-dir", str(state_dir),
             "--config", str(config), *(extra_args or [])],
            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def expect(self, text: str, timeout: float = 60) -> str:
        end = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            if text in line:
                return line

    def command(self, line: str, reply: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.expect(reply)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        code = self.proc.wait(30)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass
        return code


def ring_cycles(d: DaemonProcess, n: int, approve: bool) -> None:
    """n rings, each pressed then approved (or denied): the daemon's whole ring path."""
    for _ in range(n):
        d.command("press", "pressed")
        d.command("approve" if approve else "deny", '"code":')     # the console's --json answer


def startup_to_ready(config_text: str, runs: int) -> list[float]:
    """Process start to READY=1 on a notify socket, like systemd's Type=notify sees it."""
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "notify.sock")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            sock.settimeout(30)
            started = time.perf_counter()
            d = DaemonProcess(Path(tmp) / "state", config_text, ["--no-web", "--no-mqtt"],
                              env={"NOTIFY_SOCKET": path})
            try:
                while True:
                    msg = sock.recv(4096).decode()
                    if "READY=1" in msg:
                        times.append(time.perf_counter() - started)
                        break
            finally:
                d.stop()
                sock.close()
    return times


def footprint(config_text: str, rings: int, idle_seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        d = DaemonProcess(Path(tmp) / "state", config_text, ["--no-mqtt", "--port", str(free_port())])
        try:
            d.expect("simulated campus ready")
            ring_cycles(d, rings, approve=False)
            time.sleep(1.0)   # let snapshot threads finish
            rss = rss_bytes(d.pid)
            cpu0, t0 = cpu_seconds(d.pid), time.monotonic()
            time.sleep(idle_seconds)
            cpu1, t1 = cpu_seconds(d.pid), time.monotonic()
        finally:
            d.stop()
    return {"rss_mb": rss / 1e6, "idle_cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0), "rings": rings,
            "idle_seconds": round(t1 - t0, 1)}


def memory_growth(config_text: str, cycles: int, warmup: int = 200) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        d = DaemonProcess(Path(tmp) / "state", config_text, ["--no-mqtt", "--no-web"])
        try:
            d.expect("simulated campus ready")
            ring_cycles(d, warmup, approve=True)
            time.sleep(0.5)
            before = rss_bytes(d.pid)
            started = time.monotonic()
            ring_cycles(d, cycles, approve=True)
            time.sleep(0.5)
            after = rss_bytes(d.pid)
            seconds = time.monotonic() - started
        finally:
            d.stop()
    return {"rss_before_mb": before / 1e6, "rss_after_mb": after / 1e6,
            "growth_mb": (after - before) / 1e6, "cycles": cycles, "seconds": round(seconds, 1)}
