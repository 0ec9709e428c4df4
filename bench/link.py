"""Measures of the MQTT link's own costs and guarantees: CPU per ring/approve cycle, reconnect
time after a broker outage, and a command flood with valid lockdowns hidden in it.

Every measure runs the real daemon in-process (``latency.InProcessDaemon``: compose.run on
MockFactory pins) against the bench's private Mosquitto.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from controller.simulate import SIM_GPIO
from tests.support_mqtt import Broker

from . import latency


class _JournalWaiter:
    """Wait for journal events without polling (a polling loop would add its own CPU time)."""

    def __init__(self, journal: Any):
        self._cond = threading.Condition()
        self._seen: list[Any] = []
        journal.subscribe(self._on_event)

    def _on_event(self, event: Any) -> None:
        with self._cond:
            self._seen.append(event)
            self._cond.notify_all()

    def wait(self, match: Callable[[Any], bool], timeout: float = 30) -> Any:
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, e in enumerate(self._seen):
                    if match(e):
                        del self._seen[: i + 1]
                        return e
                left = end - time.monotonic()
                if left <= 0:
                    raise RuntimeError("bench: journal event not seen")
                self._cond.wait(left)


def cpu_per_cycle(broker: Broker, n: int, warmup: int = 20) -> dict[str, Any]:
    """Process CPU (all threads: core, journal, MQTT link, panel, snapshot) per ring/approve
    cycle, with one live dashboard open and the MQTT link connected: press the mock buzzer,
    wait for the snapshot, approve, the visitor opens and closes the door, every event is
    acknowledged by the broker. CPU of the daemon process over n cycles / n."""
    with tempfile.TemporaryDirectory() as tmp:
        d = latency.InProcessDaemon(broker, Path(tmp) / "state", web=True)
        client = None
        try:
            d.wait_connected()
            c = d.controller
            assert c is not None
            cookie, _csrf = latency._panel_session(d)
            client = latency.ExternalListener("bench.sse_client", [str(d.web_port), cookie], "connected")
            waiter = _JournalWaiter(c.journal)
            pin = d.factory.pin(SIM_GPIO["buzzer_pin"])
            drained = threading.Event()

            def cycle() -> None:
                pin.drive_low()
                pin.drive_high()
                pressed = waiter.wait(lambda e: e.type == "buzzer_pressed")
                rid = pressed.request_id
                waiter.wait(lambda e: e.request_id == rid and e.type in ("snapshot_captured", "camera_failed"))
                if not c.approve(rid, "Bench Staff").ok:
                    raise RuntimeError("bench: approve refused")
                d.station.set_door(True)
                d.station.set_door(False)
                waiter.wait(lambda e: e.type == "door_locked")
                drain()        # rings are seconds apart at a door: each cycle's events are all
                               # acknowledged before the next ring, as they would be there

            def drain() -> None:
                end = time.monotonic() + 60
                while c.journal.outbox_depth():
                    drained.wait(0.005)
                    if time.monotonic() > end:
                        raise RuntimeError("bench: outbox did not drain")

            for _ in range(warmup):
                cycle()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                cycle()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        finally:
            if client is not None:
                client.close()
            d.stop()
    return {"n": n, "cpu_ms_per_cycle": cpu / n * 1000, "wall_ms_per_cycle": wall / n * 1000}


def reconnect_after_outages(broker: Broker, outages: list[float]) -> dict[str, Any]:
    """Broker stopped for each outage length, then started: seconds from its return until the
    controller (default reconnect settings) is connected again and has published ``online``."""
    from controller.config import MqttSettings

    defaults = MqttSettings()
    with tempfile.TemporaryDirectory() as tmp:
        d = latency.InProcessDaemon(broker, Path(tmp) / "state", mqtt={
            "reconnect_min_seconds": defaults.reconnect_min_seconds,
            "reconnect_max_seconds": defaults.reconnect_max_seconds})
        returns = []
        try:
            d.wait_connected()
            link = d.mqtt_link()
            for outage in outages:
                connects = link.health()["connects"]
                broker.stop()
                while link.health()["connected"]:
                    time.sleep(0.01)
                time.sleep(outage)
                broker.start()
                back = time.perf_counter()
                end = time.monotonic() + 120
                while link.health()["connects"] == connects:
                    if time.monotonic() > end:
                        raise RuntimeError("bench: no reconnect within 120 s")
                    time.sleep(0.01)
                returns.append(time.perf_counter() - back)
        finally:
            d.stop()
    return {"outages_s": outages, "returns_s": [round(r, 2) for r in returns], "max_s": max(returns),
            "reconnect_max_seconds": defaults.reconnect_max_seconds}


FLOOD_JUNK = [b"{not json", b"[]", b'{"action":"start","id":"x"}', b'{"action":"unlock","id":"x","by":"A"}',
              b"x" * 2000, b'{"action":"start","action":"start","id":"d","by":"A"}']


def command_flood(broker: Broker, invalid: int) -> dict[str, Any]:
    """``invalid`` junk commands on cmd/lockdown with one valid lockdown command at the start
    (start), the middle (end) and the end (start): applied and answered how many, and how much
    the journal grew (events and bytes of the SQLite file and its WAL)."""
    with tempfile.TemporaryDirectory() as tmp:
        d = latency.InProcessDaemon(broker, Path(tmp) / "state", mqtt={"allow_remote_lockdown_end": True})
        try:
            d.wait_connected()
            c = d.controller
            assert c is not None
            path = Path(c.journal.path)

            def size() -> int:
                return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())

            waiter = _JournalWaiter(c.journal)
            seq0, bytes0 = c.journal.last_seq, size()
            pub = latency._client(broker, "bench", "bench-flood", inflight=100)
            topic = f"{d.root}/cmd/lockdown"
            valid = {0: ("start", "flood-1"), invalid // 2: ("end", "flood-2"), invalid: ("start", "flood-3")}
            started = time.perf_counter()
            info = None
            for i in range(invalid + 1):
                if i in valid:
                    action, ident = valid[i]
                    info = pub.publish(topic, json.dumps({"action": action, "id": ident, "by": "Bench"}), qos=1)
                if i < invalid:
                    info = pub.publish(topic, FLOOD_JUNK[i % len(FLOOD_JUNK)], qos=1)
            assert info is not None
            info.wait_for_publish(timeout=120)
            published = time.perf_counter() - started
            answered = []
            for _action, ident in valid.values():
                try:
                    waiter.wait(lambda e, i=ident: e.data.get("command_id") == i and e.type in (
                        "lockdown_started", "lockdown_ended", "command_rejected"), timeout=60)
                    answered.append(ident)
                except RuntimeError:
                    pass
            applied = sorted({e.data.get("command_id") for e in c.journal.query(
                types=["lockdown_started", "lockdown_ended"], limit=10) if e.seq > seq0} - {None})
            end = time.monotonic() + 60          # the summary is journaled at the end of its interval
            while True:
                summaries = c.journal.query(types=["commands_rejected"], limit=1000)
                detailed = [e for e in c.journal.query(types=["command_rejected"], limit=10_000) if e.seq > seq0]
                if len(detailed) + sum(e.data["total"] for e in summaries) >= invalid or time.monotonic() > end:
                    break
                time.sleep(0.2)
            latency._close(pub)
            return {"invalid": invalid, "valid": 3, "applied": len(applied), "answered": len(answered),
                    "published_seconds": round(published, 2), "events_added": c.journal.last_seq - seq0,
                    "detailed_rejections": len(detailed), "summaries": len(summaries),
                    "summarized": sum(e.data["total"] for e in summaries),
                    "journal_bytes_added": size() - bytes0, "in_lockdown": c.core.in_lockdown}
        finally:
            d.stop()
