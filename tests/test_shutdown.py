"""Shutdown is bounded (issue 9, finding 7): a hung camera, a stopped broker and a stuck
panel connection never hold ``controller_stopped`` (or the exit) to systemd's stop timeout.

The real daemon (``entry-buzzer simulate``: mock GPIO, simulated camera) runs as a
subprocess with its panel on a free port and its MQTT link to a private Mosquitto.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller import events as ev
from controller.journal import Journal
from tests.conftest import wait_for
from tests.support_mqtt import free_port, start_broker

ROOT = Path(__file__).parents[1]
pytestmark = [pytest.mark.process, pytest.mark.broker]


def events_in(state_dir: Path) -> list[ev.Event]:
    j = Journal(state_dir / "journal.sqlite3", "x", "y")
    try:
        return list(reversed(j.query(limit=1000)))
    finally:
        j.close()


class Sim:
    def __init__(self, tmp: Path, broker=None, web_port: int | None = None):
        self.state = tmp / "state"
        self.log = tmp / "daemon.log"
        config = tmp / "config.toml"
        text = "[door]\nunlock_seconds = 5\n"
        if broker is not None:
            pw = broker.password_file("ctl")
            text += (f'[mqtt]\nenabled = true\nusername = "ctl"\npassword_file = "{pw}"\n'
                     "reconnect_min_seconds = 0.1\nreconnect_max_seconds = 1.0\n")
        config.write_text(text)
        args = [sys.executable, "-m", "entry_buzzer", "simulate", "--console", "--config", str(config),
                "--state-dir", str(self.state)]
        args += ["--mqtt-port", str(broker.port)] if broker is not None else ["--no-mqtt"]
        args += ["--port", str(web_port)] if web_port else ["--no-web"]
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE, stdout=out,
                                         stderr=subprocess.STDOUT, text=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_for(lambda: "simulated campus ready" in self.log.read_text() or self.proc.poll() is not None,
                 what="the daemon to start")
        assert self.proc.poll() is None, self.log.read_text()[-3000:]

    def send(self, line: str, expect: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        wait_for(lambda: expect in self.log.read_text(), what=expect)

    def terminate_and_time(self, limit: float = 30.0) -> tuple[float, float, int | None]:
        """SIGTERM; return (wall time sent, seconds until the process ended, exit code or None)."""
        sent_wall, sent = time.time(), time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - sent
        if code is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc.stdin.close()
        return sent_wall, took, code


def test_hung_camera_does_not_hold_the_stop(tmp_path: Path) -> None:
    sim = Sim(tmp_path)
    sim.send("camera hang", "camera hang")
    sim.send("press", "pressed")
    time.sleep(0.5)                                   # the capture is now stuck inside the camera
    sent_wall, took, code = sim.terminate_and_time()
    assert code == 0, sim.log.read_text()[-3000:]
    assert took < 6.0, f"stop took {took:.1f}s"
    events = events_in(sim.state)
    assert events[-1].type == ev.CONTROLLER_STOPPED
    assert events[-1].ts.timestamp() - sent_wall < 4.0
    assert events[-1].data["unfinished"] == ["camera"]
    to_stopped = events[-1].ts.timestamp() - sent_wall
    print(f"\nhung camera: SIGTERM to exit {took:.2f}s, to controller_stopped {to_stopped:.2f}s")


def test_stuck_broker_panel_and_camera_together(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "broker")
    panel = None
    try:
        port = free_port()
        sim = Sim(tmp_path, broker=broker, web_port=port)
        sim.send("camera hang", "camera hang")
        sim.send("press", "pressed")
        # a panel connection that never finishes its request: a worker thread waits on it
        panel = socket.create_connection(("127.0.0.1", port), timeout=5)
        panel.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.5)
        os.kill(broker.proc.pid, signal.SIGSTOP)      # the broker hangs: no PUBACK, no DISCONNECT
        sent_wall, took, code = sim.terminate_and_time()
        assert code == 0, sim.log.read_text()[-3000:]
        assert took < 6.0, f"stop took {took:.1f}s"
        events = events_in(sim.state)
        assert events[-1].type == ev.CONTROLLER_STOPPED and events[-1].ts.timestamp() - sent_wall < 4.0
        assert "camera" in events[-1].data["unfinished"]
        print(f"\nstuck broker+panel+camera: SIGTERM to exit {took:.2f}s, "
              f"unfinished {events[-1].data['unfinished']}")
    finally:
        if panel is not None:
            panel.close()
        if broker.proc is not None:
            os.kill(broker.proc.pid, signal.SIGCONT)
        broker.stop()
