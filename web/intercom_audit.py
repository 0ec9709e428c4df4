"""Refused intercom requests, journaled without letting a flood fill the journal.

Each refusal (a malformed or oversized offer, too many offers, the viewer limit, the media
engine unavailable) is journaled as ``intercom_refused`` with the staff member, up to
``DETAIL_PER_INTERVAL`` per interval; beyond that they are counted per category and journaled
once at the end of the interval as ``intercom_refusals`` (total, reasons, since, seconds), the
way the MQTT link summarizes a command flood. Nothing is silent: a timer writes the summary
even if the flood stops, and ``close()`` writes what is left.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from controller import events as ev

log = logging.getLogger(__name__)

DETAIL_PER_INTERVAL = 20
INTERVAL_SECONDS = 60.0


class RefusalLog:
    def __init__(self, audit: Callable[..., Any], detail_per_interval: int = DETAIL_PER_INTERVAL,
                 interval_seconds: float = INTERVAL_SECONDS):
        self._audit = audit
        self.detail_per_interval = detail_per_interval
        self.interval_seconds = interval_seconds
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._since = datetime.now(timezone.utc)
        self._detailed = 0
        self._counts: dict[str, int] = {}
        self._timer: threading.Timer | None = None

    def refused(self, category: str, status: int, reason: str, actor: str | None, username: str | None) -> None:
        with self._lock:
            self._roll()
            detailed = self._detailed < self.detail_per_interval
            if detailed:
                self._detailed += 1
            else:
                self._counts[category] = self._counts.get(category, 0) + 1
                if self._timer is None:
                    wait = max(0.0, self.interval_seconds - (time.monotonic() - self._start))
                    self._timer = threading.Timer(wait + 0.05, self.flush)
                    self._timer.daemon = True
                    self._timer.start()
        if detailed:
            self._write(ev.INTERCOM_REFUSED, actor=actor, actor_username=username, category=category,
                        status=status, reason=reason[:200])

    def _roll(self) -> None:
        """A new interval once the current one is over (the summary is written by flush)."""
        if time.monotonic() - self._start >= self.interval_seconds and not self._counts:
            self._start, self._since, self._detailed = time.monotonic(), datetime.now(timezone.utc), 0

    def flush(self) -> None:
        """Journal the counted refusals of the interval (if any) and start a new interval."""
        with self._lock:
            counts, since = self._counts, self._since
            seconds = time.monotonic() - self._start
            self._counts, self._timer = {}, None
            self._start, self._since, self._detailed = time.monotonic(), datetime.now(timezone.utc), 0
        if counts:
            self._write(ev.INTERCOM_REFUSALS, total=sum(counts.values()), reasons=counts,
                        since=ev.utc_iso(since), seconds=round(seconds, 1))

    def _write(self, kind: str, **data: Any) -> None:
        try:
            self._audit(kind, **data)
        except Exception:        # the core counts a lost write; the refusal itself stands
            log.exception("could not journal %s", kind)

    def close(self) -> None:
        with self._lock:
            timer = self._timer
        if timer is not None:
            timer.cancel()
        self.flush()
