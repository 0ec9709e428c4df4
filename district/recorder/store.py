"""Writes one batch of classified messages in the caller's transaction.

Idempotent: an event is new only when its key row (event id, and campus/door/epoch/seq) was
inserted; a re-send or a second recorder writing the same message changes nothing. Door
rows are locked in one sorted order so concurrent recorders cannot deadlock on them. One
statement per kind of row, whatever the batch size (round trips, not rows, cost the most),
with arrays sent in binary (``%b``): no text escaping of JSON and JPEG bytes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import psycopg

from district.recorder import notes
from district.recorder.messages import Bridge, Event, Item, Rejected, Snapshot, State, Status

EVENTS_SQL = """
WITH batch AS (
    SELECT * FROM unnest(%(id)b::uuid[], %(campus)b::text[], %(door)b::text[], %(epoch)b::text[],
                         %(seq)b::bigint[], %(type)b::text[], %(ts)b::timestamptz[],
                         %(request_id)b::text[], %(actor)b::text[], %(data)b::text[])
        AS b(id, campus, door, epoch, seq, type, ts, request_id, actor, data)
), new_keys AS (
    INSERT INTO event_keys (id, campus, door, epoch, seq, ts)
    SELECT id, campus, door, epoch, seq, ts FROM batch ORDER BY campus, door, epoch, seq
    ON CONFLICT DO NOTHING
    RETURNING id
), ins AS (
    INSERT INTO events (id, campus, door, epoch, seq, type, ts, request_id, actor, data, received_at)
    SELECT b.id, b.campus, b.door, b.epoch, b.seq, b.type, b.ts, b.request_id, b.actor, b.data::jsonb,
           clock_timestamp()
      FROM batch b JOIN new_keys USING (id)
    RETURNING id, campus, door, epoch, seq
), heads AS (
    INSERT INTO seq_watermarks AS w (campus, door, epoch, max_seq)
    SELECT campus, door, epoch, max(seq) FROM ins GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (campus, door, epoch) DO UPDATE SET max_seq = greatest(w.max_seq, EXCLUDED.max_seq)
)
SELECT id::text FROM ins
"""

DOORS_SQL = """
INSERT INTO doors AS d (campus, door, last_seen)
SELECT c, r, CASE WHEN s THEN now() END FROM unnest(%b::text[], %b::text[], %b::boolean[]) AS t(c, r, s) ORDER BY c, r
ON CONFLICT (campus, door) DO UPDATE SET last_seen = coalesce(EXCLUDED.last_seen, d.last_seen)
"""

STATE_SQL = """
UPDATE doors AS d SET state = s.state::jsonb, state_at = now(), epoch = coalesce(s.epoch, d.epoch)
  FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[]) AS s(campus, door, state, epoch)
 WHERE d.campus = s.campus AND d.door = s.door
   AND (d.state IS NULL OR (d.state->>'ts')::timestamptz <= (s.state::jsonb->>'ts')::timestamptz)
"""

STATUS_SQL = """
UPDATE doors AS d SET online = s.online, status_at = now()
  FROM unnest(%b::text[], %b::text[], %b::boolean[], %b::timestamptz[]) AS s(campus, door, online, since)
 WHERE d.campus = s.campus AND d.door = s.door
   AND (s.since IS NULL OR d.status_at IS NULL OR d.status_at < s.since)
"""

SNAPSHOT_SQL = """
INSERT INTO snapshots (campus, door, request_id, sha256, size, data)
SELECT c, d, r, encode(sha256(b), 'hex'), length(b), b
  FROM unnest(%b::text[], %b::text[], %b::text[], %b::bytea[]) AS s(c, d, r, b)
