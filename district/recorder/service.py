"""The recorder process: MQTT inbox -> batches -> PostgreSQL commit -> acknowledgements.

Two lanes from the network thread on (district/recorder/fastlane.py): a door's live picture
(``state``, ``status``) goes to the fast lane, written at once on its own connection, so the
board never shows it behind a backlog of history; everything else (events, snapshots) to the
main lane below. Acknowledgements of both go out in arrival order, each after its commit
(``fastlane.AckOrder``).

The main lane: two stages in series, one thread each, so they overlap: a classifier thread
takes whatever has arrived (up to ``batch_max``) and validates it (pure Python, holds the
GIL); a writer thread, which owns the two database connections that write messages, writes
each classified batch (its events on one, the rest on the other, at once: ``_write_split``)
and only once all of it is committed reports it done to the ack order. Between them is a
queue of one batch: while PostgreSQL commits batch N (psycopg releases the GIL while it waits)
batch N+1 is classified, instead of the two taking turns.

If the database is unreachable nothing is acknowledged and the batch is retried;
if one message makes the database refuse the batch, the batch is written message by
message and the refused one is kept as rejected (reason ``db_refused``) instead of blocking
the feed. A second thread runs the gap scan and retention on its own connection.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import psycopg

from district import db
from district.config import Settings, read_secret
from district.recorder import gaps, retention
from district.recorder.fastlane import AckOrder, FastLane, Router
from district.recorder.link import Message, RecorderLink
from district.recorder.messages import Event, Item, Rejected, classify
from district.recorder.store import (
    Outcome,
    notify_board,
    write_batch,
    write_doors_and_rest,
    write_events,
    write_one_by_one,
)

log = logging.getLogger("district.recorder")

Classified = tuple[list[Message], list[Message], list[Item]]   # the batch, the messages to write, their items


class Recorder:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.inbox: queue.Queue[Message] = queue.Queue(maxsize=4 * settings.broker.receive_maximum + 1000)
        self.classified: queue.Queue[Classified] = queue.Queue(maxsize=1)   # the batch ready for the writer
        self.known: frozenset[str] = frozenset()
        self.totals = Outcome()            # the main lane's (the fast lane keeps its own)
        self.received = 0
        self.batches = 0
        self.open_gaps = 0
        self._months: set[tuple[int, int]] = set()
        self._stop = threading.Event()
        self.order = AckOrder(lambda messages: self.link.ack(messages))
        self.fast = FastLane(settings, self.order, self._stop, self._open, lambda: self.known, self._read_campuses,
                             lambda: self.link.catchup_since)
        self.link = RecorderLink(settings.broker, read_secret(settings.broker.password_file),
                                 Router(self.order, self.inbox, self.fast.queue))
        self._threads: list[threading.Thread] = []
        self._conn: psycopg.Connection[Any] | None = None          # the writer's: events
        self._side: psycopg.Connection[Any] | None = None          # the writer's second: the rest
        self._side_worker = ThreadPoolExecutor(1, thread_name_prefix="recorder-writer-side")
        self._classifier_conn: psycopg.Connection[Any] | None = None  # the classifier's (campus list only)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        db.apply_schema(self.settings.database.dsn)
        db.add_campuses(self.settings.database.dsn, self.settings.recorder.campuses)
        self._refresh_campuses()
        for target, name in ((self._classify_loop, "recorder-classifier"), (self._write_loop, "recorder-writer"),
                             (self.fast.run, "recorder-fastlane"), (self._maintenance_loop, "recorder-maint")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        self.link.start()

    def stop(self, retire: bool = False) -> None:
        """Disconnects first (unacknowledged messages stay with the broker), then stops."""
        self.link.stop(retire)
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        self._side_worker.shutdown(wait=True)

    def healthy(self) -> bool:
        """False once a worker thread has died (the process should exit and be restarted:
        nothing unacknowledged is lost)."""
        return all(t.is_alive() for t in self._threads)

    def stats(self) -> dict[str, Any]:
        t = Outcome()
        t.add(self.totals)
        t.add(self.fast.totals)
        return {"received": self.received + self.fast.received, "events": t.events, "duplicates": t.duplicates,
                "states": t.states, "statuses": t.statuses, "snapshots": t.snapshots, "rejected": dict(t.rejected),
                "batches": self.batches + self.fast.batches, "open_gaps": self.open_gaps,
                "connected": self.link.connected.is_set()}

    # ------------------------------------------------------------------ writing
    def _connection(self) -> psycopg.Connection[Any]:
        self._conn = self._open(self._conn, autocommit=True)
        return self._conn

    def _open(self, conn: psycopg.Connection[Any] | None, autocommit: bool = False) -> psycopg.Connection[Any]:
        """``conn`` if open, else a new connection, retried until the database answers (raises
        OperationalError when stopping)."""
        delay = 0.5
        while conn is None or conn.closed:
            try:
                conn = db.connect(self.settings.database.dsn, autocommit=autocommit)
            except psycopg.OperationalError as exc:
                log.error("database unreachable (%s); retrying in %.1f s, nothing acknowledged", exc, delay)
                if self._stop.wait(delay):
                    raise
                delay = min(delay * 2, 10)
        return conn

    def _next_batch(self) -> list[Message]:
        try:
            first = self.inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self.settings.recorder.batch_max:
            try:
                batch.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _classify_loop(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self._next_batch()
                if not batch:
                    continue
                job = self._classify(batch)
                while not self._stop.is_set():      # waits while the writer still has a batch queued
                    try:
                        self.classified.put(job, timeout=0.2)
                        break
                    except queue.Full:
                        continue
        except psycopg.Error:
            pass                                    # stopping while the database was unreachable
        finally:
            self._classifier_conn = self._close(self._classifier_conn)

    def _classify(self, batch: list[Message]) -> Classified:
        work = [m for m in batch if not m.copy]   # catch-up copies: acknowledged in turn, not written
        self.received += len(work)
        rec, prefix = self.settings.recorder, self.settings.broker.prefix
        items = [classify(m.topic, m.payload, prefix, self.known, rec.snapshot_max_bytes) for m in work]
        if any(isinstance(i, Rejected) and i.reason == "unknown_campus" for i in items):
            if self._refresh_campuses(classifier=True):   # a campus added since: classify again
                items = [classify(m.topic, m.payload, prefix, self.known, rec.snapshot_max_bytes) for m in work]
        return batch, work, items

    def _write_loop(self) -> None:
        try:
            self._write_until_stopped()
        finally:
            self._drop_connection()

    def _write_until_stopped(self) -> None:
        while not self._stop.is_set():
            try:
                batch, work, items = self.classified.get(timeout=0.2)
            except queue.Empty:
                continue
            outcome = self._commit(work, items) if work else Outcome()
            if outcome is None:
                return                          # stopping: nothing acknowledged
            self.totals.add(outcome)
            self.order.done(batch)
            self.batches += 1

    def _commit(self, batch: list[Message], items: list[Item]) -> Outcome | None:
        keep = self.settings.recorder.rejected_keep_bytes
        split = any(isinstance(i, Event) for i in items) and not all(isinstance(i, Event) for i in items)
        while not self._stop.is_set():
            try:
                conn = self._connection()
                side = self._side_connection() if split else None
            except psycopg.OperationalError:
                return None
            try:
                if side is not None:
                    return self._write_split(conn, side, batch, items)
                with conn.transaction():
                    return write_batch(conn, items, keep, self._months)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                log.error("database error (%s); batch of %d kept unacknowledged, retrying", exc, len(batch))
                self._drop_connection()
                self._stop.wait(0.5)
            except psycopg.Error as exc:
                log.warning("database refused a batch (%s); writing its %d messages one by one", exc, len(batch))
                self._months.clear()
                try:
                    return self._one_by_one(conn, batch, items)
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    self._drop_connection()
        return None

    def _write_split(self, conn: psycopg.Connection[Any], side: psycopg.Connection[Any], batch: list[Message],
                     items: list[Item]) -> Outcome:
        """Writes a batch in two transactions at once: its events (ledger, events, watermarks)
        here, everything else (doors, states, snapshots, refusals) on the second connection,
        in the side thread. They lock disjoint tables, so neither waits for the other, and
        PostgreSQL works on both at once (psycopg releases the GIL while it waits). Both commit
        before the batch is acknowledged; only then is the board notified (its grid reads
        events and doors, so it must see both). If PostgreSQL refuses the events, only the
        events are written again one by one (the rest is committed: writing it again would
        count its refusals twice); if it refuses the rest, every message is (the events'
        door touches were in it; the events come back as duplicates, not counted as such). A
        crash between the two commits costs a re-delivery, which the ledger and the idempotent
        door writes absorb."""
        keep = self.settings.recorder.rejected_keep_bytes
        rest = self._side_worker.submit(self._in_transaction, side, write_doors_and_rest, items, keep)
        refused: list[bool] = []                 # [events part refused, rest refused]
        try:                                     # one statement: its own transaction (autocommit)
            out = write_events(conn, items, self._months)
            refused.append(False)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            wait([rest])                         # the side's transaction ends before the batch is retried
            raise
        except psycopg.Error as exc:
            log.warning("database refused a batch's events (%s); writing them one by one", exc)
            out = Outcome()
            refused.append(True)
        try:
            out.add(rest.result())
            refused.append(False)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except psycopg.Error as exc:
            log.warning("database refused a batch's door rows (%s); writing them one by one", exc)
            refused.append(True)
        if refused[1]:        # every message again (the events' door touches were in that part) ...
            self._months.clear()
            redo = self._one_by_one(conn, batch, items)
            redo.events, redo.duplicates = redo.events + out.events, redo.duplicates - out.events
            redo.new_event_ids = out.new_event_ids + redo.new_event_ids
            out = redo        # ... the events committed above came back as duplicates: they are not
        elif refused[0]:
            self._months.clear()
            again = [(m, i) for m, i in zip(batch, items, strict=False) if isinstance(i, Event)]
            out.add(self._one_by_one(conn, [m for m, _ in again], [i for _, i in again]))
        notify_board(conn, items)                # autocommit: sent once both parts are committed
        return out

    @staticmethod
    def _in_transaction(conn: psycopg.Connection[Any], write: Any, *args: Any) -> Outcome:
        """``write`` in one transaction, its statements pipelined (sent without waiting for each
        other's results: fewer round trips, and fewer times this thread needs the GIL back)."""
        with conn.pipeline(), conn.transaction():
            result: Outcome = write(conn, *args)
        return result

    def _side_connection(self) -> psycopg.Connection[Any]:
        self._side = self._open(self._side)
        return self._side

    def _one_by_one(self, conn: psycopg.Connection[Any], batch: list[Message], items: list[Item]) -> Outcome:
        return write_one_by_one(conn, batch, items, self.settings.recorder.rejected_keep_bytes, self._months)

    def _drop_connection(self) -> None:
        self._conn = self._close(self._conn)
        self._side = self._close(self._side)
        self._months.clear()

    @staticmethod
    def _close(conn: psycopg.Connection[Any] | None) -> None:
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass
        return None

    # ------------------------------------------------------------------ maintenance
    def _refresh_campuses(self, classifier: bool = False) -> bool:
        """Re-reads the registered campuses. The classifier uses its own connection (one cheap
        query per batch even under a flood of unknown campuses, no new connection each time;
        not the writer's, which may be inside a transaction on the other thread)."""
        try:
            if classifier:
                conn = self._classifier_conn = self._open(self._classifier_conn)
                return self._read_campuses(conn)
            with db.connect(self.settings.database.dsn) as c:
                return self._read_campuses(c)
        except psycopg.Error as exc:
            if classifier and self._stop.is_set():
                raise                               # the classifier ends
            log.error("cannot read campuses: %s", exc)
            if classifier:
                self._classifier_conn = self._close(self._classifier_conn)
            return False

    def _read_campuses(self, conn: psycopg.Connection[Any]) -> bool:
        """Re-reads the registered campuses with ``conn`` (the caller's own: the classifier's,
        the fast lane's, or a short-lived one); whether they changed."""
        with conn.transaction():
            known = frozenset(r[0] for r in conn.execute("SELECT campus FROM campuses").fetchall())
        changed = known != self.known
        self.known = known
        return changed

    def _maintenance_loop(self) -> None:
        rec = self.settings.recorder
        next_gap = next_retention = next_campuses = next_trim = 0.0
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.wait(0.5):
            now = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = db.connect(self.settings.database.dsn, autocommit=True)
                if now >= next_campuses:
                    next_campuses = now + 10
                    self._refresh_campuses()
                if now >= next_gap:
                    next_gap = now + rec.gap_scan_seconds
                    result = gaps.scan(conn, rec.gap_delay_seconds)
                    if result.ran:
                        if result.opened or result.closed:
                            log.warning("gaps: %d opened, %d closed, %d open", result.opened, result.closed,
                                        result.open_now)
                        self.open_gaps = result.open_now
                if now >= next_trim:
                    next_trim = now + 60
                    retention.trim_rejected(conn, rec.rejected_keep_rows)
                if now >= next_retention:
                    next_retention = now + rec.maintenance_seconds
                    pruned = retention.run(conn, self.settings.retention, rec.rejected_keep_rows)
                    if pruned.partitions or pruned.snapshots_by_age or pruned.snapshots_by_size:
                        log.info("retention: dropped %s, %d snapshots by age, %d by size", pruned.partitions,
                                 pruned.snapshots_by_age, pruned.snapshots_by_size)
                    self._months.clear()
            except psycopg.Error as exc:
                log.error("maintenance failed (%s); retrying", exc)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


def totals_line(r: Recorder) -> str:
    s = r.stats()
    rejected = Counter(s["rejected"])
    return (f"received {s['received']} events {s['events']} duplicates {s['duplicates']} snapshots {s['snapshots']}"
            f" rejected {sum(rejected.values())} {dict(rejected)} open gaps {s['open_gaps']}")
