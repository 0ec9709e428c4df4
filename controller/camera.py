"""Entrance cameras: the Camera interface, the Picamera2 adapter and a simulated camera
(the SnapshotService that captures off the ring path is in controller/snapshots.py).

Why a service: the press is journaled and announced first; the snapshot follows
as its own event. A slow, failed or hung camera gives ``camera_failed`` and the
ring proceeds without an image: it never delays or blocks the ring.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Protocol

log = logging.getLogger(__name__)



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
