"""The recorder's fast lane: a door's live picture, written apart from the event history.

Why: the board shows what ``doors`` holds (state, online, last seen). With one queue for the
whole feed, a door's state change waited behind every event and snapshot that arrived before
it: at 500 campuses and ten times the morning peak the recorder's writer was busy 95-99 % of
the time and a probe door's state found up to ~9,000 messages ahead of it, so publish -> board
reached p99 374-554 ms on a quiet machine (docs/district-board.md). Those messages are few and
tiny (a retained ``state`` per change, ``status`` on connect and last will, a campus bridge's
``state``) against ~7 events and a 30 KB snapshot per ring, so they get a lane of their own:

- **Routed at arrival.** :class:`Router` is the link's inbox: on the network thread it looks
  only at the topic's last level (``/state``, ``/status``; no parsing) and puts the message on
  this lane's queue or on the classifier's inbox.
- **Written on their own.** One thread takes what has arrived (up to :data:`FAST_BATCH`),
  classifies it, writes it in one transaction on its own connection with the board's NOTIFY in
  it (PostgreSQL delivers it at the commit), and reports it committed.
- **Acknowledged in arrival order, after the commit.** :class:`AckOrder` holds every message in
  the order it arrived; a lane reports what it committed, and PUBACKs go out for the longest
  committed prefix only. A state committed ahead of a backlog is acknowledged once everything
  before it is committed too (MQTT's order: PUBACKs in the order the PUBLISHes came), so a
  crash at any instant re-delivers everything not acknowledged, and the writes are idempotent.

Writing them out of order is safe: a state carries its own time and an older one never
overwrites a newer one (``store.STATE_SQL``), whatever order the lanes commit in; every status
goes through this one lane in arrival order; both lanes lock door rows in one sorted statement
(``store.DOORS_SQL``: no deadlock) and the main lane takes them last in its transaction (this
lane waits at most for its commit). A state may now be committed before the events it names
(``last_seq``): a tail gap is raised only if they are still missing ``gap_delay_seconds`` later.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from dataclasses import replace
from datetime import datetime
from typing import Any, Callable

import psycopg

from district.config import Settings
from district.recorder.link import Message
from district.recorder.messages import Item, Rejected, Status, classify
from district.recorder.store import Outcome, write_batch, write_one_by_one

log = logging.getLogger("district.recorder")

FAST_KINDS = ("/state", "/status")   # a door's state and availability, a campus bridge's state
FAST_BATCH = 200                     # messages per transaction at most (a burst of reconnects)


class AckOrder:
    """PUBACKs in arrival order across lanes, each only once its message is committed."""

    def __init__(self, ack: Callable[[list[Message]], None]):
        self._ack = ack
        self._pending: deque[Message] = deque()
        self._lock = threading.Lock()

    def arrived(self, message: Message) -> None:
        """On the network thread, before the message is handed to a lane (deque appends are
        atomic; only :meth:`done` removes, under the lock)."""
        self._pending.append(message)

    def done(self, messages: list[Message]) -> None:
        """``messages`` are committed (or need no writing): acknowledges every message from the
        oldest pending on that is, up to the first that is not. Under the lock, so the two
        lanes' acknowledgements cannot overtake each other."""
        with self._lock:
            for m in messages:
                m.committed = True
            pending, ready = self._pending, []
            while pending and pending[0].committed:
                ready.append(pending.popleft())
            if ready:
                self._ack(ready)

    def waiting(self) -> int:
        """Messages received and not acknowledged yet (committed or not)."""
        return len(self._pending)


class Router:
    """The link's inbox: each message to its lane, registered for the ack order first."""

    def __init__(self, order: AckOrder, main: "queue.Queue[Message]", fast: "queue.Queue[Message]"):
        self.order, self.main, self.fast = order, main, fast

    def put(self, message: Message) -> None:
        self.order.arrived(message)
        (self.fast if message.topic.endswith(FAST_KINDS) else self.main).put(message)


class FastLane:
    """One thread: classify and commit the live picture's messages, then report them done."""

    def __init__(self, settings: Settings, order: AckOrder, stop: threading.Event,
                 connect: Callable[[psycopg.Connection[Any] | None], psycopg.Connection[Any]],
                 known: Callable[[], frozenset[str]], refresh: Callable[[psycopg.Connection[Any]], bool],
                 catchup_since: Callable[[], datetime | None]):
        self.settings, self.order, self._stop = settings, order, stop
        self._connect, self._known, self._refresh, self._catchup_since = connect, known, refresh, catchup_since
        self.queue: queue.Queue[Message] = queue.Queue(maxsize=settings.broker.receive_maximum + 1000)
        self.totals = Outcome()
        self.received = 0
        self.batches = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._months: set[tuple[int, int]] = set()

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self._next_batch()
                if not batch:
                    continue
                work = [m for m in batch if not m.copy]   # catch-up copies: acknowledged in turn only
                outcome = self._commit(work, self._classify(work)) if work else Outcome()
                if outcome is None:
                    return                                # stopping: nothing acknowledged
                self.totals.add(outcome)
                self.batches += 1
                self.order.done(batch)
        except psycopg.Error:
            pass                                          # stopping while the database was unreachable
        finally:
            self._close()

    def _next_batch(self) -> list[Message]:
        try:
            batch = [self.queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        while len(batch) < FAST_BATCH:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _classify(self, work: list[Message]) -> list[Item]:
        self.received += len(work)
        rec, prefix = self.settings.recorder, self.settings.broker.prefix
        items = [classify(m.topic, m.payload, prefix, self._known(), rec.snapshot_max_bytes) for m in work]
        if any(isinstance(i, Rejected) and i.reason == "unknown_campus" for i in items):
            self._conn = self._connect(self._conn)
            if self._refresh(self._conn):                 # a campus added since: classify again
                items = [classify(m.topic, m.payload, prefix, self._known(), rec.snapshot_max_bytes) for m in work]
        return [self._mark_retained(m, i) for m, i in zip(work, items, strict=False)]

    def _mark_retained(self, message: Message, item: Item) -> Item:
        """A retained status from the catch-up must not undo a newer live one (status has no
        time of its own; state has, and is guarded by it)."""
        if message.retained and isinstance(item, Status):
            return replace(item, since=self._catchup_since())
        return item

    def _commit(self, work: list[Message], items: list[Item]) -> Outcome | None:
        keep = self.settings.recorder.rejected_keep_bytes
        while not self._stop.is_set():
            try:
                conn = self._conn = self._connect(self._conn)
            except psycopg.OperationalError:
                return None
            try:
                with conn.pipeline(), conn.transaction():   # NOTIFY inside: delivered at the commit
                    return write_batch(conn, items, keep, self._months)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                log.error("database error (%s); %d live messages kept unacknowledged, retrying", exc, len(work))
                self._close()
                self._stop.wait(0.5)
            except psycopg.Error as exc:
                log.warning("database refused live messages (%s); writing their %d one by one", exc, len(work))
                self._months.clear()
                try:
                    return write_one_by_one(conn, work, items, keep, self._months)
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    self._close()
        return None

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None
        self._months.clear()
