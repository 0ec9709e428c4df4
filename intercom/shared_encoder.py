"""What the shared encoders have in common: one encode task while anyone watches, each packet
fanned out to every viewer's bounded queue (``SharedEncoder``: the software VP8, shared_video.py,
and the Opus, shared_audio.py), and one viewer's track of a shared encoder's packets (those two
and the camera's H.264, hw_video.py, which fans out by keyframes itself).

Why: an encode per viewer costs CPU and GIL time the door's threads may wait for, so each
encoder runs once for everyone and each viewer's sender only packetizes the packets (aiortc
passes an ``av.Packet`` through its codec's ``pack``). A slow viewer loses its oldest packets;
it never blocks the others.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger(__name__)


class SharedEncoder:
    """One encode task while anyone watches, its packets fanned out to every subscriber.

    A subclass makes the packets in ``_encode_while_watched`` (run while ``self._queues`` is not
    empty, restarted by the next subscriber after it ends) and may act on a new viewer in
    ``_viewer_joined`` (video: the next frame is a keyframe). If the encode fails, every
    viewer's track of it ends; the other encoder, the other viewers' media and the door go on."""

    kind = "media"

    def __init__(self, queue_packets: int):
        self._queue_packets = queue_packets
        self._queues: set[asyncio.Queue[Any]] = set()
        self._task: asyncio.Future[Any] | None = None

    def subscribe(self) -> "asyncio.Queue[Any]":
        q: asyncio.Queue[Any] = asyncio.Queue(maxsize=self._queue_packets)
        self._queues.add(q)
        self._viewer_joined()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return q

    def unsubscribe(self, q: "asyncio.Queue[Any]") -> None:
        self._queues.discard(q)

    def _viewer_joined(self) -> None:
        """A viewer subscribed (before the encode task is started if it was not running)."""

    async def _encode_while_watched(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        try:
            await self._encode_while_watched()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("shared %s encoder failed", self.kind)
            fan_out(self._queues, None)     # each viewer's track of it ends; the door never notices

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


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
