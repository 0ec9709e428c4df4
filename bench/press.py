"""Press -> event at an independent MQTT subscriber, with its two raw baselines taken in turn.

Issue 11 asks for press -> event p50 <= 1.2 x (A + B): A a raw paho QoS 1 publish -> subscriber
process, B one durable SQLite commit with the journal's schema and PRAGMAs, both measured at ring
cadence and back to back. Measured in separate phases of a run (30 s of A, then 30 s of B, then
the presses), each phase met a different machine: on this shared 2-core VM the same code gave
1.08 and 1.26 x in two quiet runs minutes apart, because A and B moved as much as the press did.
Here every round takes one sample of each, in a shuffled order, each after the same idle gap
(``RING_SPACING``), so the three distributions see the same neighbours and the ratio compares
the code, not the minute. The back-to-back B is a short burst of commits in each round (the
first, which follows the idle gap, is not counted: it is a ring-cadence commit).

A fourth sample per round is the least a press can cost on this machine, the **floor**: the same
gpiozero input device as the buzzer's, on its own mock pin, whose callback does one raw INSERT (baseline B's) and
one publish through the daemon's own MQTT client class, nothing else. The daemon's ratio minus
the floor's is what the door's own code (core, journal, outbox) adds; the floor's ratio is what
the machine adds to A + B (the GPIO dispatch, a second process woken per hop).

Why both B's: on this machine a commit after 100 ms of idle costs 2-3 x one issued right after
another, and spinning the CPU through the gap instead of sleeping does not remove it (the cost
is in the disk path, not in a sleeping core). A ring always follows seconds of quiet, so the
press pays the idle price; the back-to-back ratio is reported as the issue asks, and says how
much of the gap is the disk's.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from gpiozero import DigitalInputDevice
from gpiozero.pins.mock import MockFactory

from controller.journal import PRAGMAS, SCHEMA
from controller.mqtt import connection
from tests.support_mqtt import Broker

from .latency import BENCH_ACCOUNTS, RING_SPACING, ExternalSubscriber, InProcessDaemon, _client, _close, _time_presses
from .stats import summary_ms

A_PAYLOAD = b'{"type":"buzzer_pressed","id":"x","seq":1}'


class SqliteBaseline:
    """Baseline B: one durable commit (WAL, synchronous=FULL, the journal's table and indexes)
    through raw sqlite3, one INSERT per call, as the journal writes a ring."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(str(path), isolation_level=None)
        for pragma in PRAGMAS:
            self.db.execute(pragma)
        self.db.executescript(SCHEMA)
        self.seq = 0

    def commit(self) -> float:
        self.seq += 1
        row = (self.seq, str(uuid.uuid4()), "buzzer_pressed", f"{time.time():.6f}", str(uuid.uuid4()), None,
               '{"presses":1}')
        started = time.perf_counter()
        self.db.execute("INSERT INTO events(seq, id, type, ts, request_id, actor, data) VALUES (?,?,?,?,?,?,?)", row)
        return time.perf_counter() - started

    def close(self) -> None:
        self.db.close()


class MinimalPress:
    """The floor: a mock-pin input (the daemon's kind) whose press does baseline B's commit and one QoS 1 publish
    through the daemon's MQTT client class (direct write, then the CPU hand-over), no more."""

    TOPIC = "bench/floor/events"

    def __init__(self, broker: Broker, directory: Path):
        self.factory = MockFactory()
        self.button = DigitalInputDevice(17, pull_up=True, pin_factory=self.factory)
        self.sqlite = SqliteBaseline(directory / "floor.sqlite3")
        self.client = connection.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-floor",
                                        protocol=mqtt.MQTTv5)
        self.client.username_pw_set("bench", BENCH_ACCOUNTS["bench"])
        connected = threading.Event()
        self.client.on_connect = lambda *_a: connected.set()
        self.client.connect("127.0.0.1", broker.port, keepalive=30)
        self.client.loop_start()
        if not connected.wait(20):
            raise RuntimeError("the floor's client could not connect")
        self.button.when_activated = self._pressed

    def _pressed(self) -> None:
        self.sqlite.commit()
        payload = b'{"type":"buzzer_pressed","id":"%s","seq":1}' % str(uuid.uuid4()).encode()
        self.client.publish(self.TOPIC, payload, qos=1)
        connection.hand_cpu_to_broker()

    def press(self, sub: Any) -> float:
        pin = self.factory.pin(17)
        started = time.perf_counter()
        pin.drive_low()
        arrived = sub.next_of("buzzer_pressed") - started
        pin.drive_high()
        return arrived

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.button.close()
        self.sqlite.close()
        self.factory.reset()


