"""Random ids (uuid4 text) drawn ahead of the moment they are needed.

A ring's request id and its event's id are drawn while the buzzer press waits for its journal
commit and MQTT publish: on the press path itself. After seconds of idle (a real door between
rings) one ``str(uuid.uuid4())`` costs 50-70 us on the reference 2-core machine (cold caches,
a ``getrandom`` system call, the UUID object), twenty times its warm cost, and the press draws
two before its INSERT. So ids are drawn a few at a time *after* a transition (``refill``, called
once its events are committed and published) and the press only takes one (``take``: a deque
pop). Each id is still a fresh uuid4 from the OS's random source, taken once; only the moment
it is drawn moves. An empty pool (a burst of transitions) draws on the spot, as before.
"""

from __future__ import annotations

import uuid
from collections import deque

POOL_SIZE = 8     # a ring cycle takes about 6 (request, press, approve, unlock, open, close ...)


class IdPool:
    """Pre-drawn uuid4 strings. Thread-safe: deque appends and pops are atomic, and an id
    popped by one thread is never handed to another."""

    def __init__(self, size: int = POOL_SIZE):
        self.size = size
        self._ids: deque[str] = deque()

    def take(self) -> str:
        """A fresh uuid4 string, never handed out before."""
        try:
            return self._ids.popleft()
        except IndexError:
            return str(uuid.uuid4())

    def refill(self) -> None:
        """Top the pool up (off the hot path: after a transition's events are out)."""
        ids = self._ids
        while len(ids) < self.size:
            ids.append(str(uuid.uuid4()))

    def __len__(self) -> int:
        return len(self._ids)


IDS = IdPool()
"""The process's pool: the core (request ids) and the journal (event ids) share it."""
