"""Gap detection: a door's seq must rise by one per event within a journal epoch.

A hole is only a gap once the event after it has been recorded for ``delay`` seconds (events
from one door may arrive out of order, especially with several recorders), or when the door's
retained state names a ``last_seq`` that has not arrived ``delay`` seconds after that state.
A gap is an open alarm (table ``gaps``) until every seq in it has been recorded: the re-send
closes it. The scan resumes from a per door and epoch watermark, so it reads only new key
rows; one recorder at a time runs it (advisory lock), any of them can. It updates watermark
rows in the order the writers upsert them (campus, door, epoch): in another order the two
deadlocked under load, and the writer's batch waited for a reconnect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from district.recorder import notes

SCAN_LOCK = "district_gap_scan"

OPEN_SQL = """
INSERT INTO gaps (campus, door, epoch, from_seq, to_seq, missing)
SELECT %(c)s, %(d)s, %(e)s, %(lo)s, %(hi)s, %(hi)s - %(lo)s + 1
 WHERE NOT EXISTS (SELECT 1 FROM gaps WHERE campus = %(c)s AND door = %(d)s AND epoch = %(e)s
                     AND from_seq <= %(hi)s AND to_seq >= %(lo)s)
ON CONFLICT DO NOTHING
RETURNING id
"""

TAIL_SQL = """
SELECT d.campus, d.door, d.epoch, (d.state->>'last_seq')::bigint, w.max_seq
  FROM doors d JOIN seq_watermarks w ON w.campus = d.campus AND w.door = d.door AND w.epoch = d.epoch
 WHERE (d.state->>'last_seq')::bigint > w.max_seq
   AND d.state_at < now() - make_interval(secs => %s)
"""


@dataclass
class ScanResult:
    ran: bool = False
    opened: int = 0
    closed: int = 0
    open_now: int = 0


def scan(conn: Any, delay: float, max_rows: int = 20000) -> ScanResult:
    """One pass (inside its own transaction on ``conn``). Returns what changed."""
    result = ScanResult()
    with conn.transaction():
        if not conn.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (SCAN_LOCK,)).fetchone()[0]:
            return result
        result.ran = True
        changed: set[str] = set()
        behind = conn.execute(
            "SELECT campus, door, epoch, contiguous_seq, first_seen_at < now() - make_interval(secs => %s)"
            "  FROM seq_watermarks WHERE contiguous_seq IS NULL OR contiguous_seq < max_seq"
            " ORDER BY campus, door, epoch", (delay,)).fetchall()   # the writers' lock order: no deadlock
        for campus, door, epoch, mark, settled in behind:
            key = dict(c=campus, d=door, e=epoch)
            if mark is None:
                if not settled:       # let early re-ordering settle before choosing a start
                    continue
                mark = conn.execute("SELECT min(seq) - 1 FROM event_keys WHERE campus = %(c)s AND door = %(d)s"
                                    " AND epoch = %(e)s", key).fetchone()[0]
                if mark is None:
                    continue
            rows = conn.execute(
                "SELECT seq, received_at < now() - make_interval(secs => %(delay)s) FROM event_keys"
                " WHERE campus = %(c)s AND door = %(d)s AND epoch = %(e)s AND seq > %(m)s ORDER BY seq LIMIT %(n)s",
                dict(key, delay=delay, m=mark, n=max_rows)).fetchall()
            expected, new_mark = mark + 1, mark
            for seq, old_enough in rows:
                if seq > expected:
                    if not old_enough:
                        break
                    if conn.execute(OPEN_SQL, dict(key, lo=expected, hi=seq - 1)).fetchone() is not None:
                        result.opened += 1
                        changed.add(f"{campus}/{door}")
                expected = seq + 1
                new_mark = seq
            conn.execute("UPDATE seq_watermarks SET contiguous_seq = %(m)s WHERE campus = %(c)s AND door = %(d)s"
                         " AND epoch = %(e)s", dict(key, m=new_mark))
        for campus, door, epoch, last_seq, max_seq in conn.execute(TAIL_SQL, (delay,)).fetchall():
            key = dict(c=campus, d=door, e=epoch, lo=max_seq + 1, hi=last_seq)
            if conn.execute(OPEN_SQL, key).fetchone() is not None:
                result.opened += 1
                changed.add(f"{campus}/{door}")
        for gap_id, campus, door, still in conn.execute(
                "SELECT g.id, g.campus, g.door, (g.to_seq - g.from_seq + 1) - (SELECT count(*) FROM event_keys k"
                "  WHERE k.campus = g.campus AND k.door = g.door AND k.epoch = g.epoch"
                "    AND k.seq BETWEEN g.from_seq AND g.to_seq)"
                "  FROM gaps g WHERE g.closed_at IS NULL ORDER BY g.id").fetchall():
            if still == 0:
                conn.execute("UPDATE gaps SET missing = 0, closed_at = now() WHERE id = %s", (gap_id,))
                result.closed += 1
                changed.add(f"{campus}/{door}")
            else:
                conn.execute("UPDATE gaps SET missing = %s WHERE id = %s AND missing <> %s", (still, gap_id, still))
        result.open_now = conn.execute("SELECT count(*) FROM gaps WHERE closed_at IS NULL").fetchone()[0]
        if changed:
            notes.notify(conn, "gaps", changed)       # "*" when too many doors to name
    return result
