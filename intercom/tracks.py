"""Media tracks the door sends: live video from the camera and the visitor's microphone.

``LiveFeed`` grabs camera frames on a worker thread with a timeout (a stalled camera
repeats the last frame; it never stalls the media loop); shared_video.py encodes it once
for every viewer. ``SyntheticVoiceTrack`` is the simulated visitor (a voiced tone in
syllables and a click on every whole second of wall time, for the audio latency bench);
``AlsaMicrophone`` reads the Pi's microphone through PyAV's ALSA input and fans it out.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import math
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90_000
AUDIO_RATE = 48_000
AUDIO_PTIME = 0.020
AUDIO_SAMPLES = int(AUDIO_RATE * AUDIO_PTIME)
GRAB_TIMEOUT_SECONDS = 1.0


def to_i420(frame: Any) -> np.ndarray:
    """A LiveFrame as an I420 array (height * 3 / 2 rows): one conversion shared by all viewers."""
    if frame.kind == "yuv420":
        return np.asarray(frame.data)
    return av.VideoFrame.from_image(frame.data).reformat(format="yuv420p").to_ndarray()


class LiveFeed:
    """The camera's live source behind a timeout and a one-frame cache."""

    def __init__(self, source: Any, fps: int, initializer: Callable[[], None] | None = None):
        self.source = source
        self.interval = 1.0 / fps
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intercom-grab", initializer=initializer)
        self._last: tuple[float, np.ndarray, int] | None = None   # (monotonic, I420, captured_ms)
        self._pending: asyncio.Future[Any] | None = None
        self.stalls = 0

    async def frame(self) -> tuple[np.ndarray, int]:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self.interval / 2:
            return self._last[1], self._last[2]
        if self._pending is None or self._pending.done():
            loop = asyncio.get_running_loop()
            self._pending = asyncio.ensure_future(loop.run_in_executor(self._pool, self._grab))
        try:
            array, captured = await asyncio.wait_for(asyncio.shield(self._pending), GRAB_TIMEOUT_SECONDS)
        except Exception as exc:      # a stalled or failing camera: repeat the last frame
            self.stalls += 1
            if self._last is None:
                raise MediaStreamError(f"no live frame: {exc or type(exc).__name__}") from exc
            return self._last[1], self._last[2]
        self._last = (time.monotonic(), array, captured)
        return array, captured

    def _grab(self) -> tuple[np.ndarray, int]:
        frame = self.source.grab()
        return to_i420(frame), frame.captured_ms

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class PacedAudioTrack(MediaStreamTrack):
    """20 ms mono s16 frames at 48 kHz, paced in real time; subclasses fill the samples."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._n = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            wait = self._start + self._n * AUDIO_PTIME - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.5:
                self._start, self._n = time.time(), 0
        t0 = self._start + self._n * AUDIO_PTIME
        samples = await self.samples(t0)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._n * AUDIO_SAMPLES
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._n += 1
        return frame

    async def samples(self, t0: float) -> np.ndarray:
        raise NotImplementedError


class SyntheticVoiceTrack(PacedAudioTrack):
    """The simulated visitor: a 220 Hz voice in 250 ms syllables, and a 5 ms 2 kHz click at
    every whole second of wall time (the bench detects it in the browser)."""

    CLICK_SECONDS = 0.005

    async def samples(self, t0: float) -> np.ndarray:
        t = t0 + np.arange(AUDIO_SAMPLES) / AUDIO_RATE
        phase = t % 0.35
        voice = np.where(phase < 0.25, 0.25 * np.sin(2 * math.pi * 220 * t) * np.sin(math.pi * phase / 0.25), 0.0)
        frac = t % 1.0
        click = np.where(frac < self.CLICK_SECONDS, 0.9 * np.sin(2 * math.pi * 2000 * t), 0.0)
        mixed = np.where(frac < self.CLICK_SECONDS, click, np.where(frac < 0.1, 0.0, voice))
        return (mixed * 32767).astype(np.int16)


class AlsaMicrophone:
    """The door's microphone through PyAV's ALSA input (``av.open(device, format="alsa")``),
    read on its own thread and fanned out to each viewer's track (bounded queues: a slow
    viewer loses its oldest audio, never blocks the reader or another viewer)."""

    def __init__(self, device: str, opener: Callable[..., Any] = av.open):
        self.device = device
        self.opener = opener
        self._subscribers: list[queue.Queue[np.ndarray]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: str | None = None

    def track(self) -> "AlsaMicrophoneTrack":
        q: queue.Queue[np.ndarray] = queue.Queue(maxsize=25)
        with self._lock:
            self._subscribers.append(q)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._read, name="intercom-alsa-in", daemon=True)
                self._thread.start()
        return AlsaMicrophoneTrack(self, q)

    def unsubscribe(self, q: queue.Queue[np.ndarray]) -> None:
        with self._lock:
            if q in self._subscribers:
                self._subscribers.remove(q)

    def _read(self) -> None:
        try:
            container = self.opener(self.device, format="alsa", mode="r",
                                    options={"sample_rate": str(AUDIO_RATE), "channels": "1"})
        except Exception as exc:
            self.error = f"microphone {self.device!r} did not open: {exc}"
            log.error("%s", self.error)
            return
        resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
        pending = np.zeros(0, dtype=np.int16)
        try:
            for frame in container.decode(audio=0):
                if self._stop.is_set():
                    break
                for out in resampler.resample(frame):
                    pending = np.concatenate([pending, out.to_ndarray().reshape(-1)])
                while len(pending) >= AUDIO_SAMPLES:
                    chunk, pending = pending[:AUDIO_SAMPLES], pending[AUDIO_SAMPLES:]
                    self._fan_out(chunk)
        except Exception as exc:
            self.error = f"microphone {self.device!r} failed: {exc}"
            log.error("%s", self.error)
        finally:
            container.close()

    def _fan_out(self, chunk: np.ndarray) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for q in subscribers:
            try:
                q.put_nowait(chunk)
            except queue.Full:
                try:
                    q.get_nowait()
                    q.put_nowait(chunk)
                except (queue.Empty, queue.Full):
                    pass

    def close(self) -> None:
        self._stop.set()


class AlsaMicrophoneTrack(PacedAudioTrack):
    """One viewer's share of the microphone (silence when nothing arrived in time)."""

    def __init__(self, mic: AlsaMicrophone, q: queue.Queue[np.ndarray]):
        super().__init__()
        self.mic, self.q = mic, q

    async def samples(self, t0: float) -> np.ndarray:
        try:
            return self.q.get_nowait()
        except queue.Empty:
            return np.zeros(AUDIO_SAMPLES, dtype=np.int16)

    def stop(self) -> None:
        self.mic.unsubscribe(self.q)
        super().stop()
