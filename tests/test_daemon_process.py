"""The daemon as a real subprocess: signals relock and journal the stop; SIGKILL restarts locked."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from controller import events as ev
from controller.journal import Journal

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.process


class Daemon:
    """`entry-buzzer simulate --console` in a subprocess, driven through its console."""

    def __init__(self, state_dir: Path, config: Path):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "entry_buzzer", "simulate", "--no-web", "--no-mqtt", "--console",
             "--state-dir", str(state_dir), "--config", str(config)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.expect("simulated campus ready")

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def expect(self, text: str, timeout: float = 30) -> str:
        seen = []
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"never saw {text!r}; output was:\n{''.join(seen)}") from None
            seen.append(line)
            if text in line:
                return line

    def expect_any(self, *texts: str, timeout: float = 30) -> str:
        """The next line holding any of texts (an answer that may go either way)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"never saw any of {texts!r}") from None
            if any(t in line for t in texts):
                return line

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


@pytest.fixture
def config(tmp_path):
    p = tmp_path / "config.toml"
    p.write_text("[door]\nunlock_seconds = 25\nring_timeout_seconds = 120\n")
    return p


def events_in(state_dir: Path) -> list[ev.Event]:
    j = Journal(state_dir / "journal.sqlite3", "x", "y")
    try:
        return list(reversed(j.query(limit=1000)))
    finally:
        j.close()


def start_pulse(d: Daemon) -> None:
    d.send("press")
    d.expect("pressed")
    d.send("approve")
    d.expect("Approved: the door is unlocked")
    d.send("status")
    assert "strike pin ON (unlocked)" in d.expect("strike pin")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_pulse_relocks_journals_stop_and_exits_0(tmp_path, config, sig):
    state = tmp_path / "state"
    d = Daemon(state, config)
    try:
        start_pulse(d)
        d.proc.send_signal(sig)
        assert d.proc.wait(30) == 0
    finally:
        d.close()
    events = events_in(state)
    locked = [e for e in events if e.type == ev.DOOR_LOCKED]
    assert locked and locked[-1].data["reason"] == f"signal {sig.name}"
    assert events[-1].type == ev.CONTROLLER_STOPPED
    assert events[-1].data["reason"] == f"signal {sig.name}"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


def test_restart_after_sigkill_starts_locked_and_journals_unclean_stop(tmp_path, config):
    state = tmp_path / "state"
    d = Daemon(state, config)
    try:
        start_pulse(d)
        d.proc.send_signal(signal.SIGKILL)
        assert d.proc.wait(30) == -signal.SIGKILL
    finally:
        d.close()
    kinds = [e.type for e in events_in(state)]
    # died mid-pulse: the unlock is the last door event (a snapshot may still have landed after it)
    assert ev.DOOR_UNLOCKED in kinds and ev.DOOR_LOCKED not in kinds[kinds.index(ev.DOOR_UNLOCKED):]
    assert ev.CONTROLLER_STOPPED not in kinds

    d = Daemon(state, config)
    try:
        d.send("status")
        status = d.expect("strike pin")
        assert "strike pin off (locked)" in status and status.startswith("Door locked")
        d.send("quit")
        assert d.proc.wait(30) == 0
    finally:
        d.close()
    started = [e for e in events_in(state) if e.type == ev.CONTROLLER_STARTED]
    assert [e.data["previous_stop"] for e in started] == ["none", "unclean"]
    assert events_in(state)[-1].type == ev.CONTROLLER_STOPPED


def test_relock_command_as_a_process(tmp_path, config):
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    proc = subprocess.run([sys.executable, "-m", "entry_buzzer", "relock", "--config", str(config)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "strike on GPIO 17 driven locked" in proc.stdout


def test_relock_with_bad_config_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[gpio]\nstrike_pin = 3\n")
    proc = subprocess.run([sys.executable, "-m", "entry_buzzer", "relock", "--config", str(bad)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "gpio.strike_pin" in proc.stderr and "Traceback" not in proc.stderr


def test_simulated_campus_runs_and_stops_cleanly(tmp_path):
    state = tmp_path / "sim"
    proc = subprocess.run([sys.executable, "-m", "entry_buzzer", "simulate", "--no-web", "--no-mqtt",
                           "--state-dir", str(state), "--duration", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "simulated campus ready" in proc.stdout
    kinds = [e.type for e in events_in(state)]
    assert kinds[0] == ev.CONTROLLER_STARTED and kinds[-1] == ev.CONTROLLER_STOPPED
