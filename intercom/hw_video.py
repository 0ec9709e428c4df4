"""Live video from the camera's hardware H.264 encoder, shared by every viewer.

The camera (controller/live_h264.py) encodes; this module only moves its access units to
each viewer's track as ``av.Packet``s, which aiortc's sender packetizes without
re-encoding (``H264Encoder.pack``: Annex B split, STAP-A/FU-A). The answer is restricted
to H.264 packetization-mode 1 so the packets always match (engine.py).

Why a ring between the threads: the encoder's output callback runs on picamera2's thread,
and media must never delay the camera or the door. ``PacketRing.push`` takes a lock held
only for a deque operation and wakes the loop once (``call_soon_threadsafe``) per batch;
it never waits. When the loop falls behind, the ring (and each viewer's queue) drops its
oldest access units up to the next keyframe, so what stays decodes, and asks the encoder
for an IDR; memory stays bounded whatever the loop does.

Keyframes: a new viewer or a viewer's picture-loss request (PLI/FIR, hooked on its sender)
asks the encoder for an IDR (picamera2 >= 0.3.31), at most every ``KEYFRAME_MIN_SECONDS``;
the encoder also makes one every second on its own (the GOP), for older picamera2.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av

from .tracks import VIDEO_CLOCK

log = logging.getLogger(__name__)

RING_UNITS = 30            # two seconds at 15 fps between the camera thread and the loop
QUEUE_UNITS = 15           # per viewer, as the software path
KEYFRAME_MIN_SECONDS = 0.5


class PacketRing:
    """Bounded, thread-safe hand-over of (data, keyframe, pts) from one producer thread.

    Full: the oldest units up to the next keyframe go; with no later keyframe held, all go
    and non-keyframes are refused until one comes (a P-frame without its reference only
    shows garbage). ``push`` returns True when the producer should be asked for an IDR."""

    def __init__(self, capacity: int = RING_UNITS):
        self.capacity = capacity
        self._items: deque[tuple[bytes, bool, int]] = deque()
        self._lock = threading.Lock()
        self._need_key = True          # a stream starts at a keyframe
        self.dropped = 0

    def push(self, data: bytes, key: bool, pts: int) -> bool:
        with self._lock:
            if self._need_key and not key:
                self.dropped += 1
                return True
            self._need_key = False
            if len(self._items) >= self.capacity:
                nxt = next((i for i, item in enumerate(self._items) if item[1] and i > 0), None)
                if nxt is None:
                    self.dropped += len(self._items)
                    self._items.clear()
                    if not key:
                        self._need_key = True
                        self.dropped += 1
                        return True
                else:
                    for _ in range(nxt):
                        self._items.popleft()
                    self.dropped += nxt
            self._items.append((data, key, pts))
            return False

    def drain(self) -> list[tuple[bytes, bool, int]]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items

    def __len__(self) -> int:
        return len(self._items)


class HardwareH264Video:
    """The hardware encoder, running while anyone watches; its packets fanned out to viewers.
    Same interface as shared_video.SharedVideoEncoder (subscribe/unsubscribe/close)."""

    codec = "H264"

    def __init__(self, stream: Any, loop: asyncio.AbstractEventLoop):
        self.stream = stream
        self.loop = loop
        self.ring = PacketRing()
        self._subs: dict[asyncio.Queue[Any], bool] = {}     # queue -> waiting for a keyframe
        self._ops = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intercom-h264-ctl")
        self._started = False          # encoder running (set on the ops thread)
        self._wake = False             # a delivery is scheduled on the loop
        self._key_wake = False         # a keyframe request is scheduled on the loop
        self._origin = time.monotonic()
        self._offset: int | None = None
        self._pts = -1
        self._last_key_request = 0.0
        self.encoded = 0
        self.keyframe_requests = 0
        self.error: str | None = None

    # ------------------------------------------------------------ loop side
    def subscribe(self) -> "asyncio.Queue[Any]":
        q: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUE_UNITS)
        first = not self._subs
        self._subs[q] = True                       # it starts at the next keyframe
        if first:
            self._ops.submit(self._apply)
        else:
            self.request_keyframe(force=True)
        return q

    def unsubscribe(self, q: "asyncio.Queue[Any]") -> None:
        self._subs.pop(q, None)
        if not self._subs:
            self._ops.submit(self._apply)

    def request_keyframe(self, force: bool = False) -> None:
        """A viewer needs a full picture (joined, or its PLI/FIR). Rate-limited; never blocks."""
        now = time.monotonic()
        if not force and now - self._last_key_request < KEYFRAME_MIN_SECONDS:
            return
        self._last_key_request = now
        self.keyframe_requests += 1
        try:
            self.stream.request_keyframe()
        except Exception:
            log.exception("the camera encoder refused a keyframe request")

    def _ask_keyframe(self) -> None:
        self._key_wake = False
        self.request_keyframe()

    def _deliver(self) -> None:
        self._wake = False
        for data, key, pts in self.ring.drain():
            packet = av.Packet(data)
            packet.pts = pts
            packet.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            self.encoded += 1
            for q, waiting in list(self._subs.items()):
                if waiting and not key:
                    continue
                if q.full():                       # this viewer is behind: restart it at a keyframe
                    while not q.empty():
                        q.get_nowait()
                    if not key:
                        self._subs[q] = True
                        self.request_keyframe()
                        continue
                self._subs[q] = False
                q.put_nowait(packet)

    def _fail(self) -> None:
        for q in list(self._subs):
            while not q.empty():
                q.get_nowait()
            q.put_nowait(None)            # each viewer's track ends; the door never notices
        self._subs.clear()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the camera encoder before the camera itself closes (bounded: a stuck V4L2
        stop is logged and left behind, the shutdown goes on)."""
        self._subs.clear()
        try:
            self._ops.submit(self._apply).result(timeout)
        except Exception:
            log.warning("the camera's H.264 encoder did not stop in time")
        self._ops.shutdown(wait=False)

    # ------------------------------------------------------------ camera side
    def _apply(self) -> None:
        """On the ops thread: start or stop the encoder to match whether anyone watches."""
        want = bool(self._subs)
        try:
            if want and not self._started:
                self.ring = PacketRing()
                self._offset = None
                self.stream.start(self._on_unit)
                self._started = True
                self.error = None
            elif not want and self._started:
                self._started = False
                self.stream.stop()
        except Exception as exc:
            self.error = f"hardware H.264 encoder: {exc}"
            log.error("%s", self.error)
            self._call(self._fail)

    def _on_unit(self, data: bytes, key: bool, timestamp_us: int | None) -> None:
        """picamera2's encoder thread: queue the access unit and wake the loop; never waits."""
        now = int((time.monotonic() - self._origin) * VIDEO_CLOCK)
        if timestamp_us is None:
            pts = now
        else:                            # the sensor's timing, placed on our clock at the first unit
            ts = timestamp_us * VIDEO_CLOCK // 1_000_000
            if self._offset is None:
                self._offset = now - ts
            pts = ts + self._offset
        pts = self._pts = max(self._pts + 1, pts)       # rises strictly, across encoder restarts
        if self.ring.push(data, key, pts) and not self._key_wake:
            self._key_wake = True
            self._call(self._ask_keyframe)
        if not self._wake:
            self._wake = True
            self._call(self._deliver)

    def _call(self, fn: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn)
        except RuntimeError:             # the loop is closed: the intercom is stopping
            self._wake = self._key_wake = False
