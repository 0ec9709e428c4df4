"""What the shared encoders have in common: each packet fanned out to every viewer's bounded
queue (the software VP8, shared_video.py, and the Opus, shared_audio.py), and one viewer's
track of a shared encoder's packets (those two and the camera's H.264, hw_video.py).

Why: an encode per viewer costs CPU and GIL time the door's threads may wait for, so each
encoder runs once for everyone and each viewer's sender only packetizes the packets (aiortc
passes an ``av.Packet`` through its codec's ``pack``). A slow viewer loses its oldest packets;
it never blocks the others.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack


def fan_out(queues: "set[asyncio.Queue[Any]]", packet: Any) -> None:
    """Hand one packet (``None``: the end) to every viewer's queue. A viewer that fell
    ``maxsize`` packets behind loses its oldest one; it never blocks the others."""
    for q in list(queues):
        if q.full():
            q.get_nowait()
        q.put_nowait(packet)


class EncodedTrack(MediaStreamTrack):
    """One viewer's track of a shared encoder's packets (video: the software VP8 or the camera's
    H.264; audio: Opus); the sender only packetizes them. ``encoder`` has ``subscribe()``
    giving a queue and ``unsubscribe(queue)``."""

    def __init__(self, encoder: Any, kind: str = "video"):
        super().__init__()
        self.kind = kind
        self.encoder = encoder
        self._queue: asyncio.Queue[Any] | None = None

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        if self._queue is None:
            self._queue = self.encoder.subscribe()
        packet = await self._queue.get()
        if packet is None:
            self.stop()
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        if self._queue is not None:
            self.encoder.unsubscribe(self._queue)
            self._queue = None
        super().stop()
