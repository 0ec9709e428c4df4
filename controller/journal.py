"""The durable event journal: SQLite in WAL mode, one file per door.

It is at once the audit log, the panel's history and the MQTT outbox. An
event is committed (synchronous=FULL, so it survives power loss) before
append() returns, and listeners (panel stream, MQTT drain) are told only
after the commit. seq rises by exactly one per event: a failed commit does
not consume a number. Undelivered events are never deleted.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .events import Event
from .ids import IDS

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    ts         TEXT NOT NULL,
    request_id TEXT,
    actor      TEXT,
    data       TEXT NOT NULL,
    delivered  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_undelivered ON events(seq) WHERE delivered = 0;
CREATE INDEX IF NOT EXISTS events_type_seq ON events(type, seq);
CREATE INDEX IF NOT EXISTS events_request ON events(request_id);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# The journal's durability settings, in one place so the benchmark's raw
# SQLite baseline measures exactly the same thing.
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=5000")

Listener = Callable[[Event], None]

_ACTOR_USERNAME: contextvars.ContextVar[str | None] = contextvars.ContextVar("actor_username", default=None)


@contextmanager
def attributed_to(username: str) -> Iterator[None]:
    """Inside the block, events this thread commits with an actor also record ``actor_username``.

    Why: the core names staff by their display name (shown on dashboards and to the district),
    but the audit must also say which account acted. The panel knows the account and wraps
    each staff action in this block; the core stays free of accounts and web concerns.
    """
    token = _ACTOR_USERNAME.set(username)
    try:
        yield
    finally:
        _ACTOR_USERNAME.reset(token)



# An event's data as stored (sorted keys, json's default separators), by one encoder built once:
# ``json.dumps(data, sort_keys=True)`` builds a new JSONEncoder on every call, on the press path.
_DATA_JSON = json.JSONEncoder(sort_keys=True).encode


def _ts_text(ts: datetime) -> str:
    """Fixed-width UTC text (``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``), so SQL string comparison
    orders timestamps correctly. ``isoformat`` with explicit microseconds is that text, all in C;
    ``strftime`` gave the same through Python's ``time.strftime``, on the press path."""
    if ts.tzinfo is not timezone.utc:
        ts = ts.astimezone(timezone.utc)
    return ts.isoformat(timespec="microseconds")


def history_filter(types: Iterable[str] | None = None, since: datetime | None = None,
                   until: datetime | None = None, before_seq: int | None = None,
                   table: str = "") -> tuple[str, list[str | int]]:
    """The WHERE clause (or "") and its arguments for a history query's filters."""
    col = f"{table}." if table else ""
    where: list[str] = []
    args: list[str | int] = []
    if types:
        wanted = [str(t) for t in types]
        where.append(f"{col}type IN ({','.join('?' * len(wanted))})")
        args.extend(wanted)
    if since is not None:
        where.append(f"{col}ts >= ?")
        args.append(_ts_text(since))
    if until is not None:
        where.append(f"{col}ts < ?")
        args.append(_ts_text(until))
    if before_seq is not None:
        where.append(f"{col}seq < ?")
        args.append(before_seq)
    return ("WHERE " + " AND ".join(where)) if where else "", args


class JournalError(RuntimeError):
    """The journal could not commit. Callers must fail closed."""


