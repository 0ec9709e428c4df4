"""Which video codec a viewer gets, and the keyframe hook for pre-encoded video.

The media engine sends video that is already encoded (shared by every viewer): VP8 from
the software encoder, or H.264 from the camera's hardware encoder (Pi 4). The answer must
name exactly that codec, so the transceiver's preferences are restricted to it:
H.264 constrained baseline (profile-level-id 42e01f, what the Pi encoder is set to make)
with packetization-mode 1 (STAP-A/FU-A, how aiortc packetizes), or VP8.

Why a hook for picture loss: aiortc's sender answers a PLI/FIR by asking *its own*
encoder for a keyframe; with packets from elsewhere it has none, so the request would be
lost. ``hook_picture_loss`` passes it on to the camera encoder too.
"""

from __future__ import annotations

from typing import Any, Callable

from aiortc import RTCRtpCodecParameters, RTCRtpSender
from aiortc.rtcpeerconnection import filter_preferred_codecs, is_codec_compatible
from aiortc.sdp import SessionDescription

H264_PARAMETERS: dict[str, int | str | None] = {
    "level-asymmetry-allowed": "1", "packetization-mode": "1", "profile-level-id": "42e01f"}
_H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=0, parameters=H264_PARAMETERS)


def _preferences(match: Callable[[Any], bool]) -> list[Any]:
    codecs = RTCRtpSender.getCapabilities("video").codecs
    return [c for c in codecs if match(c) or c.mimeType == "video/rtx"]


def vp8_preferences() -> list[Any]:
    return _preferences(lambda c: c.mimeType == "video/VP8")


def h264_preferences() -> list[Any]:
    return _preferences(lambda c: c.mimeType == "video/H264" and c.parameters == H264_PARAMETERS)


def offers_h264(sdp: str) -> bool:
    """Whether the offer's video accepts H.264 constrained baseline, packetization-mode 1
    (a browser built without H.264 gets the software VP8 instead)."""
    try:
        desc = SessionDescription.parse(sdp)
    except Exception:
        return False
    return any(is_codec_compatible(_H264, codec)
               for media in desc.media if media.kind == "video" for codec in media.rtp.codecs)


def hook_picture_loss(sender: Any, request_keyframe: Callable[[], None]) -> None:
    """Also send this sender's PLI/FIR keyframe requests to the camera encoder (aiortc calls
    ``_send_keyframe`` for both; checked in tests/test_intercom_h264.py)."""
    own = sender._send_keyframe

    def send_keyframe() -> None:
        own()
        request_keyframe()
    sender._send_keyframe = send_keyframe


def restrict(transceiver: Any, preferences: list[Any]) -> None:
    """Answer with exactly these codecs. aiortc applies codec preferences while it sets the
    remote offer (``transceiver._codecs``), and this transceiver only exists from then on, so
    the negotiated list is filtered here too; without it the answer keeps the browser's
    order, and a browser that lists H.264 first would be sent VP8 packets labelled H.264."""
    transceiver.setCodecPreferences(preferences)
    transceiver._codecs = filter_preferred_codecs(transceiver._codecs, preferences)
    if not transceiver._codecs:
        raise ValueError("the offer has none of the codecs the door sends")
