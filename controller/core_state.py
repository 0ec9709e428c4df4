"""The entry core's change feed, queries and the transition wrapper. Moved from core.py;
``EntryCore`` (core.py) is built on this class.
"""

from __future__ import annotations

import logging
from datetime import timezone
from functools import wraps
from typing import Any, Callable, Concatenate, ParamSpec, TypeVar

from . import events as ev
from .core_internals import CoreInternals
from .core_model import Change, Clock
from .vocabulary import Alarm

log = logging.getLogger("controller.core")

_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S", bound="CoreState")


def _transition(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """Run a public command under the core lock, after due timers, then notify."""
    @wraps(method)
    def wrapper(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            self._run_timers()
            try:
                result = method(self, *args, **kwargs)
            finally:
                self._refresh_indicators()
                self._queue_change()
        self._after_change()
        return result
    return wrapper


class CoreState(CoreInternals):
    """The change feed (listeners) and the read-only queries of the entry core."""

    # ------------------------------------------------------------ listeners
    def add_listener(self, callback: Callable[[Change], None]) -> None:
        """The change feed: callback(change) runs once per transition (commands, timers that
        fired), outside the core lock, in the order the transitions happened."""
        self._listeners.append(callback)

    def _queue_change(self) -> None:
        """Under the lock: close the running transition into one Change (queued, not sent)."""
        events, self._committed = tuple(self._committed), []
        if self._listeners:
            self._feed.append(Change(events, self.status()))

    def _after_change(self) -> None:
        """Outside the lock: deliver queued changes in order. If another thread is delivering,
        it also delivers ours (it re-checks the queue after letting go), so nobody waits."""
        while self._feed:
            if not self._emit_lock.acquire(blocking=False):
                return
            try:
                while True:
                    try:
                        change = self._feed.popleft()
                    except IndexError:
                        break
                    for callback in list(self._listeners):
                        try:
                            callback(change)
                        except Exception:
                            log.exception("core listener failed")
            finally:
                self._emit_lock.release()

    @property
    def clock(self) -> Clock:
        """The one clock of the core: its deadlines (``next_deadline``) are on it."""
        return self._clock

    # ------------------------------------------------------------ queries
    def next_deadline(self) -> float | None:
        """Monotonic time of the next timer, for the daemon's loop."""
        with self._lock:
            times = []
            if self._pulse is not None:
                times.append(self._pulse.ends_at)
            if self._ring is not None:
                times.append(self._ring.expires_at)
            if self._door_open and Alarm.HELD_OPEN not in self._alarms:
                times.append(self._door_opened_at + self.rules.held_open_seconds)
            if self._denied_until:
                times.append(self._denied_until)
            if self._fault is not None:
                times.append(self._fault_retry_at)
            if Alarm.DISK_FULL in self._alarms:
                times.append(self._reserve_retry_at)
            return min(times) if times else None

    # Queries take the lock so a reader never sees a transition half-done (e.g. the
    # lockdown_ended event committed but the lockdown not yet lifted).
    @property
    def strike_energized(self) -> bool:
        with self._lock:
            return self._pulse is not None

    @property
    def in_lockdown(self) -> bool:
        with self._lock:
            return self._lockdown is not None

    @property
    def fault(self) -> str | None:
        with self._lock:
            return self._fault

    def status(self) -> dict[str, Any]:
        """A JSON-able picture of door state for the panel and the MQTT state topic."""
        with self._lock:
            now = self._clock.monotonic()
            wall = self._clock.now()
            door = "open" if self._door_open else ("unlocked" if self._pulse else "locked")
            ring = None
            if self._ring is not None:
                r = self._ring
                ring = {"request_id": r.request_id, "started": ev.utc_iso(r.started_wall),
                        "presses": r.presses, "seconds_left": round(max(0.0, r.expires_at - now), 1),
                        "press_times": [ev.utc_iso(t) for t in r.press_times or []],
                        "photo": ({"n": r.photo, "at": ev.utc_iso(r.photo_at) if r.photo_at else None,
                                   "press": r.photo_press} if r.photo else None),
                        "photo_pending": r.photo_pending, "lockdown": r.lockdown,
                        "expires": ev.utc_iso(wall.fromtimestamp(wall.timestamp() + r.expires_at - now,
                                                                 timezone.utc))}
            pulse = None
            if self._pulse is not None:
                p = self._pulse
                pulse = {"request_id": p.request_id, "actor": p.actor,
                         "seconds_left": round(max(0.0, p.ends_at - now), 1)}
            lockdown = None
            if self._lockdown is not None:
                lk = self._lockdown
                lockdown = {"since": ev.utc_iso(lk.since), "actor": lk.actor, "reason": lk.reason,
                            "source": lk.source, "level": lk.level}
            return {"door": door, "strike": "unlocked" if self._pulse else "locked",
                    "door_open": self._door_open if self.has_door_contact else None,
                    "ring": ring, "pulse": pulse, "lockdown": lockdown,
                    "alarms": {k: ev.utc_iso(v) for k, v in self._alarms.items()},
                    "fault": self._blocked()}
