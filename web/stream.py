"""Server-Sent Events: every open dashboard hears journal events and status changes at once.

Why this shape:
- journal events are fanned out from ``journal.subscribe`` (already committed when we hear
  them) and status changes from the core's change feed (``core.add_listener``, which
  carries the status each change left); both listeners only put into
  bounded per-client queues and never block the core;
- each stream holds one server thread, so the number of streams is capped below the
  thread count: normal requests always have threads left; and it is shared fairly: one
  sign-in may hold at most ``per_session`` streams and one account ``per_user``, so a
  single session (a script, a stolen cookie) cannot take every slot from the other staff;
- a heartbeat (a tiny ``ping`` event, not a comment, so the page can notice a silent stall)
  every few seconds makes a write to every stream, so a client that went away raises on
  write, the generator ends and its slot is freed within seconds;
- a client that falls behind (queue full) is cut off and reconnects with a fresh state
  instead of growing memory;
- every few seconds the stream re-checks its session, so sign-out, revocation and the
  absolute lifetime also end open streams; the same check counts as activity, so a
  front-office display that is open and streaming stays signed in (and keeps alerting)
  until ``web.session_max_hours``, and is told how long it has left (a ``session`` event)
  so it can warn before then. A session with no open stream still times out when idle;
- health facts that change without a core change (the MQTT outbox draining, the link or the
  camera going down or up) are watched every ``health_poll_seconds`` and a change goes out as
  a ``state`` event on the same stream, so "Events waiting to send" never shows a stale count
  until the next periodic refresh;
- every journal event carries ``label``, its human sentence from controller/labels.py (the one
  table of words), so the activity feed never shows a raw code.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any, Callable, Iterator

from flask import Blueprint, Response, current_app, request

from controller import events as ev
from controller import labels
from controller.api import DoorApi, JournalError

from . import security as sec
from .panel import missed_rings, panel_state

log = logging.getLogger(__name__)

bp = Blueprint("stream", __name__)

_STOP = ("stop", None)
MISSED_KEEP_SECONDS = 30.0      # missed rings kept between state frames at most this long


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _signature(status: dict[str, Any]) -> dict[str, Any]:
    """Status without the fields that change every tick (countdowns run in the browser);
    compared as a dict (encoding it to JSON per change only to compare cost more)."""
    stable = dict(status)
    for key in ("ring", "pulse"):
        if stable.get(key):
            stable[key] = {k: v for k, v in stable[key].items() if k not in ("seconds_left", "expires")}
    return stable


class StreamRefused(Exception):
    """No stream for this caller: ``status`` (429 for its own share, 503 when all are taken) and why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class StreamClient:
    def __init__(self, token: str, queue_size: int, session_id: str = "", username: str = ""):
        self.token = token
        self.session_id = session_id
        self.username = username
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=queue_size)
        self.overflowed = False
        self._status_pending = threading.Event()

    def offer(self, item: tuple[str, Any]) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.overflowed = True

    def offer_status(self) -> None:
        """Coalesce: at most one pending status refresh per client."""
        if not self._status_pending.is_set():
            self._status_pending.set()
            self.offer(("status", None))

    def status_taken(self) -> None:
        self._status_pending.clear()


