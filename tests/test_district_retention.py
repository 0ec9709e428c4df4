"""Retention on a real PostgreSQL: monthly event partitions created on demand and dropped
whole past the retention; snapshots pruned by age, then oldest first to a total size; the
sample of rejected payloads trimmed while its totals stay exact."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from district.config import Retention
from district.recorder import retention
from district.recorder.messages import Rejected, Snapshot, classify
from district.recorder.store import write_batch
from tests.support_recorder import count, rows

pytestmark = [pytest.mark.postgres]

NOW = datetime(2026, 11, 30, 7, 0, tzinfo=timezone.utc)


def _event(seq: int, ts: datetime) -> tuple[str, bytes]:
    e = {"campus": "lincoln", "door": "main", "epoch": "e" * 32, "id": str(uuid.uuid4()), "seq": seq,
         "type": "door_opened", "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
    return "entry/lincoln/main/events", json.dumps(e).encode()


def _write(pg, items) -> None:
    with pg.connect() as conn:
        write_batch(conn, items, 64, set())


def _partitions(pg) -> list[str]:
    return [r[0] for r in rows(pg, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                                   " WHERE i.inhparent = 'events'::regclass ORDER BY 1")]


def _run(pg, policy: Retention, keep: int) -> retention.Pruned:
    with pg.connect(autocommit=True) as conn:
        return retention.run(conn, policy, keep, now=NOW)


def test_months_back() -> None:
    assert retention.months_back(NOW, 0) == datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert retention.months_back(NOW, 11) == datetime(2025, 12, 1, tzinfo=timezone.utc)
    assert retention.months_back(NOW, 24) == datetime(2024, 11, 1, tzinfo=timezone.utc)


def test_old_monthly_partitions_are_dropped_whole(pg) -> None:
    with pg.connect() as conn:
        conn.execute("INSERT INTO campuses (campus) VALUES ('lincoln')")
    when = [datetime(2024, 5, 3, tzinfo=timezone.utc), datetime(2024, 10, 31, 23, 59, tzinfo=timezone.utc),
            datetime(2024, 11, 1, 0, 0, 1, tzinfo=timezone.utc), datetime(2026, 11, 29, tzinfo=timezone.utc)]
    _write(pg, [classify(*_event(i + 1, t), "entry", {"lincoln"}, 1000) for i, t in enumerate(when)])
    assert _partitions(pg) == ["events_2024_05", "events_2024_10", "events_2024_11", "events_2026_11"]
    pruned = _run(pg, Retention(events_months=24), 100)
    assert pruned.ran and pruned.partitions == ["events_2024_05", "events_2024_10"]
    assert _partitions(pg) == ["events_2024_11", "events_2026_11"]
    assert rows(pg, "SELECT seq FROM events ORDER BY seq") == [(3,), (4,)]
    assert rows(pg, "SELECT seq FROM event_keys ORDER BY seq") == [(3,), (4,)]   # the ledger follows
    again = _run(pg, Retention(events_months=24), 100)
    assert again.partitions == []


def test_snapshots_by_age_then_total_size_and_rejected_sample_capped(pg) -> None:
    with pg.connect() as conn:
        conn.execute("INSERT INTO campuses (campus) VALUES ('lincoln')")
    snaps = [Snapshot("lincoln", "main", f"r{i}", b"\xff\xd8" + bytes(998)) for i in range(6)]   # hashed by PostgreSQL
    _write(pg, snaps)
    ages = [200, 95, 30, 3, 2, 1]            # days old, oldest first
    with pg.connect() as conn:
        for snap, days in zip(snaps, ages, strict=False):
            conn.execute("UPDATE snapshots SET received_at = %s WHERE request_id = %s",
                         (NOW - timedelta(days=days), snap.request_id))
    _write(pg, [Rejected("entry/x/y/events", "invalid_json", "", b"{" * 100) for _ in range(30)])
    policy = Retention(snapshots_days=90, snapshots_max_bytes=2500)
    pruned = _run(pg, policy, 10)
    assert pruned.snapshots_by_age == 2                      # 200 and 95 days old
    assert pruned.snapshots_by_size == 2                     # 4 x 1000 bytes left > 2500: the 2 oldest go
    assert rows(pg, "SELECT request_id FROM snapshots ORDER BY request_id") == [("r4",), ("r5",)]
    assert count(pg, "SELECT count(*) FROM rejected_payloads") == 10
    assert count(pg, "SELECT max(length(payload)) FROM rejected_payloads") == 64
    assert rows(pg, "SELECT count FROM rejected_totals") == [(30,)]


def test_only_one_instance_runs_retention_at_a_time(pg) -> None:
    holder = pg.connect()
    holder.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (retention.LOCK,))   # another instance
    try:
        assert _run(pg, Retention(), 10).ran is False
    finally:
        holder.rollback()
        holder.close()
    assert _run(pg, Retention(), 10).ran is True
