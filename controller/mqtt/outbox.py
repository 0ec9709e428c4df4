"""The journal as outbox: events go to the broker in seq order, delivered only on PUBACK.

Why:
- Nothing is deleted; after any disconnect (or a restart, even after SIGKILL) everything not
  acknowledged is sent again, so delivery is at least once and consumers dedupe by ``id``.
- The outbox keeps its own window (message id -> seq in flight) and a small in-memory buffer of
  the events the journal just committed, so a press costs no journal read: the journal is
  read only after a (re)connect, a refusal, or when the buffer overflowed (a long outage).
- The journal's depth counter is O(1); ``waiting`` (not yet sent) is that minus the window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any, Callable, Iterable

import paho.mqtt.client as mqtt

from .. import events as ev
from .connection import QOS

log = logging.getLogger("controller.mqtt")

WINDOW = 100                 # events in flight (published, not yet acknowledged) at most
BUFFER = 1000                # committed events kept in memory for the drain; older ones are re-read
REFUSED_RETRY_SECONDS = 5.0  # after the broker refused an event publish (e.g. ACL), wait before resending
ACK_BATCH_SECONDS = 0.05     # acknowledgements are marked delivered in batches: one transaction each


class Outbox:
    def __init__(self, journal: Any, topic_events: str, snapshot_topic: Callable[[str], str],
                 snapshot_path: Callable[[str], Path | None], publish_snapshots: bool,
                 wake: Callable[[], None], on_refused: Callable[[str], None],
                 event_text: Callable[[ev.Event], str] = ev.Event.to_json):
        self.journal = journal
        self.topic_events = topic_events
        self._snapshot_topic = snapshot_topic
        self._snapshot_path = snapshot_path
        self._publish_snapshots = publish_snapshots
        self._wake = wake
        self._on_refused = on_refused
        self._event_text = event_text           # the JSON an event is published as (visitor names)
        self._lock = threading.Lock()          # guards the fields below that callbacks touch
        # Held while publishing events and recording their mids, and while matching acks to
        # mids, so an ack can never be matched before its mid is recorded. paho callbacks take
        # only _lock, so publishing under it cannot deadlock.
        self._publish_lock = threading.Lock()
        self._buffer: deque[ev.Event] = deque(maxlen=BUFFER)
        self._resync = True                    # read the journal before trusting the buffer
        self._acks: list[tuple[int, bool, str]] = []
        self._first_ack_at = 0.0
        self._inflight: OrderedDict[int, int] = OrderedDict()     # mid -> seq, in publish order
        self._sent_upto = 0                    # highest seq published on this connection
        self._refused_until = 0.0
        self.client: Any = None
        self.connected = False
        self.published_count = 0
        self.delivered_count = 0
        self.journal_reads = 0                 # 0 per press in steady state (a test checks)

    # ------------------------------------------------------------ listeners (any thread)
    def on_journal_event(self, event: ev.Event, sent: bool = False) -> None:
        """Journal listener, right after the commit: keep the event for the drain (unless it
        was just sent) and wake the worker."""
        if not sent:
            with self._lock:
                self._buffer.append(event)
            self._wake()

    def on_ack(self, mid: int, ok: bool, reason: str) -> None:
        """paho's on_publish (network thread). Nobody waits for an event to be marked delivered
        (the district already has it), so the worker collects acks for up to ACK_BATCH_SECONDS
        and commits them in one transaction; it is woken at once only when half the window is
        acknowledged (a drain after an outage: keep the window moving)."""
        with self._lock:
            first = not self._acks
            if first:
                self._first_ack_at = time.monotonic()
            self._acks.append((mid, ok, reason))
            urgent = first or len(self._acks) >= WINDOW // 2 or not ok
        if urgent:
            self._wake()

    def ack_wait(self) -> float | None:
        """Seconds until the pending acknowledgements are due (None: there are none)."""
        with self._lock:
            if not self._acks:
                return None
            return max(0.0, self._first_ack_at + ACK_BATCH_SECONDS - time.monotonic())

    def publish_now(self, events: Iterable[ev.Event]) -> bool:
        """From the core's change feed, after its lock: send events that are next in order at
        once. False when any was left for the worker (it drains everything else)."""
        if not self.connected or time.monotonic() < self._refused_until:
            return False
        if not self._publish_lock.acquire(blocking=False):
            return False
        try:
            for event in events:
                if event.type == ev.SNAPSHOT_CAPTURED:       # its JPEG goes first: the worker's job
                    return False
                with self._lock:
                    if not self._resync and event.seq <= self._sent_upto:
                        continue                              # the worker sent it already
                    if self._resync or self._sent_upto != event.seq - 1 or len(self._inflight) >= WINDOW:
                        return False
                if not self._send(event):
                    return False
            return True
        finally:
            self._publish_lock.release()

    # ------------------------------------------------------------ worker
    def reset(self) -> None:
        """A new connection: everything unacknowledged is sent again, oldest first."""
        with self._publish_lock, self._lock:
            self._inflight.clear()
            self._sent_upto = 0
            self._resync = True

    def handle_acks(self, force: bool = False) -> bool:
        """Mark acknowledged events delivered (one transaction). True when any were."""
        with self._publish_lock, self._lock:
            due = (len(self._acks) >= WINDOW // 2 or not all(ok for _m, ok, _r in self._acks)
                   or time.monotonic() >= self._first_ack_at + ACK_BATCH_SECONDS)
            if not self._acks or not (due or force):
                return False
            acks, self._acks = self._acks, []
            delivered: list[int] = []
            refused: list[str] = []
            for mid, ok, reason in acks:
                seq = self._inflight.pop(mid, None)
                if seq is None:
                    continue           # status/state/snapshot, or a message of an earlier connection
                if ok:
                    delivered.append(seq)
                else:
                    refused.append(reason)
            if refused:
                # Keep order: resend from the first undelivered event once the refusal may be fixed.
                self._inflight.clear()
                self._sent_upto = 0
                self._resync = True
                self._refused_until = time.monotonic() + REFUSED_RETRY_SECONDS
        if refused:
            self._on_refused(refused[0])
        if delivered:
            self.journal.mark_delivered(delivered)
            self.delivered_count += len(delivered)
        return bool(delivered)

    def drain(self) -> None:
        with self._publish_lock:
            if self.client is None or time.monotonic() < self._refused_until:
                return                 # the worker wakes at least every second and retries then
            while self.connected:
                batch = self._next_batch()
                if not batch:
                    return
                for event in batch:
                    if not self.connected or not self._send(event):
                        return

    def _next_batch(self) -> list[ev.Event]:
        with self._lock:
            room = WINDOW - len(self._inflight)
            if room <= 0:
                return []
            while self._buffer and self._buffer[0].seq <= self._sent_upto:
                self._buffer.popleft()
            if not self._resync:
                if not self._buffer:
                    return []
                if self._buffer[0].seq == self._sent_upto + 1:
                    batch: list[ev.Event] = []
                    while self._buffer and len(batch) < room and \
                            self._buffer[0].seq == self._sent_upto + 1 + len(batch):
                        batch.append(self._buffer.popleft())
                    return batch
            after = self._sent_upto
        # a new connection, a refusal or a gap (the buffer overflowed): read the journal once
        self.journal_reads += 1
        events = self.journal.undelivered(limit=room, after_seq=after)
        with self._lock:
            self._resync = len(events) >= room
        return events

    def _send(self, event: ev.Event) -> bool:
        if event.type == ev.SNAPSHOT_CAPTURED and self._publish_snapshots and event.request_id:
            self._publish_snapshot(event.request_id)
        info = self.client.publish(self.topic_events, self._event_text(event), qos=QOS)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False               # not connected any more: the reconnect resends from the journal
        with self._lock:
            self._inflight[info.mid] = event.seq
            self._sent_upto = event.seq
        self.published_count += 1
        return True

    def _publish_snapshot(self, request_id: str) -> None:
        """The JPEG goes out just before its event (best effort: the event carries size and sha256)."""
        path = self._snapshot_path(request_id)
        if path is None:
            return
        try:
            data = path.read_bytes()
        except OSError as exc:
            log.warning("mqtt: snapshot %s unreadable: %s", request_id, exc)
            return
        self.client.publish(self._snapshot_topic(request_id), data, qos=QOS)

    # ------------------------------------------------------------ figures
    @property
    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def depth(self) -> int:
        """Events not yet acknowledged by the broker (the journal's O(1) counter)."""
        return int(self.journal.outbox_depth())

    def waiting(self) -> int:
        """Events not yet sent on this connection: the depth minus those in flight."""
        return max(0, self.depth() - self.inflight)
