"""Live frames from the entrance camera for the intercom (a second, smaller stream).

The snapshot adapter (camera.py) takes one JPEG per ring; the intercom needs a steady
stream of small frames. Each camera gets a live source here:

- ``SimulatedLiveSource`` draws the simulated entrance with the capture time as a row of
  black/white blocks (``TimePattern``), so glass-to-glass latency can be read from the
  decoded frame in the browser (bench/intercom.py, tests).
- ``Picamera2LiveSource`` reads the camera's ``lores`` stream (YUV420), which the
  Picamera2 adapter configures next to the snapshot stream when live video is on.

Pure Pillow and the camera adapter: no aiortc, no PyAV (the intercom package converts).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class LiveFrame:
    """One frame: ``kind`` "rgb" (a PIL image) or "yuv420" (a numpy array, I420 layout)."""
    kind: str
    data: Any
    width: int
    height: int
    captured_ms: int            # wall-clock capture time, ms since the epoch


class LiveSource(Protocol):
    width: int
    height: int

    def grab(self) -> LiveFrame: ...


class TimePattern:
    """The capture time drawn as blocks: a white then a black sync block, then BITS data
    blocks (white = 1), most significant first, carrying ``ms since the epoch mod 2**BITS``.

    Blocks are large (width // 40 px, at least 8) and on the bottom row of the frame, so
    they survive VP8/H.264 at low bitrates; a reader samples each block's centre."""

    BITS = 32
    BLOCKS = BITS + 2

    def __init__(self, width: int, height: int):
        self.block = max(8, width // 40)
        if self.block * self.BLOCKS > width or self.block * 2 > height:
            raise ValueError(f"{width}x{height} is too small for the time pattern")
        self.y0 = height - self.block * 2

    def draw(self, img: Any, ms: int) -> None:
        from PIL import ImageDraw
        b, y0 = self.block, self.y0
        draw = ImageDraw.Draw(img)
        value = ms % (1 << self.BITS)
        bits = [1, 0] + [(value >> (self.BITS - 1 - i)) & 1 for i in range(self.BITS)]
        for i, bit in enumerate(bits):
            shade = (255, 255, 255) if bit else (0, 0, 0)
            draw.rectangle([i * b, y0, (i + 1) * b - 1, y0 + b - 1], fill=shade)

    def read(self, luma: Any) -> int | None:
        """The value from a frame's luma (a 2-D array-like indexed [y][x]); None when the sync
        blocks are missing (not a pattern frame)."""
        b, y = self.block, self.y0 + self.block // 2
        bits = [1 if luma[y][i * b + b // 2] >= 128 else 0 for i in range(self.BLOCKS)]
        if bits[:2] != [1, 0]:
            return None
        value = 0
        for bit in bits[2:]:
            value = (value << 1) | bit
        return value


def latency_ms(captured_mod: int, now_ms: int, bits: int = TimePattern.BITS) -> int:
    """How long ago a pattern time was drawn, given the reader's wall clock."""
    return (now_ms - captured_mod) % (1 << bits)


class SimulatedLiveSource:
    """The simulated entrance at live size with a moving visitor (so the encoder has motion
    to code) and the time pattern. The static scene is drawn once."""

    def __init__(self, width: int = 640, height: int = 480, label: str = ""):
        self.width, self.height = width, height
        self.label = label
        self.pattern = TimePattern(width, height)
        self._scene: Any = None
        self._lock = threading.Lock()

    def _draw_scene(self) -> Any:
        from PIL import Image, ImageDraw, ImageFont
        w, h = self.width, self.height
        img = Image.new("RGB", (w, h), (46, 64, 83))
        draw = ImageDraw.Draw(img)
        draw.rectangle([w * 0.3, h * 0.12, w * 0.7, self.pattern.y0 - 4], fill=(120, 94, 70),
                       outline=(20, 20, 20), width=3)
        draw.rectangle([0, 0, w, 20], fill=(0, 0, 0))
        draw.text((6, 5), f"LIVE (SIMULATED) {self.label}", fill=(255, 255, 255),
                  font=ImageFont.load_default())
        return img

    def grab(self) -> LiveFrame:
        from PIL import ImageDraw
        with self._lock:
            if self._scene is None:
                self._scene = self._draw_scene()
            img = self._scene.copy()
        w, h = self.width, self.height
        ms = int(time.time() * 1000)
        sway = (ms // 40) % 40 - 20                  # the visitor sways: frames differ
        draw = ImageDraw.Draw(img)
        cx = w * 0.5 + sway
        draw.ellipse([cx - w * 0.07, h * 0.28, cx + w * 0.07, h * 0.48], fill=(230, 190, 160))
        draw.rectangle([cx - w * 0.11, h * 0.48, cx + w * 0.11, self.pattern.y0 - 6], fill=(40, 110, 170))
        self.pattern.draw(img, ms)
        return LiveFrame("rgb", img, w, h, ms)


class Picamera2LiveSource:
    """The Pi camera's second (``lores``, YUV420) stream, from the running snapshot camera.

    ``capture_array("lores")`` waits for the next frame; the intercom calls ``grab`` on its
    own worker thread with a timeout, so a stalled sensor repeats the last frame instead of
    stalling anything else."""

    def __init__(self, camera: Any):
        self.camera = camera
        self.width, self.height = camera.live_size

    def grab(self) -> LiveFrame:
        cam = self.camera.running()
        array = cam.capture_array("lores")
        return LiveFrame("yuv420", array, self.width, self.height, int(time.time() * 1000))


def live_source_for(camera: Any, width: int, height: int) -> LiveSource:
    """The live source that fits the snapshot camera (picamera2 or the simulated one)."""
    if getattr(camera, "name", "") == "picamera2":
        return Picamera2LiveSource(camera)
    return SimulatedLiveSource(width, height, getattr(camera, "label", ""))
