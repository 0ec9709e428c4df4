"""Entrance snapshots: a Camera interface, the Picamera2 adapter, a simulated camera,
and the SnapshotService that captures off the ring path.

Why a service: the press is journaled and announced first; the snapshot follows
as its own event. A slow, failed or hung camera gives ``camera_failed`` and the
ring proceeds without an image: it never delays or blocks the ring.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

from . import events as ev

log = logging.getLogger(__name__)

REQUEST_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


ANNOUNCE_FIRST_SECONDS = 0.002
PRUNE_INTERVAL_SECONDS = 600.0


class CameraError(RuntimeError):
    pass


class Camera(Protocol):
    name: str

    def start(self) -> None: ...
    def capture_jpeg(self) -> bytes: ...
    def close(self) -> None: ...


class Picamera2Camera:
    """Raspberry Pi camera through picamera2 (from apt: python3-picamera2).

    Configured and started once; each snapshot is taken from the running stream
    with ``capture_file(buffer, format="jpeg")``, so it costs about one frame
    instead of a sensor start (which takes a second or more).
    """

    name = "picamera2"

    def __init__(self, width: int, height: int, jpeg_quality: int,
                 live_size: tuple[int, int] | None = None, live_fps: int = 15):
        self.size = (width, height)
        self.quality = jpeg_quality
        self.live_size = live_size          # the intercom's second stream (lores, YUV420), or None
        self.live_fps = live_fps
        self._cam: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._cam is not None:
                return
            try:
                from picamera2 import Picamera2  # lazy: only on a Pi, only when configured
            except ImportError as exc:
                raise CameraError("picamera2 is not installed (apt install python3-picamera2, "
                                  "venv with --system-site-packages)") from exc
            try:
                cam = Picamera2()
                if self.live_size is None:
                    config = cam.create_still_configuration(main={"size": self.size}, buffer_count=2)
                else:   # a running video stream: snapshots from main, live frames from lores
                    config = cam.create_video_configuration(
                        main={"size": self.size}, lores={"size": self.live_size, "format": "YUV420"},
                        controls={"FrameRate": self.live_fps}, buffer_count=4)
                cam.configure(config)
                cam.options["quality"] = self.quality
                cam.start()
            except Exception as exc:
                raise CameraError(f"camera start failed: {exc}") from exc
            self._cam = cam

    def running(self) -> Any:
        """The started Picamera2 object (the live source reads its lores stream)."""
        if self._cam is None:
            self.start()
        return self._cam

    def capture_jpeg(self) -> bytes:
        if self._cam is None:
            self.start()
        buffer = io.BytesIO()
        with self._lock:
            try:
                self._cam.capture_file(buffer, format="jpeg")
            except Exception as exc:
                raise CameraError(f"capture failed: {exc}") from exc
        data = buffer.getvalue()
        if not data.startswith(b"\xff\xd8"):
            raise CameraError("camera returned data that is not a JPEG")
        return data

    def close(self) -> None:
        with self._lock:
            cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()


class SimulatedCamera:
    """A real JPEG: a drawn entrance frame with the capture time, for the simulated campus.

    The scene is static, so it is drawn once (with the label); each capture copies it, stamps
    the time from glyphs rendered once, and encodes a fresh JPEG. Rendering the whole frame and
    its text with FreeType per capture cost about 2.5 ms of CPU, the largest part of a ring on
    the simulated campus; a Pi camera hands over a finished frame instead."""

    name = "simulated"
    STAMP_CHARS = "0123456789-:. UTC"

    def __init__(self, width: int = 640, height: int = 480, jpeg_quality: int = 80, label: str = ""):
        self.size = (width, height)
        self.quality = jpeg_quality
        self.label = label
        self.fail_next: str | None = None      # tests and the /sim page can break the camera
        self.delay_seconds = 0.0
        self._lock = threading.Lock()          # like picamera2: close() waits for a capture
        self._scene: Any = None                # (frame, x where the time goes, glyphs)

    def start(self) -> None:
        pass

    def capture_jpeg(self) -> bytes:
        with self._lock:
            return self._capture()

    def _draw_scene(self) -> Any:
        from PIL import Image, ImageDraw, ImageFont

        w, h = self.size
        img = Image.new("RGB", self.size, (46, 64, 83))
        draw = ImageDraw.Draw(img)
        draw.rectangle([w * 0.3, h * 0.15, w * 0.7, h], fill=(120, 94, 70), outline=(20, 20, 20), width=4)
        draw.ellipse([w * 0.42, h * 0.3, w * 0.58, h * 0.52], fill=(230, 190, 160))
        draw.rectangle([w * 0.38, h * 0.52, w * 0.62, h * 0.95], fill=(40, 110, 170))
        draw.rectangle([0, 0, w, 28], fill=(0, 0, 0))
        font = ImageFont.load_default()
        prefix = f"SIMULATED CAMERA {self.label}  "
        draw.text((8, 8), prefix, fill=(255, 255, 255), font=font)
        self._font = font
        self._minute: tuple[str, Any, float] | None = None
        glyphs = {ch: self._mask(ch) for ch in self.STAMP_CHARS}
        return img, 8 + font.getlength(prefix), glyphs

    def _mask(self, text: str) -> tuple[Any, float]:
        """The text as a mask (255 = ink) and how far it advances."""
        from PIL import Image, ImageDraw

        advance = self._font.getlength(text)
        mask = Image.new("L", (int(advance) + 2, 20), 0)
        ImageDraw.Draw(mask).text((0, 0), text, fill=255, font=self._font)
        return mask, advance

    def _capture(self) -> bytes:
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        if self.fail_next:
            reason, self.fail_next = self.fail_next, None
            raise CameraError(reason)
        if self._scene is None:
            self._scene = self._draw_scene()
        scene, x, glyphs = self._scene
        img = scene.copy()
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
        minute = stamp[:17]                       # "YYYY-MM-DD HH:MM:" changes once a minute
        if self._minute is None or self._minute[0] != minute:
            self._minute = (minute, *self._mask(minute))
        _, mask, advance = self._minute
        img.paste((255, 255, 255), (round(x), 8), mask)
        x += advance
        for ch in stamp[17:]:
            mask, advance = glyphs[ch]
            img.paste((255, 255, 255), (round(x), 8), mask)
            x += advance
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=self.quality)
        return out.getvalue()

    def close(self) -> None:
        with self._lock:      # a hung capture hangs close too, exactly as a hung picamera2 does
            pass


def build_camera(kind: str, width: int, height: int, quality: int, label: str = "",
                 live_size: tuple[int, int] | None = None, live_fps: int = 15) -> Camera:
    if kind == "picamera2":
        return Picamera2Camera(width, height, quality, live_size, live_fps)
    return SimulatedCamera(width, height, quality, label)


class SnapshotService:
    """Captures a snapshot per ring on its own thread, with a timeout, and journals the result.

    One capture at a time: while a hung capture is still stuck, new rings get
    ``camera_failed`` (busy) at once instead of piling up threads.

    Every further press on a pending ring asks for a fresh photo (``request_again``), so staff
    never approve a second visitor on the first one's photo. Those are coalesced per ring: at
    most one capture in flight and one queued (the queued one takes the newest press). Photo
    ``n`` of a ring is ``{request_id}.jpg`` for n = 1, ``{request_id}.{n}.jpg`` after; the
    ``snapshot_captured`` event carries ``snapshot`` (n) and ``press`` (the press it shows).
    """

    KEEP_COUNTS = 256

    def __init__(self, camera: Camera, directory: Path, recorder: Any, timeout: float = 3.0,
                 retention_days: float = 30.0, max_bytes: int = 500 * 1024 * 1024,
                 on_health: Callable[[bool], None] | None = None):
        self.camera = camera
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.recorder = recorder
        self.timeout = timeout
        self.retention_seconds = retention_days * 86400
        self.max_bytes = max_bytes
        self._busy = threading.Lock()
        self._on_health = on_health
        self.ok = True
        self.last_error: str | None = None
        self.last_capture_seconds: float | None = None
        self._threads: set[threading.Thread] = set()
        self._closing = False
        self._last_prune = float("-inf")       # first capture prunes what earlier runs left
        self._counts: OrderedDict[str, int] = OrderedDict()   # photos per recent ring
        self._again_lock = threading.Lock()
        self._again_running: set[str] = set()
        self._again_queued: dict[str, int] = {}
        # on_done(request_id, snapshot n or None when it failed, press, captured_at or None)
        self.on_done: Callable[[str, int | None, int, datetime | None], None] | None = None

    def start(self) -> None:
        try:
            self.camera.start()
        except Exception as exc:
            self._set_health(False, str(exc))
            log.error("camera did not start: %s", exc)

    def request(self, request_id: str) -> Future[Any]:
        """Ask for a snapshot for this ring; returns at once. The Future ends after journaling."""
        done: Future[Any] = Future()
        if self._closing:
            done.set_result(None)
            return done
        self._note_ring(request_id)
        thread = threading.Thread(target=self._run, args=(request_id, done),
                                  name=f"snapshot-{request_id[:8]}", daemon=True)
        self._threads.add(thread)
        thread.start()
        return done

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
        time.sleep(ANNOUNCE_FIRST_SECONDS)
        try:
            done.set_result(self._capture_and_record(request_id))
        except Exception as exc:  # never let the thread die silently
            log.exception("snapshot for %s failed", request_id)
            done.set_exception(exc)
        finally:
            self._threads.discard(threading.current_thread())

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

        threading.Thread(target=capture, name="camera-capture", daemon=True).start()
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
        self.last_capture_seconds = result["seconds"]
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
        changed = ok != self.ok
        self.ok, self.last_error = ok, error
        if changed and self._on_health is not None:
            self._on_health(ok)

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
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        self._closing = True
        try:
            self.camera.close()
        except Exception:
            log.exception("camera close failed")
