"""Read-only history queries on the journal, on their own SQLite connections.

Why: the panel's History and CSV export read many rows; on the writer's connection they held
the journal lock and pushed concurrent appends (a ring, an unlock) from under 1 ms to 36 ms.
Here each reading thread has its own read-only connection (WAL: readers never block the
writer), and a page, with the outcome of every ring on it, is ONE query.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from .events import Event
from .journal import JournalError, history_filter
from .vocabulary import EventType

OUTCOMES: dict[str, str] = {EventType.ENTRY_APPROVED: "approved", EventType.ENTRY_DENIED: "denied",
                            EventType.RING_EXPIRED: "expired"}
"""The event that settles a ring, by its outcome word (History's Outcome column)."""
MAX_ROWS = 10_000
YIELD_EVERY = 5
"""Rows converted between two voluntary GIL releases. A big export is pure Python for a while;
without these, a journal append in another thread (a ring, an unlock) waits for the
interpreter's 5 ms switch interval, several times per append. Every 5 rows (not 20) keeps the
appends' p99 during a 10,000-row export at its idle level (bench/history.py), for an export of
about 0.8 s instead of 0.35 s."""


def let_others_run(i: int) -> None:
    """Every YIELD_EVERY rows, give the GIL to a waiting thread (the door comes first)."""
    if i % YIELD_EVERY == YIELD_EVERY - 1:
        time.sleep(0)


@dataclass(frozen=True)
class HistoryRow:
    """One history row: the event and, for a ring (``buzzer_pressed``), how it ended."""
    event: Event
    outcome: str = ""                 # approved | denied | expired | pending ("" for other events)
    outcome_by: str | None = None     # who approved or denied


class JournalReader:
    """History pages from a journal file, on per-thread read-only connections."""

    def __init__(self, path: str | Path, campus: str, door: str, epoch: str = ""):
        self.path = Path(path)
        self.campus, self.door, self.epoch = campus, door, epoch
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            with self._lock:
                if self._closed:
                    raise JournalError("journal reader is closed")
                db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                     check_same_thread=False)
                db.execute("PRAGMA query_only=1")
                db.execute("PRAGMA busy_timeout=5000")
                self._all.append(db)
            self._local.db = db
        return db

    def page(self, types: Iterable[str] | None = None, since: datetime | None = None,
             until: datetime | None = None, before_seq: int | None = None,
             limit: int = 50) -> list[HistoryRow]:
        """Newest first, with each ring's outcome: one query (a correlated lookup per ring on
        the request_id index, inside the same statement)."""
        clause, args = history_filter(types, since, until, before_seq, table="e")
        settle = list(OUTCOMES)
        sql = (
            "SELECT e.seq, e.id, e.type, e.ts, e.request_id, e.actor, e.data, "
            "CASE WHEN e.type = ? AND e.request_id IS NOT NULL THEN "
            f"(SELECT o.type || char(31) || COALESCE(o.actor, '') FROM events o WHERE o.request_id = e.request_id "
            f"AND o.type IN ({','.join('?' * len(settle))}) ORDER BY o.seq LIMIT 1) END "
            f"FROM events e {clause} ORDER BY e.seq DESC LIMIT ?")
        params: list[Any] = [str(EventType.BUZZER_PRESSED), *settle, *args, max(1, min(limit, MAX_ROWS))]
        try:
            rows = self._db().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"journal read failed: {exc}") from exc
        out = []
        for i, r in enumerate(rows):
            let_others_run(i)
            event = Event(id=r[1], seq=r[0], type=r[2], ts=datetime.fromisoformat(r[3]), campus=self.campus,
                          door=self.door, request_id=r[4], actor=r[5], data=json.loads(r[6]), epoch=self.epoch)
            if r[2] != EventType.BUZZER_PRESSED or r[4] is None:
                out.append(HistoryRow(event))
            elif r[7] is None:
                out.append(HistoryRow(event, "pending"))
            else:
                kind, _, actor = str(r[7]).partition("\x1f")
                out.append(HistoryRow(event, OUTCOMES[kind], actor or None))
        return out

    def close(self) -> None:
        """Close every thread's connection; safe to call twice."""
        with self._lock:
            self._closed = True
            for db in self._all:
                db.close()
            self._all.clear()
