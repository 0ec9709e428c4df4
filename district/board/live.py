"""The live grid: PostgreSQL LISTEN/NOTIFY fanned out to every open screen over SSE.

Why LISTEN/NOTIFY (triggers in district/board/schema.sql) rather than polling: a change is
heard within milliseconds of the recorder's commit, the database does one grid query per
burst of changes however many screens are open (not one per screen per poll), and a
notification exists only for committed rows. One listener thread per board instance holds
one connection. The first notification after a quiet spell is acted on at once; while the
listener is busy (or within ``COALESCE_SECONDS`` of its last refresh) further ones pile up and
are taken together, so under load the doors of many commits cost one query and one frame,
and a door named N times in that spell is sent once, with its state as queried after the
last of them (the latest). Each frame is encoded once and the same bytes go to every stream.
Notifications are not stored: while the listener reconnects they are lost, so the grid is
also rebuilt every ``refresh_seconds`` and on every reconnect, and a (re)connecting stream
starts with the whole grid.

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

CHANNEL = "board_door"          # the board's own triggers (schema.sql): payload 'campus/door' or 'campus/'
RECORDER_CHANNEL = "district"   # the recorder's explicit NOTIFY per commit: {"doors": [...] | "*"}, {"gaps": [...]}
COALESCE_SECONDS = 0.025
_STOP = object()


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


class GridHub:
    """One LISTEN connection, the latest grid, and the queues of the open streams.

    A burst of notifications names the doors that changed: only those are queried and patched
    into the latest grid, only their campuses' signatures are compared (the cost follows the
    burst, not the district), and only the campuses whose picture changed are pushed (``full:
    false``), as one encoded frame shared by every stream; a new stream starts with the whole
    grid (``full: true``). A campus-level change, a door of an unknown campus or a very large
    burst rebuilds everything, as does the timer.
    """

    PATCH_LIMIT = 200            # more doors than this in one burst: one full query is cheaper

    def __init__(self, conninfo: str, build: Callable[[set[tuple[str, str]] | None], dict[str, Any]],
                 refresh_seconds: float = 10.0, max_streams: int = 24, queue_size: int = 64,
                 coalesce_seconds: float = COALESCE_SECONDS):
        self.conninfo = conninfo
        self.coalesce_seconds = coalesce_seconds
        self.build = build
        self.refresh_seconds = refresh_seconds
        self.max_streams = max_streams
        self.queue_size = queue_size
        self.latest: dict[str, Any] | None = None
        self.builds = 0
        self.patches = 0
        self.notifications = 0
        self.frames = 0              # frames pushed (each encoded once for every stream)
        self._last_refresh = 0.0     # monotonic end of the last refresh: the coalescing window
        self._sigs: dict[str, Any] = {}
        self._streams: list[queue.Queue[Any]] = []
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
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

    def refresh(self, force: bool = False, doors: set[tuple[str, str]] | None = None) -> dict[str, Any] | None:
        """Rebuild (or with ``doors``, patch) the grid; push what changed (everything if ``force``).
        Returns the whole grid."""
        with self._build_lock:
            try:
                grid, touched = None, None
                if doors is not None and self.latest is not None and len(doors) <= self.PATCH_LIMIT:
                    part = self.build(doors)
                    grid = grid_mod.patch(self.latest, part)
                    if grid is not None:
                        self.patches += 1
                        touched = {c["campus"] for c in part["campuses"]}
                if grid is None:
                    grid = self.build(None)
                    self.builds += 1
            except psycopg.Error as exc:
                log.warning("grid query failed: %s", exc)
                return None
            if touched is None:          # a rebuild: every campus is compared, removed ones are named
                sigs = grid_mod.signature(grid)
                candidates = grid["campuses"]
                removed = [k for k in self._sigs if k not in sigs]
            else:                        # a patch: only the campuses of the named doors can differ
                sigs = dict(self._sigs)
                candidates = [c for c in grid["campuses"] if c["campus"] in touched]
                sigs.update((c["campus"], grid_mod.campus_signature(c)) for c in candidates)
                removed = []
            changed = [c for c in candidates if force or self._sigs.get(c["campus"]) != sigs[c["campus"]]]
            self._sigs, self.latest = sigs, grid
            if changed or removed:       # under the build lock: frames leave in the order of the grids
                self._push(sse("grid", {**grid, "campuses": changed, "removed": removed, "full": force}))
        return grid

    def _push(self, frame: bytes) -> None:
        self.frames += 1
        with self._lock:
            streams = list(self._streams)
        for q in streams:
            try:
                q.put_nowait(frame)
            except queue.Full:       # a stalled client: cut it off, it reconnects to a full grid
                self.unsubscribe(q)
                try:
                    q.get_nowait()
                    q.put_nowait(_STOP)
                except (queue.Empty, queue.Full):
                    pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    conn.execute(f"LISTEN {RECORDER_CHANNEL}")
                    self.refresh(force=True)
                    self._listen(conn)
            except psycopg.Error as exc:
                log.warning("board listener lost its database connection: %s (retrying)", exc)
                self._stop.wait(2.0)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            notes = list(conn.notifies(timeout=1.0, stop_after=1))
            if notes:
                # quiet until now: act at once; busy: wait out the window, taking what arrives
                window = self._last_refresh + self.coalesce_seconds - time.monotonic()
                notes += list(conn.notifies(timeout=max(0.0, window)))
                self.notifications += len(notes)
                doors: set[tuple[str, str]] | None = set()
                for n in notes:
                    named = doors_named(n.channel, n.payload)
                    if named is None:
                        doors = None
                        break
                    doors = (doors or set()) | named
                self.refresh(doors=doors)
                self._last_refresh = time.monotonic()
            elif time.monotonic() - last >= self.refresh_seconds:
                self.refresh()
                last = time.monotonic()


def doors_named(channel: str, payload: str) -> set[tuple[str, str]] | None:
    """The doors a notification names; None when it names a whole campus (or is not understood):
    then the grid is rebuilt. Both channels carry 'campus/door' names; 'campus/' and 'campus/*'
    (a campus bridge) and '*' mean everything of that campus or of the district."""
    names: list[str] = [payload]
    if channel == RECORDER_CHANNEL:
        try:
            note = json.loads(payload)
            names = list(note.get("doors", [])) + list(note.get("gaps", []))
        except (ValueError, TypeError, AttributeError):
            return None
    out: set[tuple[str, str]] = set()
    for name in names:
        if not isinstance(name, str):
            return None
        campus, _, door = name.partition("/")
        if not campus or not door or door == "*":
            return None
        out.add((campus, door))
    return out


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
    latest = h.latest or h.refresh()
    first = sse("grid", {**latest, "full": True, "removed": []}) if latest is not None else None

    def stream() -> Iterator[bytes]:
        checked = time.monotonic()
        try:
            if first is not None:
                yield first
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
                yield item if item is not None else sse("ping", {"t": time.time()})
        finally:
            h.unsubscribe(q)

    return Response(stream(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
