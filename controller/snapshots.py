"""The SnapshotService: captures a snapshot per ring off the ring path and journals the result.

Why a service: the press is journaled and announced first; the snapshot follows as its own
event. A slow, failed or hung camera gives ``camera_failed`` and the ring proceeds without an
image: it never delays or blocks the ring. (Moved from camera.py, which keeps the cameras.)
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from . import events as ev
from .camera import Camera
from .core_model import PhotoRefused
from .scheduler import Worker

log = logging.getLogger(__name__)

REQUEST_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


ANNOUNCE_FIRST_SECONDS = 0.002
PRUNE_INTERVAL_SECONDS = 600.0


class SnapshotService:
    """Captures a snapshot per ring on its own thread, with a timeout, and journals the result.

    One capture at a time: while a hung capture is still stuck, new rings get
    ``camera_failed`` (busy) at once instead of piling up threads. Rings are served by one
    long-lived thread and captures run on another (the timeout is waited for on the first),
    instead of two new threads per ring.

    Every further press on a pending ring asks for a fresh photo (``request_again``), so staff
    never approve a second visitor on the first one's photo. Those are coalesced per ring: at
    most one capture in flight and one queued (the queued one takes the newest press). Photo
    ``n`` of a ring is ``{request_id}.jpg`` for n = 1, ``{request_id}.{n}.jpg`` after; the
    ``snapshot_captured`` event carries ``snapshot`` (n) and ``press`` (the press it shows).
    """

    KEEP_COUNTS = 256
    # Rings whose first photo may wait behind the one being taken. A real door never queues
    # more than one or two (a ring ends at a staff decision); a scripted burst of hundreds of
    # rings a second did: the queue (a Future, a lambda and their locks per ring, ~1 KB) grew
    # for as long as rings outran the camera (+12 MB RSS per 10,000 console cycles, never given
    # back) and was then worked off for seconds. Past this bound a new ring is refused at once
    # (the core journals ``camera_failed``), like a ring that finds a hung capture.
    MAX_WAITING = 16

    def __init__(self, camera: Camera, directory: Path, recorder: Any, timeout: float = 3.0,
                 retention_days: float = 30.0, max_bytes: int = 500 * 1024 * 1024):
        self.camera = camera
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.recorder = recorder
        self.timeout = timeout
        self.retention_seconds = retention_days * 86400
        self.max_bytes = max_bytes
        self._busy = threading.Lock()
        self.ok = True
        self.last_error: str | None = None
        self._threads: set[threading.Thread] = set()      # further-press captures (rare)
        self._requests = Worker("snapshots")              # one ring's photo after another
        self._captures = Worker("camera-capture")         # the camera call, waited for with a timeout
        self._closing = False
        self._last_prune = float("-inf")       # first capture prunes what earlier runs left
        self._counts: OrderedDict[str, int] = OrderedDict()   # photos per recent ring
        self._again_lock = threading.Lock()
        self._again_running: set[str] = set()
        self._again_queued: dict[str, int] = {}
        self._waiting = 0                      # rings queued for their first photo, not started
        self._refusing = False                 # a refusal was logged; logged again after a drain
        # on_done(request_id, snapshot n or None when it failed, press, captured_at or None)
        self.on_done: Callable[[str, int | None, int, datetime | None], None] | None = None

    def start(self) -> None:
        try:
            self.camera.start()
        except Exception as exc:
            self._set_health(False, str(exc))
            log.error("camera did not start: %s", exc)

    def request(self, request_id: str) -> Future[Any]:
        """Ask for a snapshot for this ring; returns at once. The Future ends after journaling.

        Raises PhotoRefused when MAX_WAITING rings already wait for their photo (nothing queued)."""
        done: Future[Any] = Future()
        if self._closing:
            done.set_result(None)
            return done
        with self._again_lock:
            if self._waiting >= self.MAX_WAITING:
                first, self._refusing = not self._refusing, True
                waiting = self._waiting
            else:
                first = None
                self._waiting += 1
        if first is not None:
            if first:
                log.warning("camera busy: %d rings wait for a photo; new rings go without one", waiting)
            raise PhotoRefused(f"camera busy: {waiting} rings already wait for a photo")
        self._note_ring(request_id)
        if not self._requests.submit(lambda: self._run(request_id, done)):
            self._started()
            done.set_result(None)                         # closing
        return done

    def _started(self) -> None:
        """A queued ring leaves the queue (its capture starts, or the service is closing)."""
        with self._again_lock:
            self._waiting -= 1
            if self._waiting == 0:
                self._refusing = False

    @property
    def waiting(self) -> int:
        """Rings queued for their first photo (at most MAX_WAITING)."""
        return self._waiting

    def request_again(self, request_id: str, press: int) -> None:
        """A further press on a pending ring: a fresh photo, coalesced (one running, one queued)."""
        if self._closing:
            return
        with self._again_lock:
            if request_id in self._again_running:
                self._again_queued[request_id] = max(press, self._again_queued.get(request_id, 0))
                return
            self._again_running.add(request_id)
        thread = threading.Thread(target=self._run_again, args=(request_id, press),
                                  name=f"snapshot-again-{request_id[:8]}", daemon=True)
        self._threads.add(thread)
        thread.start()

    def _run_again(self, request_id: str, press: int) -> None:
        try:
            while not self._closing:
                try:
                    self._capture_and_record(request_id, press, wait=True)
                except Exception:
                    log.exception("snapshot for %s (press %d) failed", request_id, press)
                with self._again_lock:
                    if request_id not in self._again_queued:
                        break
                    press = self._again_queued.pop(request_id)
        finally:
            with self._again_lock:
                self._again_running.discard(request_id)
                self._again_queued.pop(request_id, None)
            self._threads.discard(threading.current_thread())

    def path_for(self, request_id: str, n: int | None = None) -> Path | None:
        """Photo n (default: the newest) of a request id, or None (ids are validated: no path
        traversal)."""
        if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
            return None
        if n is None:
            n = self._counts.get(request_id)
            if n == 0:
                return None        # a ring of this run whose first photo is not taken yet
            if n is None:          # an older ring (an earlier run, or forgotten): look on disk
                later = [int(p.suffixes[-2][1:]) for p in self.directory.glob(f"{request_id}.*.jpg")
                         if len(p.suffixes) >= 2 and p.suffixes[-2][1:].isdigit()]
                n = max(later, default=1)
        if not isinstance(n, int) or not 1 <= n <= 10_000:
            return None
        path = self.directory / (f"{request_id}.jpg" if n == 1 else f"{request_id}.{n}.jpg")
        return path if path.is_file() else None

    def _run(self, request_id: str, done: Future[Any]) -> None:
        # Give way first: the ring is already committed and its announcement (MQTT, panel
        # stream) is waiting for the GIL; a frame drawn 2 ms later costs the user nothing.
        self._started()
        time.sleep(ANNOUNCE_FIRST_SECONDS)
        try:
            done.set_result(self._capture_and_record(request_id))
        except Exception as exc:  # never let the worker die silently
            log.exception("snapshot for %s failed", request_id)
            done.set_exception(exc)

    def _capture_and_record(self, request_id: str, press: int = 1, wait: bool = False) -> Any:
        if not self._busy.acquire(timeout=self.timeout) if wait else not self._busy.acquire(blocking=False):
            return self._fail(request_id, "camera busy: a previous capture has not finished", press)
        result: dict[str, Any] = {}
        finished = threading.Event()

        def capture() -> None:
            try:
                started = time.monotonic()
                result["jpeg"] = self.camera.capture_jpeg()
                result["seconds"] = time.monotonic() - started
                result["n"] = self._next_number(request_id)   # numbered in capture order
            except Exception as exc:
                result["error"] = str(exc) or type(exc).__name__
            finally:
                finished.set()
                self._busy.release()

        if not self._captures.submit(capture):
            self._busy.release()
            return None        # stopping
        if not finished.wait(self.timeout):
            return self._fail(request_id, f"camera timed out after {self.timeout:g}s", press)
        if "error" in result:
            return self._fail(request_id, result["error"], press)
        if self._closing:
            return None       # stopping: the controller_stopped event must stay the last one
        jpeg: bytes = result["jpeg"]
        n: int = result["n"]
        path = self.directory / (f"{request_id}.jpg" if n == 1 else f"{request_id}.{n}.jpg")
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(jpeg)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:           # a full disk: the ring goes on without this photo
            tmp.unlink(missing_ok=True)
            return self._fail(request_id, f"snapshot not saved: {exc}", press)
        self._set_health(True, None)
        event = self.recorder.append(
            ev.SNAPSHOT_CAPTURED, request_id, size=len(jpeg), sha256=hashlib.sha256(jpeg).hexdigest(),
            content_type="image/jpeg", capture_ms=round(result["seconds"] * 1000, 1), snapshot=n,
            press=press)
        self._done(request_id, n, press, getattr(event, "ts", None))
        self._maybe_prune()
        return event

    def _note_ring(self, request_id: str) -> None:
        """A new ring of this run: it has no photo yet (count 0). ``path_for`` then answers
        without a directory scan (the panel asks on every state change while a ring waits, and
        a glob over a campus's thousands of snapshots per ask cost more than the capture)."""
        with self._again_lock:
            if request_id not in self._counts:
                self._counts[request_id] = 0
                while len(self._counts) > self.KEEP_COUNTS:
                    self._counts.popitem(last=False)

    def _next_number(self, request_id: str) -> int:
        with self._again_lock:
            n = self._counts.get(request_id, 0) + 1
            self._counts[request_id] = n
            self._counts.move_to_end(request_id)
            while len(self._counts) > self.KEEP_COUNTS:
                self._counts.popitem(last=False)
        return n

    def _done(self, request_id: str, n: int | None, press: int, at: datetime | None) -> None:
        if self.on_done is not None:
            try:
                self.on_done(request_id, n, press, at)
            except Exception:
                log.exception("snapshot completion callback failed")

    def _fail(self, request_id: str, reason: str, press: int = 1) -> Any:
        if self._closing:
            return None
        log.warning("camera failed for ring %s: %s", request_id, reason)
        self._set_health(False, reason)
        event = self.recorder.append(ev.CAMERA_FAILED, request_id, reason=reason[:300], press=press)
        self._done(request_id, None, press, None)
        return event

    def _set_health(self, ok: bool, error: str | None) -> None:
        self.ok, self.last_error = ok, error

    def _maybe_prune(self) -> None:
        """Prune at most every PRUNE_INTERVAL: a full directory scan per ring would cost every
        ring a stat of thousands of files on a busy campus."""
        now = time.monotonic()
        if now - self._last_prune >= PRUNE_INTERVAL_SECONDS:
            self._last_prune = now
            self.prune()

    def prune(self, now: float | None = None) -> int:
        """Delete snapshots older than the retention, then the oldest until under the size cap."""
        now = time.time() if now is None else now
        files = []
        for path in self.directory.glob("*.jpg"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            files.append((st.st_mtime, st.st_size, path))
        files.sort()
        removed = 0
        total = sum(size for _, size, _ in files)
        for mtime, size, path in files:
            if now - mtime > self.retention_seconds or total > self.max_bytes:
                path.unlink(missing_ok=True)
                total -= size
                removed += 1
        return removed

    def close(self, wait: float = 2.0) -> None:
        """Let in-flight snapshots finish (bounded), refuse new ones, release the camera."""
        deadline = time.monotonic() + wait
        self._requests.close(wait)                 # queued rings are still served, bounded
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        self._captures.close()                     # a hung capture keeps its thread, as before
        self._closing = True
        try:
            self.camera.close()
        except Exception:
            log.exception("camera close failed")
