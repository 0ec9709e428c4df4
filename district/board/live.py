"""The live grid: PostgreSQL LISTEN/NOTIFY fanned out to every open screen over SSE.

Why LISTEN/NOTIFY (triggers in district/board/schema.sql) rather than polling: a change is
heard within milliseconds of the recorder's commit, the database does one grid query per
burst of changes however many screens are open (not one per screen per poll), and a
notification exists only for committed rows. One listener thread per board instance holds
one connection; after a notification it waits ``COALESCE_SECONDS`` for the rest of the
burst, builds the grid once and hands it to every stream. Notifications are not stored:
while the listener reconnects they are lost, so the grid is also rebuilt every
``refresh_seconds`` and on every reconnect.

Streams: each holds one server thread, so they are capped below the thread count; a
stream whose bounded queue is full (a stalled client) is cut off and reconnects with a
fresh grid; every heartbeat re-checks the session, so sign-out ends open streams.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any, Callable, Iterator

import psycopg
from flask import Blueprint, Response, current_app, render_template, request

from . import grid as grid_mod
from . import security as sec

log = logging.getLogger(__name__)
bp = Blueprint("board_live", __name__)

CHANNEL = "board_door"
COALESCE_SECONDS = 0.05
_STOP = object()


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


class GridHub:
    """One LISTEN connection, the latest grid, and the queues of the open streams."""

    def __init__(self, conninfo: str, build: Callable[[], dict[str, Any]], refresh_seconds: float = 10.0,
                 max_streams: int = 24, queue_size: int = 16):
        self.conninfo = conninfo
        self.build = build
        self.refresh_seconds = refresh_seconds
        self.max_streams = max_streams
        self.queue_size = queue_size
        self.latest: dict[str, Any] | None = None
        self.builds = 0
        self.notifications = 0
        self._sig: Any = None
        self._streams: list[queue.Queue[Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="board-listen", daemon=True)

    def start(self) -> "GridHub":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            streams, self._streams = self._streams, []
        for q in streams:
            try:
                q.put_nowait(_STOP)
            except queue.Full:
                pass
        self._thread.join(timeout=5)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._streams)

    def subscribe(self) -> queue.Queue[Any] | None:
        with self._lock:
            if len(self._streams) >= self.max_streams:
                return None
            q: queue.Queue[Any] = queue.Queue(maxsize=self.queue_size)
            self._streams.append(q)
            return q

    def unsubscribe(self, q: queue.Queue[Any]) -> None:
        with self._lock:
            if q in self._streams:
                self._streams.remove(q)

    def refresh(self, force: bool = False) -> dict[str, Any] | None:
        """Build the grid; push it to every stream if it changed (or ``force``)."""
        try:
            grid = self.build()
        except psycopg.Error as exc:
            log.warning("grid query failed: %s", exc)
            return None
        self.builds += 1
        sig = grid_mod.signature(grid)
        changed = force or sig != self._sig
        self._sig, self.latest = sig, grid
        if changed:
            with self._lock:
                streams = list(self._streams)
            for q in streams:
                try:
                    q.put_nowait(grid)
                except queue.Full:       # a stalled client: cut it off, it reconnects fresh
                    self.unsubscribe(q)
                    try:
                        q.get_nowait()
                        q.put_nowait(_STOP)
                    except (queue.Empty, queue.Full):
                        pass
        return grid

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.refresh(force=True)
                    self._listen(conn)
            except psycopg.Error as exc:
                log.warning("board listener lost its database connection: %s (retrying)", exc)
                self._stop.wait(2.0)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            heard = sum(1 for _ in conn.notifies(timeout=1.0, stop_after=1))
            if heard:
                heard += sum(1 for _ in conn.notifies(timeout=COALESCE_SECONDS))
                self.notifications += heard
                self.refresh()
                last = time.monotonic()
            elif time.monotonic() - last >= self.refresh_seconds:
                self.refresh()
                last = time.monotonic()


def hub() -> GridHub:
    return current_app.extensions["board_hub"]


@bp.get("/")
@sec.require()
def index() -> Any:
    grid = hub().latest or hub().refresh() or {"campuses": [], "now": None, "ring_alert_seconds": 30}
    return render_template("board_grid.html", grid=grid)


@bp.get("/api/grid")
@sec.require()
def api_grid() -> Any:
    grid = hub().refresh()
    if grid is None:
        return sec.error(503, "the district database is not answering; try again in a moment")
    return grid


@bp.get("/live")
@sec.require()
def live() -> Any:
    h = hub()
    q = h.subscribe()
    if q is None:
        return sec.error(503, "too many live screens are open on this board; close one and reload")
    token = request.cookies.get(sec.SESSION_COOKIE)
    store = sec.store()
    heartbeat = float(current_app.config["SSE_HEARTBEAT_SECONDS"])
    first = h.latest or h.refresh()

    def stream() -> Iterator[bytes]:
        checked = time.monotonic()
        try:
            if first is not None:
                yield sse("grid", first)
            while True:
                try:
                    item = q.get(timeout=heartbeat)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    return
                if time.monotonic() - checked >= heartbeat:     # however busy the grid is
                    checked = time.monotonic()
                    if store.session(token, touch=True) is None:
                        yield sse("signed_out", {})
                        return
                yield sse("grid", item) if item is not None else sse("ping", {"t": time.time()})
        finally:
            h.unsubscribe(q)

    return Response(stream(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