ON CONFLICT (campus, door, request_id, sha256) DO NOTHING
RETURNING id
"""

REJECTED_SQL = """
INSERT INTO rejected_payloads (topic, reason, detail, size, payload)
SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::int[], %b::bytea[])
"""

TOTALS_SQL = """
INSERT INTO rejected_totals AS t (reason, count, last_at)
SELECT r, n, now() FROM unnest(%b::text[], %b::bigint[]) AS x(r, n) ORDER BY r
ON CONFLICT (reason) DO UPDATE SET count = t.count + EXCLUDED.count, last_at = now()
"""


@dataclass
class Outcome:
    events: int = 0            # new event rows
    duplicates: int = 0        # events already recorded (re-sends), or a seq already taken
    states: int = 0
    statuses: int = 0
    snapshots: int = 0         # new snapshot rows
    rejected: Counter[str] = field(default_factory=Counter)
    new_event_ids: list[str] = field(default_factory=list)

    def add(self, other: "Outcome") -> None:
        self.events += other.events
        self.duplicates += other.duplicates
        self.states += other.states
        self.statuses += other.statuses
        self.snapshots += other.snapshots
        self.rejected.update(other.rejected)
        self.new_event_ids += other.new_event_ids


def _columns(rows: Sequence[Any], *names: str) -> list[list[Any]]:
    return [[getattr(r, n) for r in rows] for n in names]


def write_batch(conn: Any, items: Sequence[Item], keep_bytes: int, months: set[tuple[int, int]]) -> Outcome:
    """Writes ``items`` with ``conn`` (inside the caller's transaction). ``months`` caches the
    monthly partitions known to exist, as (year, month) of UTC (an event's ``ts`` is UTC: the
    contract's schema wants its trailing "Z"); new ones are created on demand."""
    out = write_events(conn, items, months)
    out.add(write_doors_and_rest(conn, items, keep_bytes))
    notify_board(conn, items)
    return out


def notify_board(conn: Any, items: Sequence[Item]) -> None:
    """Wakes the board (LISTEN district): which doors ``items`` changed. PostgreSQL delivers it
    when the caller's transaction commits, so the caller sends it once every row is committed
    or in the same transaction as all of them."""
    doors = {(i.campus, i.door) for i in items if not isinstance(i, (Rejected, Bridge))}   # formatted once each
    touched = sorted({f"{c}/{d}" for c, d in doors} | {f"{i.campus}/*" for i in items if isinstance(i, Bridge)})
    if touched:
        notes.notify(conn, "doors", touched)       # "*" when the names would not fit in a NOTIFY


def write_events(conn: Any, items: Sequence[Item], months: set[tuple[int, int]]) -> Outcome:
    """The events of ``items`` with their ledger and watermark rows: the only tables this part
    locks, none of which :func:`write_doors_and_rest` touches, so the two parts may run in two
    transactions on two connections at once (the recorder's writer does) without waiting for
    each other."""
    out = Outcome()
    events = [i for i in items if isinstance(i, Event)]
    if not events:
        return out
    unique: dict[str, Event] = {}
    for e in events:
        unique.setdefault(e.id, e)
    rows = list(unique.values())
    for month in {(e.ts.year, e.ts.month) for e in rows} - months:   # not strftime: 5x dearer per event
        first = next(e.ts for e in rows if (e.ts.year, e.ts.month) == month)
        conn.execute("SELECT district_ensure_month(%s)", (first,))
        months.add(month)
    cols = _columns(rows, "id", "campus", "door", "epoch", "seq", "type", "ts", "request_id", "actor", "text")
    names = ("id", "campus", "door", "epoch", "seq", "type", "ts", "request_id", "actor", "data")
    params = dict(zip(names, cols, strict=False))
    new_ids = [r[0] for r in conn.execute(EVENTS_SQL, params).fetchall()]
    out.events = len(new_ids)
    out.duplicates = len(events) - len(new_ids)
    out.new_event_ids = new_ids
    return out


def write_doors_and_rest(conn: Any, items: Sequence[Item], keep_bytes: int) -> Outcome:
    """Everything of ``items`` but the event rows: door touches (for events too), states,
    statuses, bridges, snapshots and refusals. The door rows come after the snapshots and
    refusals, so a transaction holds their locks only for its last statements and its commit:
    the recorder's fast lane (district/recorder/fastlane.py) updates the same rows, and must
    not wait long behind a batch's snapshots."""
    out = Outcome()
    states = [i for i in items if isinstance(i, State)]
    statuses = [i for i in items if isinstance(i, Status)]
    snapshots = [i for i in items if isinstance(i, Snapshot)]
    rejected = [i for i in items if isinstance(i, Rejected)]

    if snapshots:      # before the door rows: their locks are then held only to the commit
        cols = _columns(snapshots, "campus", "door", "request_id", "data")   # hashed and sized by PostgreSQL
        out.snapshots = len(conn.execute(SNAPSHOT_SQL, cols).fetchall())

    if rejected:
        conn.execute(REJECTED_SQL, ([r.topic[:500] for r in rejected], [r.reason for r in rejected],
                                    [r.detail[:500] for r in rejected], [len(r.payload) for r in rejected],
                                    [r.payload[:keep_bytes] for r in rejected]))
        counts = Counter(r.reason for r in rejected)
        reasons = sorted(counts)
        conn.execute(TOTALS_SQL, (reasons, [counts[r] for r in reasons]))
        out.rejected = counts

    # Every door row this transaction changes, created if new and locked, in one statement in
    # one sorted order (an 'offline', the broker's last will, is not a sign of life: its door
    # is locked and kept, last_seen untouched). The state and status updates below then touch
    # only rows already held, so two writers (the recorder's two lanes, or two recorders)
    # take door locks in the same order and cannot deadlock.
    seen = {(i.campus, i.door) for i in items
            if isinstance(i, (Event, State, Snapshot)) or (isinstance(i, Status) and i.online)}
    quiet = {(i.campus, i.door) for i in statuses if not i.online} - seen
    door_rows = sorted([(c, d, True) for c, d in seen] + [(c, d, False) for c, d in quiet])
    if door_rows:
        conn.execute(DOORS_SQL, ([c for c, _, _ in door_rows], [d for _, d, _ in door_rows],
                                 [alive for _, _, alive in door_rows]))

    if states:
        newest: dict[tuple[str, str], State] = {}
        for s in states:
            key = (s.campus, s.door)
            if key not in newest or newest[key].ts <= s.ts:
                newest[key] = s
        rows_s = [newest[k] for k in sorted(newest)]
        conn.execute(STATE_SQL, _columns(rows_s, "campus", "door", "text", "epoch"))
        out.states = len(states)

    if statuses:
        last: dict[tuple[str, str], Status] = {}
        for st in statuses:                     # arrival order: the last one is current
            last[(st.campus, st.door)] = st
        rows_st = [last[k] for k in sorted(last)]
        conn.execute(STATUS_SQL, _columns(rows_st, "campus", "door", "online", "since"))
        out.statuses = len(statuses)

    bridges = {i.campus: i.online for i in items if isinstance(i, Bridge)}
    for campus in sorted(bridges):
        conn.execute("UPDATE campuses SET bridge_online = %s, bridge_at = now() WHERE campus = %s",
                     (bridges[campus], campus))
        out.statuses += 1

    return out


def write_one_by_one(conn: Any, sources: Sequence[Any], items: Sequence[Item], keep_bytes: int,
                     months: set[tuple[int, int]]) -> Outcome:
    """``items`` each in its own transaction, after PostgreSQL refused them together: the one it
    refuses again is kept as rejected (reason ``db_refused``, with the topic and payload of its
    ``sources`` message) instead of blocking the feed. A lost connection is raised (the caller
    retries, nothing acknowledged)."""
    out = Outcome()
    for m, item in zip(sources, items, strict=False):
        try:
            with conn.transaction():
                out.add(write_batch(conn, [item], keep_bytes, months))
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except psycopg.Error as exc:
            months.clear()
            refused = Rejected(m.topic, "db_refused", str(exc).splitlines()[0][:300], m.payload)
            with conn.transaction():
                out.add(write_batch(conn, [refused], keep_bytes, months))
    return out
