"""Measures of the MQTT link's own costs and guarantees: CPU per ring/approve cycle, reconnect
time after a broker outage, and a command flood with valid lockdowns hidden in it.

Every measure runs the real daemon in-process (``latency.InProcessDaemon``: daemon.run on
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
