"""One audio encode for every viewer: the door's microphone (or the synthetic visitor) encoded
once to Opus every 20 ms, the packets fanned out to each viewer's sender.

Why: aiortc encodes audio per viewer, and per 20 ms frame each sender also resamples it and
computes the RFC 6465 audio level in a pure-Python loop over the 960 samples, holding the GIL.
With four viewers that was 200 encodes and 200 such loops a second in the daemon's
interpreter, more Python time than the shared video encode (py-spy on the bench's daemon),
and every millisecond of it is a millisecond a press, an approval or a relock may wait for
the GIL. Here the frame is made and encoded once; each viewer's sender only packetizes the
packet (aiortc passes an ``av.Packet`` through its codec's ``pack``; no level is computed).
The answer is restricted to Opus so the packets always match.

Pacing is the same as one viewer's track had (a frame as soon as its 20 ms slot starts), so
the audio latency is unchanged. A viewer more than ``QUEUE_FRAMES`` behind loses its oldest
audio; it never blocks the others.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av
import numpy as np

from .shared_encoder import SharedEncoder, fan_out
from .tracks import AUDIO_PTIME, AUDIO_RATE, AUDIO_SAMPLES

QUEUE_FRAMES = 25            # half a second
OPUS_BITRATE = 64_000


class SharedAudioEncoder(SharedEncoder):
    """``source`` is a ``PacedAudioTrack``-like object: ``await source.samples(t0)`` gives the
    20 ms (960 mono s16 samples) that start at wall time ``t0``."""

    kind = "audio"

    def __init__(self, source: Any):
        super().__init__(QUEUE_FRAMES)
        self.source = source
        self._codec: Any = None
        self._resampler: Any = None
        self._origin: float | None = None
        self._n = 0
        self._packets = 0
        self.encoded = 0

    async def _encode_while_watched(self) -> None:
        while self._queues:
            now = time.time()
            if self._origin is None or now - (self._origin + self._n * AUDIO_PTIME) > 0.5:
                self._origin, self._n = now, 0       # first frame, or far behind: restart pacing
            t0 = self._origin + self._n * AUDIO_PTIME
            if t0 > now:
                await asyncio.sleep(t0 - now)
            samples = await self.source.samples(t0)
            packets = self._encode(samples)
            self._n += 1
            for packet in packets:
                fan_out(self._queues, packet)

    def _encode(self, samples: np.ndarray) -> list[Any]:
        """One 20 ms frame -> Opus packets (libopus releases the GIL while it encodes)."""
        if self._codec is None:
            codec = av.CodecContext.create("libopus", "w")
            codec.bit_rate = OPUS_BITRATE
            codec.format = "s16"
            codec.layout = "stereo"
            codec.sample_rate = AUDIO_RATE
            codec.time_base = fractions.Fraction(1, AUDIO_RATE)
            codec.options = {"application": "voip"}
            self._codec = codec
            self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE,
                                                frame_size=AUDIO_SAMPLES)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._n * AUDIO_SAMPLES
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        out = []
        for resampled in self._resampler.resample(frame):
            for packet in self._codec.encode(resampled):
                # RTP time of each 20 ms packet counts up from 0 (libopus starts below 0)
                packet.pts = self._packets * AUDIO_SAMPLES
                packet.time_base = fractions.Fraction(1, AUDIO_RATE)
                self._packets += 1
                out.append(packet)
        self.encoded += 1
        return out
