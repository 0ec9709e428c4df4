"""Press -> event at an independent MQTT subscriber, with its two raw baselines taken in turn.

Issue 11 asks for press -> event p50 <= 1.2 x (A + B): A a raw paho QoS 1 publish -> subscriber
process, B one durable SQLite commit with the journal's schema and PRAGMAs, both measured at ring
cadence and back to back. Measured in separate phases of a run (30 s of A, then 30 s of B, then
the presses), each phase met a different machine: on this shared 2-core VM the same code gave
1.08 and 1.26 x in two quiet runs minutes apart, because A and B moved as much as the press did.
Here every round takes one sample of each, in a rotating order, each after the same idle gap
(``RING_SPACING``), so the three distributions see the same neighbours and the ratio compares
the code, not the minute. The back-to-back B is a short burst of commits in each round (the
first, which follows the idle gap, is not counted: it is a ring-cadence commit).

Why both B's: on this machine a commit after 100 ms of idle costs 2-3 x one issued right after
another, and spinning the CPU through the gap instead of sleeping does not remove it (the cost
is in the disk path, not in a sleeping core). A ring always follows seconds of quiet, so the
press pays the idle price; the back-to-back ratio is reported as the issue asks, and says how
much of the gap is the disk's.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from controller.journal import PRAGMAS, SCHEMA
from tests.support_mqtt import Broker

from .latency import RING_SPACING, ExternalSubscriber, InProcessDaemon, _client, _close, _time_presses
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


def press_vs_baselines(broker: Broker, n: int, burst: int = 5) -> dict[str, Any]:
    """n rounds of: one press (pin drive_low() -> ``buzzer_pressed`` at a subscriber process,
    then denied), one baseline A sample, one baseline B sample at ring cadence, each after
    ``RING_SPACING`` of idle and in an order that rotates every round; then ``burst`` B commits
    back to back (all but the first counted as back-to-back samples)."""
    with tempfile.TemporaryDirectory() as tmp:
        d = InProcessDaemon(broker, Path(tmp) / "state")
        subs: list[Any] = []
        pub = None
        sqlite_b = SqliteBaseline(Path(tmp) / "baseline-b.sqlite3")
        try:
            d.wait_connected()
            subs.append(ExternalSubscriber(broker, f"{d.root}/events"))
            subs.append(ExternalSubscriber(broker, "bench/a", user="bench"))
            events_sub, a_sub = subs
            pub = _client(broker, "bench", "bench-a-pub")
            a: list[float] = []
            b: list[float] = []
            b2b: list[float] = []
            press: list[float] = []

            def sample_a() -> None:
                started = time.perf_counter()
                pub.publish("bench/a", A_PAYLOAD, qos=1)
                a.append(a_sub.next_of("buzzer_pressed") - started)
                time.sleep(RING_SPACING)

            def sample_b() -> None:
                b.append(sqlite_b.commit())
                time.sleep(RING_SPACING)

            def sample_press() -> None:
                press.extend(_time_presses(d, events_sub, 1))     # denies the ring, then idles

            order = [sample_press, sample_a, sample_b]
            time.sleep(RING_SPACING)
            for i in range(n):
                for k in range(3):
                    order[(i + k) % 3]()
                sqlite_b.commit()                                  # follows the idle gap: not counted
                b2b.extend(sqlite_b.commit() for _ in range(burst - 1))
                time.sleep(RING_SPACING)
        finally:
            if pub is not None:
                _close(pub)
            for sub in subs:
                sub.close()
            sqlite_b.close()
            d.stop()
    sa, sb, sbb, sp = summary_ms(a), summary_ms(b), summary_ms(b2b), summary_ms(press)
    return {"baseline_a_paho_roundtrip": sa, "baseline_b_sqlite_commit": sb, "baseline_b_back_to_back": sbb,
            "press_to_mqtt": {**sp, "interleaved": True,
                              "ratio_cadence": sp["p50_ms"] / (sa["p50_ms"] + sb["p50_ms"]),
                              "ratio_back_to_back": sp["p50_ms"] / (sa["p50_ms"] + sbb["p50_ms"])}}
