"""Sign-in throttling per client address and per (username, address) pair, in memory.

Why these two keys and never the username alone: a limit per username lets anyone on
the network lock a staff member out (five wrong passwords for ``admin`` from one
laptop would refuse the real admin everywhere). Keyed by (username, address), a
guesser only locks out themselves; keyed by address, one device cannot spray many
usernames. A correct password from an address that has not failed always signs in.

Why in memory: a restart is rare and slow compared to the window, and keeping
failures out of SQLite means a password-guessing flood cannot grow a file. Memory is
bounded anyway: at most ``max_keys`` keys are tracked (the oldest are evicted first),
and each keeps no more timestamps than its limit needs.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable

ADDRESS = "address"
USER_ADDRESS = "user_address"
KINDS = (ADDRESS, USER_ADDRESS)

Key = tuple[str, str, str]          # (kind, address, username); username is "" for ADDRESS


@dataclass(frozen=True)
class ThrottleEntry:
    """One tracked key, for the admin page."""
    kind: str
    address: str
    username: str
    failures: int          # failures inside the window
    blocked: bool
    retry_after: int       # seconds until the oldest failure leaves the window (0 if not blocked)


class LoginThrottle:
    def __init__(self, per_user_address: int = 5, per_address: int = 20, window_seconds: float = 900.0,
                 now: Callable[[], float] = time.monotonic, max_keys: int = 4096):
        self.limits = {USER_ADDRESS: max(1, per_user_address), ADDRESS: max(1, per_address)}
        self.window = window_seconds
        self.now = now
        self.max_keys = max(2, max_keys)
        self._failures: OrderedDict[Key, deque[float]] = OrderedDict()
        self._announced: OrderedDict[Key, float] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _keys(address: str, username: str) -> tuple[Key, Key]:
        return (ADDRESS, address, ""), (USER_ADDRESS, address, username)

    def _recent(self, key: Key, now: float) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            return deque()
        while q and now - q[0] > self.window:
            q.popleft()
        if not q:
            self._failures.pop(key, None)
        return q

    def blocked(self, address: str, username: str) -> list[str]:
        """Which limits ('address', 'user_address') this attempt exceeds; empty when it may proceed."""
        now = self.now()
        with self._lock:
            return [key[0] for key in self._keys(address, username)
                    if len(self._recent(key, now)) >= self.limits[key[0]]]

    def failed(self, address: str, username: str) -> None:
        now = self.now()
        with self._lock:
            for key in self._keys(address, username):
                q = self._failures.pop(key, None)
                if q is None:
                    q = deque(maxlen=self.limits[key[0]])   # more than the limit is never needed
                q.append(now)
                self._failures[key] = q                       # newest last: eviction takes the oldest
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, address: str, username: str) -> None:
        """A correct password forgives that pair's mistakes; the address count stays."""
        with self._lock:
            self._failures.pop((USER_ADDRESS, address, username), None)

    def should_announce(self, kinds: list[str], address: str, username: str) -> bool:
        """Journal a throttled attempt once per key and window, not once per request."""
        now = self.now()
        announce = False
        with self._lock:
            for key in self._keys(address, username):
                if key[0] not in kinds:
                    continue
                if now - self._announced.get(key, -1e18) > self.window:
                    self._announced.pop(key, None)
                    self._announced[key] = now
                    announce = True
            while len(self._announced) > self.max_keys:
                self._announced.popitem(last=False)
        return announce

    def entries(self) -> list[ThrottleEntry]:
        """Every key with failures in the window, blocked ones first (the admin page)."""
        now = self.now()
        out = []
        with self._lock:
            for key in list(self._failures):
                q = self._recent(key, now)
                if not q:
                    continue
                blocked = len(q) >= self.limits[key[0]]
                retry = int(max(0.0, self.window - (now - q[0])) + 0.999) if blocked else 0
                out.append(ThrottleEntry(key[0], key[1], key[2], len(q), blocked, retry))
        out.sort(key=lambda e: (not e.blocked, e.kind, e.address, e.username))
        return out

    def clear(self, kind: str, address: str, username: str = "") -> bool:
        """Forget one key (an admin lifted it). True if it was tracked."""
        key = (kind, address, username if kind == USER_ADDRESS else "")
        with self._lock:
            self._announced.pop(key, None)
            return self._failures.pop(key, None) is not None

    def clear_all(self) -> int:
        with self._lock:
            n = len(self._failures)
            self._failures.clear()
            self._announced.clear()
            return n

    def __len__(self) -> int:
        with self._lock:
            return len(self._failures)
