"""The daemon serves the panel as a Service when web.enabled (entry_buzzer.compose)."""

from __future__ import annotations

import http.client
import socket
import threading

from controller import config as cfg
from controller import daemon
from controller.simulate import SimulatedStation
from entry_buzzer import compose


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_daemon_serves_the_panel_and_stops_it(settings, pin_factory):
    port = free_port()
    s = cfg.with_overrides(settings, web={"enabled": True, "host": "127.0.0.1", "port": port, "threads": 8})
    stop = threading.Event()
    seen: dict[str, object] = {}

    def ready(controller: daemon.Controller) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        try:
            conn.request("GET", "/api/status", headers={"Accept": "application/json"})
            resp = conn.getresponse()
            seen["status"] = resp.status          # the panel is up, and refuses anonymous callers
            resp.read()
        finally:
            conn.close()
        seen["health"] = controller.health()["web"]
        seen["service"] = controller.services[-1]
        stop.set()

    station = SimulatedStation(pin_factory, s.gpio)
    code = compose.run(s, pin_factory=pin_factory, simulated=True, station=station, on_ready=ready,
                       on_built=lambda _c: station.settle(), stop_event=stop)
    assert code == 0
    assert seen["status"] == 401
    assert seen["health"]["running"] is True and seen["health"]["url"] == f"http://127.0.0.1:{port}"
    assert seen["service"].health()["running"] is False           # stopped with the daemon


def test_simulated_campus_prints_a_working_admin_password(tmp_path):
    import re
    import subprocess
    import sys

    from web.store import PanelStore
    port = free_port()
    out = subprocess.run([sys.executable, "-m", "entry_buzzer", "simulate", "--no-mqtt", "--port", str(port),
                          "--state-dir", str(tmp_path), "--duration", "1"],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    password = re.search(r"panel sign-in: admin / (\S+)", out.stdout).group(1)
    store = PanelStore(tmp_path / "panel.sqlite3")
    try:
        assert store.authenticate("admin", password).role == "admin"
    finally:
        store.close()