def press_vs_baselines(broker: Broker, n: int, burst: int = 5) -> dict[str, Any]:
    """n rounds of: one press (pin drive_low() -> ``buzzer_pressed`` at a subscriber process,
    then denied), one baseline A sample, one baseline B sample at ring cadence and one floor
    press, each after ``RING_SPACING`` of idle and in a shuffled order each round; then
    ``burst`` B commits back to back (all but the first counted as back-to-back samples)."""
    samples: dict[str, list[float]] = {"a": [], "b": [], "b2b": [], "press": [], "floor": []}
    with tempfile.TemporaryDirectory() as tmp:
        d = InProcessDaemon(broker, Path(tmp) / "state")
        subs: list[Any] = []
        closers: list[Any] = []
        try:
            sqlite_b = SqliteBaseline(Path(tmp) / "baseline-b.sqlite3")
            closers.append(sqlite_b.close)
            floor = MinimalPress(broker, Path(tmp))
            closers.append(floor.close)
            pub = _client(broker, "bench", "bench-a-pub")
            closers.append(lambda: _close(pub))
            d.wait_connected()
            for topic, user in ((f"{d.root}/events", "district"), ("bench/a", "bench"), (MinimalPress.TOPIC, "bench")):
                subs.append(ExternalSubscriber(broker, topic, user=user))
            events_sub, a_sub, floor_sub = subs

            def sample_a() -> float:
                started = time.perf_counter()
                pub.publish("bench/a", A_PAYLOAD, qos=1)
                return a_sub.next_of("buzzer_pressed") - started

            def sample_press() -> float:
                return _time_presses(d, events_sub, 1)[0]     # denies the ring, then idles

            samplers = [("press", sample_press), ("a", sample_a), ("b", sqlite_b.commit),
                        ("floor", lambda: floor.press(floor_sub))]
            time.sleep(RING_SPACING)
            shuffle = random.Random(11).shuffle      # a fresh order each round, the same each run:
            for _ in range(n):                       # no sample always follows the same one
                shuffle(samplers)
                for name, sample in samplers:
                    samples[name].append(sample())
                    if name != "press":
                        time.sleep(RING_SPACING)                   # (_time_presses idles itself)
                sqlite_b.commit()                                  # follows the idle gap: not counted
                samples["b2b"].extend(sqlite_b.commit() for _ in range(burst - 1))
        finally:
            for sub in subs:
                sub.close()
            for close in reversed(closers):
                close()
            d.stop()
    sa, sb, sbb, sp, sf = (summary_ms(samples[k]) for k in ("a", "b", "b2b", "press", "floor"))
    return {"baseline_a_paho_roundtrip": sa, "baseline_b_sqlite_commit": sb, "baseline_b_back_to_back": sbb,
            "press_floor": {**sf, "ratio_cadence": sf["p50_ms"] / (sa["p50_ms"] + sb["p50_ms"]),
                            "ratio_back_to_back": sf["p50_ms"] / (sa["p50_ms"] + sbb["p50_ms"])},
            "press_to_mqtt": {**sp, "interleaved": True,
                              "ratio_cadence": sp["p50_ms"] / (sa["p50_ms"] + sb["p50_ms"]),
                              "ratio_back_to_back": sp["p50_ms"] / (sa["p50_ms"] + sbb["p50_ms"])}}