class StreamHub:
    def __init__(self, controller: DoorApi, session_check: Callable[[str], dict[str, Any] | None],
                 max_streams: int = 24,
                 queue_size: int = 200, heartbeat_seconds: float = 3.0, state_every: int = 5,
                 per_session: int = 4, per_user: int = 8, health_poll_seconds: float = 0.5,
                 missed_acked: Callable[[], set[str]] | None = None):
        self.controller = controller
        self.session_check = session_check    # touches the session; its info, or None when it ended
        self.max_streams = max_streams
        self.per_session = per_session
        self.per_user = per_user
        self.queue_size = queue_size
        self.heartbeat = heartbeat_seconds
        self.state_every = max(1, state_every)
        self._clients: set[StreamClient] = set()
        self._lock = threading.Lock()
        self._last_signature: dict[str, Any] | None = None
        self._closed = False
        self.missed_acked = missed_acked or set
        self._health_poll = health_poll_seconds
        self._last_health = ""
        self._stopped = threading.Event()
        self._missed_lock = threading.Lock()
        self._missed: tuple[float, list[dict[str, Any]]] | None = None    # (good until, rings)
        controller.subscribe_events(self._on_event)
        controller.subscribe_changes(self._on_change)
        threading.Thread(target=self._watch_health, name="stream-health", daemon=True).start()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._clients)

    def _each(self) -> list[StreamClient]:
        with self._lock:
            return list(self._clients)

    def missed(self) -> list[dict[str, Any]]:
        """The missed rings for a state frame, read again only when they can have changed: a
        ring expired, a missed ring was acknowledged (``refresh``), or MISSED_KEEP_SECONDS
        passed (a pruned photo). Reading them (two queries) for every frame was a third of
        the stream's work per ring."""
        with self._missed_lock:
            now = time.monotonic()
            if self._missed is None or now >= self._missed[0]:
                try:
                    self._missed = (now + MISSED_KEEP_SECONDS, missed_rings(self.controller, self.missed_acked()))
                except JournalError:
                    return []
            return self._missed[1]

    def _forget_missed(self) -> None:
        with self._missed_lock:
            self._missed = None

    def _on_event(self, event: Any) -> None:
        if getattr(event, "type", None) == ev.RING_EXPIRED:
            self._forget_missed()
        if self._closed:
            return
        clients = self._each()
        if not clients:
            return
        # The event's one JSON text (the same the MQTT link publishes, encoded once) with its
        # human sentence from the words table spliced in: one frame for every stream.
        text = event.to_json()
        label = json.dumps(labels.describe(event.to_dict()))
        frame = f"event: journal\ndata: {text[:-1]},\"label\":{label}}}\n\n".encode()
        for client in clients:
            client.offer(("frame", frame))

    def _on_change(self, change: Any) -> None:
        """Core change feed: runs once per transition with the status it left (no re-read);
        only real changes go out."""
        if self._closed or not self._clients:
            return
        signature = _signature(change.status)
        if signature == self._last_signature:
            return
        self._last_signature = signature
        for client in self._each():
            client.offer_status()

    def _health_signature(self) -> str:
        """The health facts a dashboard shows that can change with no core change (cheap)."""
        return json.dumps(self.controller.health_signature(), default=str)

    def _watch_health(self) -> None:
        while not self._stopped.wait(self._health_poll):
            if not self._clients:
                self._last_health = ""
                continue
            try:
                signature = self._health_signature()
            except Exception:          # a closed journal at shutdown, a service mid-restart
                continue
            if signature != self._last_health:
                self._last_health = signature
                for client in self._each():
                    client.offer_status()

    def _refusal(self, session_id: str, username: str) -> StreamRefused | None:
        """Why a new stream would be refused, or None (caller holds the lock)."""
        if self._closed:
            return StreamRefused(503, "the panel is shutting down; retry in a moment")
        if session_id and sum(c.session_id == session_id for c in self._clients) >= self.per_session:
            return StreamRefused(429, f"this sign-in already has {self.per_session} live dashboards "
                                      "open; close one (another tab or window) and retry")
        if username and sum(c.username == username for c in self._clients) >= self.per_user:
            return StreamRefused(429, f"{username} already has {self.per_user} live dashboards open "
                                      "across all sign-ins; close one and retry")
        if len(self._clients) >= self.max_streams:
            return StreamRefused(503, "too many live dashboards are open; close one and retry")
        return None

    def share(self, session_id: str, username: str) -> dict[str, Any]:
        """This caller's use of the stream slots, so a dashboard can say why it cannot connect."""
        with self._lock:
            refused = self._refusal(session_id, username)
            return {"session": sum(c.session_id == session_id for c in self._clients),
                    "per_session": self.per_session,
                    "user": sum(c.username == username for c in self._clients), "per_user": self.per_user,
                    "available": refused is None, "reason": refused.message if refused else None}

    def open(self, token: str, session_id: str = "", username: str = "") -> StreamClient:
        """A new stream slot, or StreamRefused saying whose share is used up."""
        with self._lock:
            refused = self._refusal(session_id, username)
            if refused is not None:
                raise refused
            client = StreamClient(token, self.queue_size, session_id, username)
            self._clients.add(client)
            self._last_signature = None  # changes skipped while nobody listened must not mask the next one
            return client

    def refresh(self) -> None:
        """Send every open dashboard a fresh state (a change outside the core, e.g. a missed ring seen)."""
        self._forget_missed()
        for client in self._each():
            client.offer_status()

    def remove(self, client: StreamClient) -> None:
        with self._lock:
            self._clients.discard(client)

    def reset_all(self) -> None:
        """Make every open dashboard reconnect and redraw from a fresh state."""
        for client in self._each():
            client.overflowed = True
            try:
                client.queue.put_nowait(("status", None))   # wake the generator so it notices
            except queue.Full:
                pass

    def close(self) -> None:
        """End every stream (server shutdown) and stop listening to the journal."""
        self._closed = True
        self._stopped.set()
        self.controller.unsubscribe_events(self._on_event)
        for client in self._each():
            try:
                client.queue.put_nowait(_STOP)
            except queue.Full:
                client.overflowed = True

    def generate(self, client: StreamClient) -> Iterator[bytes]:
        """The body of one stream. Ends on stop, overflow, sign-out, or a failed write."""
        try:
            yield b"retry: 2000\n\n"
            yield sse("state", panel_state(self.controller, acked=self.missed_acked()))
            info = self.session_check(client.token)
            if info is None:
                yield sse("signed_out", {})
                return
            yield sse("session", info)
            beats = 0
            checked = time.monotonic()
            while True:
                if client.overflowed:
                    yield sse("reset", {"reason": "client fell behind"})
                    return
                try:
                    kind, payload = client.queue.get(timeout=self.heartbeat)
                except queue.Empty:
                    kind, payload = "beat", None
                if kind == "stop":
                    return
                if kind == "beat" or time.monotonic() - checked >= self.heartbeat:
                    # also while events keep coming: the session must stay live and be re-checked
                    checked = time.monotonic()
                    try:
                        info = self.session_check(client.token)
                    except Exception:       # the account store failed: reconnect rather than guess
                        log.exception("session check failed for a live stream")
                        yield sse("reset", {"reason": "session check failed"})
                        return
                    if info is None:
                        yield sse("signed_out", {})
                        return
                if kind == "beat":
                    beats += 1
                    if beats % self.state_every == 0:
                        yield sse("state", panel_state(self.controller, recent=False, missed=self.missed))
                        yield sse("session", info)
                    else:
                        yield b"event: ping\ndata: {}\n\n"
                    continue
                if kind == "status":
                    client.status_taken()
                    yield sse("state", panel_state(self.controller, recent=False, missed=self.missed))
                elif kind == "frame":
                    yield payload
                else:
                    yield sse(kind, payload)
        finally:
            self.remove(client)


@bp.get("/events")
@sec.require()
def events() -> Response:
    hub: StreamHub = current_app.extensions["stream_hub"]
    sess = sec.current_session()
    assert sess is not None  # guaranteed by @require
    try:
        client = hub.open(request.cookies.get(sec.SESSION_COOKIE, ""), sess.id, sess.user.username)
    except StreamRefused as refused:
        resp = sec.error(refused.status, refused.message)
        resp.headers["Retry-After"] = "5"
        return resp
    resp = Response(hub.generate(client), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    resp.call_on_close(lambda: hub.remove(client))   # also when the body was never iterated
    return resp
