"""Latency and delivery measures against a private Mosquitto and the real daemon in-process.

The daemon runs through ``entry_buzzer.compose.run`` (the same wiring as production) on gpiozero's MockFactory
with the simulated camera; presses drive the mock buzzer pin, so the measured path is the real
one: GPIO edge -> adapter -> core -> journal commit -> MQTT outbox / panel stream.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from gpiozero.pins.mock import MockFactory

from controller import config as cfg
from controller import daemon
from controller.simulate import SIM_GPIO, SimulatedPin, SimulatedStation
from entry_buzzer import compose
from tests.support_mqtt import Broker

from .stats import free_port, summary_ms

# Rings are spaced like presses at a real door (seconds apart), not back to back: 100 ms lets the
# previous ring's snapshot, its events and their acknowledgements finish first, so each sample
# measures one press, not the tail of the previous ring.
RING_SPACING = 0.1

BENCH_ACCOUNTS = {"bench": "bench-secret", "ctl": "ctl-secret", "district": "district-secret"}
BENCH_ACL = "user bench\ntopic readwrite #\n\nuser ctl\ntopic readwrite entry/#\n\nuser district\ntopic read entry/#\n"


def _client(broker: Broker, user: str, client_id: str, inflight: int = 20) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(inflight)
    c.username_pw_set(user, BENCH_ACCOUNTS[user])
    connected = threading.Event()
    c.on_connect = lambda *_a: connected.set()
    c.connect("127.0.0.1", broker.port, keepalive=30)
    c.loop_start()
    if not connected.wait(20):
        raise RuntimeError("bench client could not connect")
    return c


def _close(c: mqtt.Client) -> None:
    c.disconnect()
    c.loop_stop()


def start_broker(directory: Path) -> Broker:
    broker = Broker(directory, acl=BENCH_ACL, accounts=BENCH_ACCOUNTS)
    # as in systemd/mosquitto/campus.conf: the command flood must not overflow the broker's queue
    broker.conf.write_text(broker.conf.read_text() + "max_queued_messages 100000\n")
    broker.start()
    return broker


def baseline_paho_burst(broker: Broker, n: int) -> dict[str, Any]:
    """Raw paho QoS 1 burst: n publishes as fast as paho takes them, until every PUBACK."""
    pub = _client(broker, "bench", "bench-burst", inflight=100)   # the daemon's window is 100 too
    acked = threading.Event()
    count = [0]

    def on_publish(*_a: Any) -> None:
        count[0] += 1
        if count[0] >= n:
            acked.set()

    pub.on_publish = on_publish
    payload = b'{"id":"00000000-0000-0000-0000-000000000000","seq":1,"type":"door_opened"}'
    started = time.perf_counter()
    for _ in range(n):
        pub.publish("bench/burst", payload, qos=1)
    if not acked.wait(120):
        raise RuntimeError("burst not acknowledged")
    seconds = time.perf_counter() - started
    _close(pub)
    return {"n": n, "seconds": seconds, "per_second": n / seconds}


class InProcessDaemon:
    """compose.run() in a thread with MQTT (and optionally the panel) on the mock pins."""

    def __init__(self, broker: Broker, state_dir: Path, web: bool = False, mqtt: dict[str, Any] | None = None,
                 panic: dict[str, Any] | None = None, **door: Any):
        self.web_port = free_port()
        settings = cfg.with_overrides(
            cfg.Settings(), site={"campus": "bench", "door": "main"}, gpio=SIM_GPIO,
            door={"unlock_seconds": 0.5, "debounce_ms": 0, **door},
            camera={"kind": "simulated", "width": 320, "height": 240},
            storage={"state_dir": state_dir},
            mqtt={"enabled": True, "host": "127.0.0.1", "port": broker.port, "username": "ctl",
                  "password_file": str(broker.password_file("ctl")), "reconnect_min_seconds": 0.1,
                  "reconnect_max_seconds": 0.5, "outbox_alarm_depth": 100_000, **(mqtt or {})},
            web={"enabled": web, "host": "127.0.0.1", "port": self.web_port}, panic=panic or {})
        self.settings = settings
        self.factory = MockFactory(pin_class=SimulatedPin)
        self.station = SimulatedStation(self.factory, settings.gpio)
        self.stop_event = threading.Event()
        ready = threading.Event()
        self.controller: daemon.Controller | None = None

        def on_ready(c: daemon.Controller) -> None:
            self.controller = c
            ready.set()

        self.thread = threading.Thread(
            target=compose.run, name="bench-daemon", daemon=True,
            kwargs=dict(settings=settings, pin_factory=self.factory, simulated=True, station=self.station,
                        on_ready=on_ready,
                        on_built=lambda _c: self.station.settle(), stop_event=self.stop_event))
        self.thread.start()
        if not ready.wait(60):
            raise RuntimeError("daemon did not become ready")
        self.root = f"entry/{settings.site.campus}/{settings.site.door}"

    def mqtt_link(self) -> Any:
        assert self.controller is not None
        return next(s for s in self.controller.services if s.name == "mqtt")

    def wait_connected(self, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while not self.mqtt_link().health()["connected"]:
            if time.monotonic() > end:
                raise RuntimeError("daemon never connected to the broker")
            time.sleep(0.02)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)
        self.factory.reset()


class ExternalListener:
    """A listener in its own process (MQTT subscriber or panel stream client); it prints
    '<perf_counter> <type> <id>' lines, so arrival times come from outside this interpreter."""

    def __init__(self, module: str, args: list[str], ready: str):
        import queue
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-m", module, *args],
                                     cwd=Path(__file__).parents[1], stdout=subprocess.PIPE, text=True)
        self.lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.lines.get(timeout=20).strip()
        if first != ready:
            raise RuntimeError(f"{module} did not start: {first}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def next_of(self, kind: str, timeout: float = 10) -> float:
        """Arrival time (perf_counter) of the next message of this type."""
        end = time.monotonic() + timeout
        while True:
            stamp, got, _ident = self.lines.get(timeout=max(0.01, end - time.monotonic())).split()
            if got == kind:
                return float(stamp)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def ExternalSubscriber(broker: Broker, topic: str, user: str = "district") -> ExternalListener:
    return ExternalListener("bench.subscriber", [str(broker.port), user, BENCH_ACCOUNTS[user], topic],
                            "subscribed")


def _time_presses(d: InProcessDaemon, listener: ExternalListener, n: int) -> list[float]:
    """n rings: mock pin drive_low() to the buzzer_pressed arrival at the listener; each ring is
    then denied and the next one waits RING_SPACING."""
    pin = d.factory.pin(SIM_GPIO["buzzer_pin"])
    c = d.controller
    assert c is not None
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        pin.drive_low()
        samples.append(listener.next_of("buzzer_pressed") - started)
        pin.drive_high()
        ring = c.status()["ring"]
        if ring:
            c.deny(ring["request_id"], "Bench")
        time.sleep(RING_SPACING)   # one ring at a time, as at a real door
    return samples


def panic_vs_press(broker: Broker, n: int) -> dict[str, Any]:
    """The desk panic button's alarm against a buzzer press, alternated in one run: mock pin
    drive_low() to ``alarm_raised`` (panic) and to ``buzzer_pressed`` at an independent subscriber
    process. Issue 13: the district sees a panic within the same latency as a press. The panic is
    acknowledged (as staff on the panel would) before the next one, and starts no lockdown here so
    every press still rings."""
    with tempfile.TemporaryDirectory() as tmp:
        d = InProcessDaemon(broker, Path(tmp) / "state", panic={"starts_lockdown": False})
        try:
            d.wait_connected()
            sub = ExternalSubscriber(broker, f"{d.root}/events")
            c = d.controller
            assert c is not None
            panic_pin = d.factory.pin(SIM_GPIO["panic_pin"])
            presses: list[float] = []
            panics: list[float] = []
            try:
                for _ in range(n):
                    presses += _time_presses(d, sub, 1)
                    started = time.perf_counter()
                    panic_pin.drive_low()
                    panics.append(sub.next_of("alarm_raised") - started)
                    panic_pin.drive_high()
                    if not c.acknowledge_alarm("panic", "Bench").ok:
                        raise RuntimeError("the panic alarm could not be acknowledged")
                    time.sleep(RING_SPACING)
                press, panic = summary_ms(presses), summary_ms(panics)
                return {"press": press, "panic": panic, "ratio_p50": panic["p50_ms"] / press["p50_ms"]}
            finally:
                sub.close()
        finally:
            d.stop()


def outage_drain(broker: Broker, n: int) -> dict[str, Any]:
    """n events journaled while the broker is down; time from its return (and from the
    controller's reconnect, which includes the backoff wait) until every event is acknowledged."""
    with tempfile.TemporaryDirectory() as tmp:
        d = InProcessDaemon(broker, Path(tmp) / "state")
        try:
            d.wait_connected()
            c = d.controller
            assert c is not None
            link = d.mqtt_link()
            while c.journal.outbox_depth():
                time.sleep(0.02)
            broker.stop()
            while link.health()["connected"]:
                time.sleep(0.02)
            delivered_before = link.health()["delivered_count"]
            for i in range(n):
                c.journal.append("door_opened" if i % 2 == 0 else "door_closed", bench=True)
            depth = c.journal.outbox_depth()
            broker.start()
            started = time.perf_counter()
            while not link.health()["connected"]:
                time.sleep(0.001)
            reconnected = time.perf_counter()
            while c.journal.outbox_depth():
                time.sleep(0.001)
            done = time.perf_counter()
            delivered = link.health()["delivered_count"] - delivered_before
        finally:
            d.stop()
    drain = done - reconnected
    return {"n": n, "outbox_depth_at_return": depth, "delivered": delivered, "lost": depth - min(depth, delivered),
            "seconds_from_broker_return": done - started, "reconnect_seconds": reconnected - started,
            "drain_seconds": drain, "per_second": depth / drain if drain > 0 else float("inf")}


def _panel_session(d: InProcessDaemon) -> tuple[str, str]:
    """A signed-in staff session on the daemon's panel: (cookie header, csrf token)."""
    assert d.controller is not None
    web = next(s for s in d.controller.services if s.name == "web")
    store = web.app.extensions["panel_store"]
    if store.get_user("bench") is None:
        store.add_user("bench", "unused-heron-pillow-5", "staff", "Bench Staff")
    token, session = store.create_session(store.get_user("bench"), "127.0.0.1", "bench")
    return f"eb_session={token}", session.csrf


def press_to_panel(broker: Broker, n: int) -> dict[str, Any]:
    """Mock pin drive_low() to the buzzer_pressed event at a panel live-stream client process."""
    with tempfile.TemporaryDirectory() as tmp:
        d = InProcessDaemon(broker, Path(tmp) / "state", web=True)
        try:
            cookie, _csrf = _panel_session(d)
            client = ExternalListener("bench.sse_client", [str(d.web_port), cookie], "connected")
            try:
                return summary_ms(_time_presses(d, client, n))
            finally:
                client.close()
        finally:
            d.stop()


def approve_to_strike(broker: Broker, n: int) -> dict[str, Any]:
    """HTTP request start of POST /api/approve to the strike output turning on, against a bare
    POST on the same server and route (a wrong CSRF token: same parsing, session lookup and
    checks, refused before any action)."""
    import http.client
    import urllib.parse

    with tempfile.TemporaryDirectory() as tmp:
        d = InProcessDaemon(broker, Path(tmp) / "state", web=True)
        try:
            c = d.controller
            assert c is not None
            cookie, csrf = _panel_session(d)
            relay = c.hardware.strike
            energized: list[float] = []
            original_unlock = relay.unlock

            def timed_unlock() -> None:   # instrumentation: when the output pin went on
                original_unlock()
                energized.append(time.perf_counter())

            relay.unlock = timed_unlock   # type: ignore[method-assign]
            conn = http.client.HTTPConnection("127.0.0.1", d.web_port, timeout=30)
            pin = d.factory.pin(SIM_GPIO["buzzer_pin"])

            def post(rid: str, token: str) -> tuple[int, float]:
                body = urllib.parse.urlencode({"request_id": rid})
                started = time.perf_counter()
                conn.request("POST", "/api/approve", body=body, headers={
                    "Cookie": cookie, "X-CSRF-Token": token,
                    "Content-Type": "application/x-www-form-urlencoded"})
                resp = conn.getresponse()
                resp.read()
                return resp.status, started

            approve, bare = [], []
            for _ in range(n):
                pin.drive_low()
                pin.drive_high()
                while not c.status()["ring"]:
                    time.sleep(0.001)
                rid = c.status()["ring"]["request_id"]
                # staff click after seeing the snapshot: let its capture finish first
                while not any(e.type in ("snapshot_captured", "camera_failed") for e in c.journal.for_request(rid)):
                    time.sleep(0.001)
                status, started = post(rid, "wrong-" + csrf)
                bare.append(time.perf_counter() - started)
                if status != 400:
                    raise RuntimeError(f"bare POST answered {status}")
                before = len(energized)
                status, started = post(rid, csrf)
                if status != 200 or len(energized) != before + 1:
                    raise RuntimeError(f"approve answered {status} without one strike pulse")
                approve.append(energized[-1] - started)
                d.station.set_door(True)      # the visitor walks in; closing relocks at once
                d.station.set_door(False)
                time.sleep(RING_SPACING / 2)
            conn.close()
        finally:
            d.stop()
    return {"approve": summary_ms(approve), "bare_post": summary_ms(bare)}
