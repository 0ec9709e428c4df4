"""The gap scan and a writer lock seq watermark rows in the same order (campus, door, epoch), so
they wait for each other instead of deadlocking. The bench caught the old scan (rows in heap
order) deadlocking with the writer under load; here the interleaving is forced."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from district.recorder import gaps

pytestmark = [pytest.mark.postgres]


def test_gap_scan_and_writer_take_watermark_rows_in_one_order(pg) -> None:
    with pg.connect() as conn:
        for door in ("b-door", "a-door"):          # heap order b, a: the reverse of the key order
            conn.execute("INSERT INTO seq_watermarks (campus, door, epoch, max_seq, first_seen_at)"
                         " VALUES ('lincoln', %s, 'e1', 2, now() - interval '1 hour')", (door,))
            for seq in (1, 2):
                conn.execute("INSERT INTO event_keys (id, campus, door, epoch, seq, ts, received_at)"
                             " VALUES (%s, 'lincoln', %s, 'e1', %s, now(), now() - interval '1 hour')",
                             (uuid.uuid4(), door, seq))
        conn.commit()
    outcome: dict[str, Any] = {}

    def scan() -> None:
        try:
            with psycopg.connect(pg.dsn, autocommit=True) as c:
                outcome["scan"] = gaps.scan(c, delay=0.0)
        except psycopg.Error as exc:
            outcome["scan"] = exc

    writer = psycopg.connect(pg.dsn)
    try:
        writer.execute("SET deadlock_timeout = '200ms'")
        # a writer's batch, in key order: a-door's watermark first ...
        writer.execute("UPDATE seq_watermarks SET max_seq = max_seq WHERE door = 'a-door'")
        scanner = threading.Thread(target=scan, daemon=True)
        scanner.start()
        time.sleep(1.0)                             # the scan is now waiting on a-door (or holds b-door)
        try:                                        # ... then b-door's
            writer.execute("UPDATE seq_watermarks SET max_seq = max_seq WHERE door = 'b-door'")
            writer.commit()
            outcome["writer"] = "committed"
        except psycopg.Error as exc:
            outcome["writer"] = exc
            writer.rollback()
        scanner.join(30)
    finally:
        writer.close()
    assert outcome.get("writer") == "committed", outcome
    assert isinstance(outcome.get("scan"), gaps.ScanResult) and outcome["scan"].ran, outcome
    with pg.connect() as conn:
        assert conn.execute("SELECT door, contiguous_seq FROM seq_watermarks ORDER BY door").fetchall() == \
            [("a-door", 2), ("b-door", 2)]
