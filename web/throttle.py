"""Login throttling per client address and per username (sliding window, in memory).

Why in memory: a restart is rare and slow compared to the window, and keeping
failures out of SQLite means a password-guessing flood cannot grow a file.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable


class LoginThrottle:
    def __init__(self, per_user: int = 5, per_address: int = 20, window_seconds: float = 900.0,
                 now: Callable[[], float] = time.monotonic, max_keys: int = 10_000):
        self.limits = {"user": per_user, "address": per_address}
        self.window = window_seconds
        self.now = now
        self.max_keys = max_keys
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._announced: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            return deque()
        while q and now - q[0] > self.window:
            q.popleft()
        if not q:
            self._failures.pop(key, None)
        return q

    def blocked(self, address: str, username: str) -> list[str]:
        """Which limits ('address', 'user') this attempt exceeds; empty when it may proceed."""
        now = self.now()
        with self._lock:
            return [kind for kind, value in (("address", address), ("user", username))
                    if len(self._recent((kind, value), now)) >= self.limits[kind]]

    def failed(self, address: str, username: str) -> None:
        now = self.now()
        with self._lock:
            if len(self._failures) > self.max_keys:      # bounded memory under a spray of names
                for key in list(self._failures):
                    self._recent(key, now)
            for key in (("address", address), ("user", username)):
                self._failures.setdefault(key, deque(maxlen=1000)).append(now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(("user", username), None)

    def should_announce(self, kinds: list[str], address: str, username: str) -> bool:
        """Journal a throttled attempt once per key and window, not once per request."""
        now = self.now()
        announce = False
        with self._lock:
            for kind in kinds:
                key = (kind, address if kind == "address" else username)
                if now - self._announced.get(key, -1e18) > self.window:
                    self._announced[key] = now
                    announce = True
            if len(self._announced) > self.max_keys:
                self._announced.clear()
        return announce
