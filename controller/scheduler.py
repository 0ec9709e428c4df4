"""Long-lived timer and worker threads for the door's short jobs (issue 11's CPU figure).

Why: a ring used to start four threads of its own (the snapshot, its capture with a timeout,
gpiozero's LED blink thread and a ``threading.Timer`` for the strike backstop), each created,
scheduled and joined per ring. These classes keep one thread per job kind alive for the
daemon's life instead; the jobs are the same and so are their deadlines.

- ``Scheduler``: callbacks at monotonic times on one thread (LED blinking; the strike
  backstop gets a scheduler of its own, so nothing else can ever delay it).
- ``Worker``: callables run in order on one thread (snapshot requests, camera captures).

Threads start on first use and are daemon threads, so an idle door costs nothing and a
forgotten ``close`` never blocks the process from exiting.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)


class Timer:
    """A scheduled call; ``cancel()`` makes sure it will not run (if it has not started)."""

    __slots__ = ("when", "fn", "cancelled")

    def __init__(self, when: float, fn: Callable[[], Any]):
        self.when, self.fn, self.cancelled = when, fn, False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.threads_started = 0

    def call_later(self, delay: float, fn: Callable[[], Any]) -> Timer:
        timer = Timer(self._clock() + max(0.0, delay), fn)
        with self._cond:
            if self._closed:
                timer.cancelled = True
                return timer
            heapq.heappush(self._heap, (timer.when, next(self._order), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self.threads_started += 1
                self._thread.start()
            elif self._heap[0][2] is timer:
                self._cond.notify()        # the new timer is the earliest: re-arm the wait
        return timer

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    left = self._heap[0][0] - self._clock()
                    if left <= 0:
                        timer = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(left)
            if timer.cancelled:
                continue
            try:
                timer.fn()
            except Exception:
                log.exception("%s: scheduled call failed", self.name)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify_all()


_STOP = object()


class Worker:
    """Runs submitted callables one after another on one long-lived thread."""

    def __init__(self, name: str):
        self.name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.threads_started = 0

    def submit(self, fn: Callable[[], Any]) -> bool:
        """Queue fn; False (not queued) once closed."""
        with self._lock:
            if self._closed:
                return False
            self._queue.put(fn)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self.threads_started += 1
                self._thread.start()
        return True

    def _run(self) -> None:
        while True:
            fn = self._queue.get()
            if fn is _STOP:
                return
            try:
                fn()
            except Exception:
                log.exception("%s: job failed", self.name)

    def close(self, wait: float = 0.0) -> None:
        """Run what is queued, then end the thread (waiting up to ``wait`` seconds for it)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._queue.put(_STOP)
        if thread is not None and wait > 0 and thread is not threading.current_thread():
            thread.join(wait)
