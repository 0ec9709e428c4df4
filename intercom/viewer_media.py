"""What one viewer is sent and sends back: the shared encoders' tracks on its peer connection,
its answer restricted to exactly the codecs those packets are in, and its office microphone to
the door's speaker while its Talk is on.

Why its own module: the engine (engine.py) keeps viewers, limits and the media loop; this is
the one place that decides which encoder a viewer gets, what its answer may name and when the
office is heard at the door. Every track here carries packets already encoded once for all
viewers (``EncodedTrack``): the camera's H.264 when there is one and the browser takes it, else
the software VP8, and Opus for the door's voice. aiortc's sender only packetizes them, so an
answer that named another codec would label the packets wrongly (video_codecs.py: the filter).

Everything here runs on the media loop. ``add_shared_media`` is called after the offer is set
(aiortc fixes the negotiated codecs then) and before the answer is made; an offer the door
cannot answer is refused with a 400.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from .errors import IntercomError
from .shared_encoder import EncodedTrack
from .video_codecs import h264_preferences, hook_picture_loss, offers_h264, restrict, vp8_preferences

log = logging.getLogger(__name__)


def add_shared_media(pc: Any, offer_sdp: str, video: Any, hw_video: Any,
                     audio: Callable[[], Any] | None) -> str:
    """Add this viewer's tracks to ``pc`` (its remote offer set) and restrict each transceiver
    to the codec its packets are in; returns the video codec sent ("H264" or "VP8").

    ``video``: the software VP8 encoder; ``hw_video``: the camera's H.264, or None; ``audio``:
    gives the shared Opus encoder (made on first use), or None when the door sends no sound."""
    kinds = {t.kind for t in pc.getTransceivers()}
    if "video" not in kinds:
        raise IntercomError(400, "the offer has no video section")
    hw = hw_video if hw_video is not None and offers_h264(offer_sdp) else None
    sender = pc.addTrack(EncodedTrack(hw or video))        # the same subscribe/unsubscribe interface
    if hw is not None:
        hook_picture_loss(sender, hw.request_keyframe)
    _restrict_kind(pc, "video", h264_preferences() if hw is not None else vp8_preferences(),
                   "VP8, or H.264 constrained baseline")
    if "audio" in kinds and audio is not None:
        pc.addTrack(EncodedTrack(audio(), kind="audio"))
        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"]
        _restrict_kind(pc, "audio", opus, "Opus")
    return "H264" if hw is not None else "VP8"


def _restrict_kind(pc: Any, kind: str, preferences: list[Any], sent: str) -> None:
    """Answer every ``kind`` transceiver with exactly these codecs, or refuse the offer."""
    for transceiver in pc.getTransceivers():
        if transceiver.kind == kind:
            try:
                restrict(transceiver, preferences)
            except ValueError as exc:
                raise IntercomError(400, f"{exc} ({sent})") from exc


async def play_office_audio(viewer: Any, track: Any, speaker: Callable[[], Any]) -> None:
    """Read the office microphone; only while this viewer's Talk is on does it reach the door.

    ``speaker`` is asked for the door speaker at each frame, not once: the engine's speaker may
    be swapped while a viewer is connected (the intercom bench puts its onset detector there)."""
    try:
        while True:
            frame = await track.recv()
            if viewer.talking_since is not None:
                speaker().play(frame)
    except (MediaStreamError, asyncio.CancelledError):
        pass
    except Exception:
        log.exception("office audio of %s failed", viewer.id)
