"""What the office says, at the door: a level meter (simulated station) or the ALSA speaker.

Only audio from a viewer whose Talk is on reaches the door; the rest is read and dropped
(the browser sends nothing until Talk, and this gate holds even if it did). The meter keeps
the peak level of the last ``HOLD_SECONDS`` so the simulated station can show it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

import av
import numpy as np

log = logging.getLogger(__name__)

HOLD_SECONDS = 1.5


def level(frame: Any) -> float:
    """RMS level of an audio frame, 0..1 of full scale (any sample format PyAV decodes to)."""
    samples = frame.to_ndarray().astype(np.float64)
    if samples.size == 0:
        return 0.0
    if frame.format.name.startswith("s16"):
        samples = samples / 32768.0
    elif frame.format.name.startswith("s32"):
        samples = samples / 2147483648.0
    return float(min(1.0, np.sqrt(np.mean(samples * samples))))


class MeterSpeaker:
    """The simulated door speaker: meters what arrives (peak RMS over the hold time)."""

    name = "meter"

    def __init__(self) -> None:
        self._peaks: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self.frames = 0

    def play(self, frame: Any) -> None:
        now = time.monotonic()
        value = level(frame)
        with self._lock:
            self.frames += 1
            self._peaks = [(t, v) for t, v in self._peaks if now - t < HOLD_SECONDS][-100:]
            self._peaks.append((now, value))

    @property
    def level(self) -> float:
        now = time.monotonic()
        with self._lock:
            return max((v for t, v in self._peaks if now - t < HOLD_SECONDS), default=0.0)

    def close(self) -> None:
        pass


class AlsaSpeaker(MeterSpeaker):
    """The door speaker through PyAV's ALSA output (``av.open(device, "w", format="alsa")``),
    written on its own thread from a bounded queue: a stuck sound card drops audio, it never
    blocks the media loop."""

    name = "alsa"

    def __init__(self, device: str, opener: Callable[..., Any] = av.open):
        super().__init__()
        self.device = device
        self.opener = opener
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=50)
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def play(self, frame: Any) -> None:
        super().play(frame)
        if self._thread is None:
            self._thread = threading.Thread(target=self._write, name="intercom-alsa-out", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(frame)
        except queue.Full:
            pass

    def _write(self) -> None:
        try:
            container = self.opener(self.device, mode="w", format="alsa")
            stream = container.add_stream("pcm_s16le", rate=48_000)
            stream.layout = "mono"
        except Exception as exc:
            self.error = f"speaker {self.device!r} did not open: {exc}"
            log.error("%s", self.error)
            return
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48_000)
        try:
            while True:
                frame = self._queue.get()
                if frame is None:
                    break
                for out in resampler.resample(frame):
                    out.pts = None
                    for packet in stream.encode(out):
                        container.mux(packet)
        except Exception as exc:
            self.error = f"speaker {self.device!r} failed: {exc}"
            log.error("%s", self.error)
        finally:
            container.close()

    def close(self) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