class Journal:
    epoch: str = ""                # this journal's id (meta table): every event carries it
    created: bool = False          # opened as a brand-new, empty journal (see controller/identity.py)

    def __init__(self, path: str | Path, campus: str, door: str,
                 now: Callable[[], datetime] | None = None):
        self.path = Path(path)
        self.campus, self.door = campus, door
        self._now = now or (lambda: datetime.now(timezone.utc))
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            for pragma in PRAGMAS:
                self._db.execute(pragma)
            self._db.executescript(SCHEMA)
            row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
            undelivered = self._db.execute("SELECT COUNT(*) FROM events WHERE delivered = 0").fetchone()[0]
            self.epoch, self.created = self._identify(int(row[0]))
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        self._last_seq = int(row[0])
        self._undelivered = int(undelivered)
        self._closed = False

    def _identify(self, last_seq: int) -> tuple[str, bool]:
        """This journal's id (its epoch, see controller/identity.py) and whether it was created
        just now (no id and no events: a first boot, or a journal that was lost)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
        if row is not None:
            return str(row[0]), False
        epoch = uuid.uuid4().hex
        self._db.execute("INSERT INTO meta(key, value) VALUES ('journal_id', ?)", (epoch,))
        return epoch, last_seq == 0

    # ------------------------------------------------------------- writing
    def subscribe(self, listener: Listener) -> None:
        """Call listener(event) after every commit (outside the journal lock)."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        try:
            self._listeners.remove(listener)
        except ValueError:
            pass

    def append(self, type: str, request_id: str | None = None, actor: str | None = None,
               **data: Any) -> Event:
        """Commit one event durably and return it; raise JournalError if it is not on disk."""
        return self.append_many([(type, request_id, actor, data)])[0]

    def append_many(self, items: Iterable[tuple[str, str | None, str | None, dict[str, Any]]]) -> list[Event]:
        """Commit events produced together (one core transition: an approval and its unlock,
        a door closing and its relock) in one transaction, so one fsync: all are on disk when
        this returns, or none is and JournalError is raised. Listeners hear each, in order."""
        username = _ACTOR_USERNAME.get()
        events: list[Event] = []
        with self._lock:
            if self._closed:
                raise JournalError("journal is closed")
            seq = self._last_seq
            rows = []
            try:
                for type, request_id, actor, data in items:
                    if actor is not None and username and "actor_username" not in data:
                        data = {**data, "actor_username": username}
                    seq += 1
                    event = Event(id=IDS.take(), seq=seq, type=str(type), ts=self._now(),
                                  campus=self.campus, door=self.door, request_id=request_id, actor=actor,
                                  data=data, epoch=self.epoch)
                    stored_ts = _ts_text(event.ts)
                    rows.append((event.seq, event.id, event.type, stored_ts, request_id, actor,
                                 _DATA_JSON(data)))
                    # Its published text too, now, while the JSON encoder is warm from the
                    # data's: after the commit's fsync it costs 2-3 x as much (cold caches), on
                    # the path from the commit to the MQTT publish (issue 11's press figure).
                    # Its ts is utc_iso's text cut from the stored one (microseconds ->
                    # milliseconds, "Z"): one isoformat per event instead of two.
                    event.encode_now(stored_ts[:23] + "Z")
                    events.append(event)
                if not rows:
                    return []
                sql = "INSERT INTO events(seq, id, type, ts, request_id, actor, data) VALUES (?,?,?,?,?,?,?)"
                if len(rows) == 1:
                    self._db.execute(sql, rows[0])          # autocommit: one transaction
                else:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.executemany(sql, rows)
                    self._db.execute("COMMIT")
            except (sqlite3.Error, OSError, TypeError, ValueError) as exc:
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise JournalError(f"journal write failed: {exc}") from exc
            self._last_seq = seq
            self._undelivered += len(events)
        for event in events:
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:  # a broken listener must never undo or block a commit
                    log.exception("journal listener %r failed", listener)
        IDS.refill()        # the next events' ids, drawn now that these are committed and out
        return events

    # ------------------------------------------------------------- outbox
    def undelivered(self, limit: int = 100, after_seq: int = 0) -> list[Event]:
        return self._select("WHERE delivered = 0 AND seq > ? ORDER BY seq LIMIT ?", (after_seq, limit))

    def mark_delivered(self, seqs: Iterable[int]) -> None:
        """Mark acknowledged events delivered: one transaction (one fsync) per batch."""
        seqs = sorted(set(seqs))
        if not seqs:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                changed = 0
                for i in range(0, len(seqs), 500):
                    chunk = seqs[i:i + 500]
                    changed += self._db.execute(
                        f"UPDATE events SET delivered = 1 WHERE delivered = 0 AND seq IN "
                        f"({','.join('?' * len(chunk))})", chunk).rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise JournalError(f"journal write failed: {exc}") from exc
            self._undelivered -= changed

    def outbox_depth(self) -> int:
        """Events not yet acknowledged by the broker. O(1): kept in step with every write
        (a COUNT over the outbox per drain step cost more than publishing)."""
        with self._lock:
            return self._undelivered

    # ------------------------------------------------------------- reading
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def last_event(self) -> Event | None:
        rows = self._select("ORDER BY seq DESC LIMIT 1", ())
        return rows[0] if rows else None

    def get(self, seq: int) -> Event | None:
        rows = self._select("WHERE seq = ?", (seq,))
        return rows[0] if rows else None

    def for_request(self, request_id: str) -> list[Event]:
        return self._select("WHERE request_id = ? ORDER BY seq", (request_id,))

    def query(self, types: Iterable[str] | None = None, since: datetime | None = None,
              until: datetime | None = None, before_seq: int | None = None,
              limit: int = 50) -> list[Event]:
        """Newest first, filtered by types and a [since, until) time range (the daemon's own
        start-up reads; the panel reads through controller/journal_reader.py)."""
        clause, args = history_filter(types, since, until, before_seq)
        return self._select(f"{clause} ORDER BY seq DESC LIMIT ?", (*args, max(1, min(limit, 10_000))))

    def _select(self, clause: str, args: tuple[Any, ...]) -> list[Event]:
        sql = f"SELECT seq, id, type, ts, request_id, actor, data FROM events {clause}"
        with self._lock:
            try:
                rows = self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise JournalError(f"journal read failed: {exc}") from exc
        return [Event(id=r[1], seq=r[0], type=r[2], ts=datetime.fromisoformat(r[3]), campus=self.campus,
                      door=self.door, request_id=r[4], actor=r[5], data=json.loads(r[6]),
                      epoch=self.epoch) for r in rows]

    def close(self) -> None:
        """Close the database; safe to call twice."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
