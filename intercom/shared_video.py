"""One video encode for every viewer: the live feed encoded once (VP8), the packets fanned out.

Why: aiortc encodes per viewer, so four viewers cost four encodes of the same frames (about
15 % of a Xeon core each at 640x480 @ 15 fps; more on a Pi). Here one encoder runs while
anyone watches and each viewer's track hands the same packets to its sender, which only
packetizes them (aiortc's sender passes ``av.Packet`` through its codec's ``pack``). The
answer is restricted to VP8 so the packets always match.

What a shared encoder cannot do per viewer: a keyframe on one viewer's picture-loss request,
and bitrate adaptation per viewer. So it makes a keyframe whenever a viewer joins and every
``KEYFRAME_SECONDS`` (a lost packet on the LAN costs at most that long), at a fixed bitrate.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av

from .shared_encoder import SharedEncoder, fan_out
from .tracks import VIDEO_CLOCK, LiveFeed

BITRATE = 600_000
KEYFRAME_SECONDS = 2.0
QUEUE_FRAMES = 15          # a viewer more than a second behind loses frames, never blocks the others


class SharedVideoEncoder(SharedEncoder):
    kind = "video"

    def __init__(self, feed: LiveFeed, fps: int, executor: Any = None):
        super().__init__(QUEUE_FRAMES)
        self.feed = feed
        self.fps = fps
        self.executor = executor
        self._codec: Any = None
        self._keyframe = True
        self._origin = time.monotonic()
        self._pts = -1
        self.encoded = 0

    def _viewer_joined(self) -> None:
        self._keyframe = True                        # the new viewer starts from a full picture

    async def _encode_while_watched(self) -> None:
        loop = asyncio.get_running_loop()
        start, n, last_key = time.monotonic(), 0, 0.0
        while self._queues:
            wait = start + n / self.fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -1.0:                    # far behind (a stall): restart the pacing
                start, n = time.monotonic(), 0
            array, _ = await self.feed.frame()
            frame = av.VideoFrame.from_ndarray(array, format="yuv420p")
            # pts rises strictly across pauses and restarts: the codec lives on between viewers
            self._pts = max(self._pts + 1, int((time.monotonic() - self._origin) * VIDEO_CLOCK))
            frame.pts = self._pts
            frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            now = time.monotonic()
            key = self._keyframe or now - last_key >= KEYFRAME_SECONDS
            if key:
                self._keyframe, last_key = False, now
            packet = await loop.run_in_executor(self.executor, self._encode, frame, key)
            n += 1
            if packet is None:
                continue
            fan_out(self._queues, packet)

    def _encode(self, frame: Any, key: bool) -> Any:
        if self._codec is None or (self._codec.width, self._codec.height) != (frame.width, frame.height):
            codec = av.CodecContext.create("libvpx", "w")
            codec.width, codec.height = frame.width, frame.height
            codec.bit_rate = BITRATE
            codec.pix_fmt = "yuv420p"
            codec.gop_size = 3000           # keyframes are asked for explicitly
            codec.qmin, codec.qmax = 2, 56
            codec.options = {"bufsize": str(BITRATE), "cpu-used": "-6", "deadline": "realtime",
                             "lag-in-frames": "0", "minrate": str(BITRATE), "maxrate": str(BITRATE),
                             "noise-sensitivity": "4", "overshoot-pct": "15", "partitions": "0",
                             "static-thresh": "1", "undershoot-pct": "100"}
            codec.thread_count = 1
            self._codec = codec
        if key:
            frame.pict_type = av.video.frame.PictureType.I
        data = b"".join(bytes(p) for p in self._codec.encode(frame))
        if not data:
            return None
        packet = av.Packet(data)
        packet.pts = frame.pts
        packet.time_base = frame.time_base
        self.encoded += 1
        return packet
