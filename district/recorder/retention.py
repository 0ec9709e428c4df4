"""Retention: whole monthly event partitions past ``events_months`` are dropped (cheap: no
row-by-row delete, no bloat); snapshots go by age and then oldest-first until their total
size fits; the sample of rejected payloads is trimmed to its cap (the per-reason totals stay
exact). One recorder at a time (advisory lock); a month is only dropped once all of it is
past the retention."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from district.config import Retention

LOCK = "district_retention"


@dataclass
class Pruned:
    ran: bool = False
    partitions: list[str] = field(default_factory=list)
    snapshots_by_age: int = 0
    snapshots_by_size: int = 0
    rejected: int = 0


def months_back(now: datetime, months: int) -> datetime:
    """The first instant of the month ``months`` before ``now``'s month (UTC)."""
    now = now.astimezone(timezone.utc)
    index = now.year * 12 + (now.month - 1) - months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=timezone.utc)


def run(conn: Any, policy: Retention, keep_rejected: int, now: datetime | None = None) -> Pruned:
    out = Pruned()
    now = now or datetime.now(timezone.utc)
    with conn.transaction():
        if not conn.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (LOCK,)).fetchone()[0]:
            return out
        out.ran = True
        cutoff = months_back(now, policy.events_months)
        out.partitions = [r[0] for r in conn.execute("SELECT district_drop_months(%s)", (cutoff,)).fetchall()]
        out.snapshots_by_age = conn.execute(
            "DELETE FROM snapshots WHERE received_at < %s - make_interval(days => %s)",
            (now, policy.snapshots_days)).rowcount
        out.snapshots_by_size = conn.execute(
            "DELETE FROM snapshots WHERE id IN (SELECT id FROM (SELECT id, sum(size) OVER"
            " (ORDER BY received_at DESC, id DESC) AS running FROM snapshots) s WHERE running > %s)",
            (policy.snapshots_max_bytes,)).rowcount
        out.rejected = trim_rejected(conn, keep_rejected)
    return out


def trim_rejected(conn: Any, keep: int) -> int:
    """Keeps the newest ``keep`` rejected payloads (run every minute: a flood of junk costs at
    most a minute's worth of rows; the totals per reason are never trimmed)."""
    return int(conn.execute("DELETE FROM rejected_payloads WHERE id <= (SELECT id FROM rejected_payloads"
                            " ORDER BY id DESC OFFSET %s LIMIT 1)", (keep,)).rowcount)
