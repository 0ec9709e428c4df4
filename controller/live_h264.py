"""The Pi camera's hardware H.264 encoder for the intercom (Pi 4 and older: bcm2835-codec).

Why: a Pi 4 encoding 640x480 @ 15 fps VP8 in software spends a large share of a core that
the door shares; its VideoCore encoder does the same work for almost no CPU. The Pi 5 has
no video encoder, so there the intercom keeps the software path (one shared VP8 encode).

``Picamera2H264Stream`` runs picamera2's V4L2 ``H264Encoder`` on the camera's ``lores``
stream (the one the live view already uses, YUV420 at the intercom's size) and hands each
encoded access unit (Annex B, SPS/PPS repeated before every IDR, so a viewer can join at
any keyframe) to a sink. The sink runs on picamera2's encoder thread: it must not block
(intercom/hw_video.py queues it for the media loop without waiting).

picamera2 is imported lazily (only on a Pi, only when a live view runs), like camera.py.
No PyAV here: the intercom package turns the bytes into packets.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)

ENCODER_DEVICE = "/dev/video11"
"""The bcm2835-codec H.264 encoder's V4L2 node (Pi Zero 2/3/4; absent on the Pi 5)."""

BITRATE = 600_000                   # the same budget as the software VP8 path
KEYFRAME_SECONDS = 1.0              # the GOP: an IDR at least this often, even if no one asks
PROFILE = "constrained baseline"    # what WebRTC browsers decode everywhere (profile-level-id 42e0xx)

Sink = Callable[[bytes, bool, "int | None"], None]     # (access unit, keyframe, timestamp in us)


class EncoderUnavailable(RuntimeError):
    pass


class Picamera2H264Stream:
    """Start/stop the hardware encoder on the running camera's lores stream. ``start`` and
    ``stop`` block for a few ms (V4L2 set-up): call them off the media loop."""

    def __init__(self, camera: Any, fps: int, bitrate: int = BITRATE,
                 keyframe_seconds: float = KEYFRAME_SECONDS):
        self.camera = camera
        self.width, self.height = camera.live_size
        self.fps = fps
        self.bitrate = bitrate
        self.iperiod = max(1, round(fps * keyframe_seconds))
        self._encoder: Any = None
        self._lock = threading.Lock()

    def start(self, sink: Sink) -> None:
        with self._lock:
            if self._encoder is not None:
                return
            try:   # the V4L2 one by name: picamera2.encoders.H264Encoder is software on a Pi 5
                from picamera2.encoders.h264_encoder import H264Encoder
                from picamera2.outputs import Output
            except ImportError as exc:
                raise EncoderUnavailable(f"picamera2's hardware H.264 encoder is not available: {exc}") from exc

            class SinkOutput(Output):
                """picamera2 calls outputframe on its encoder thread, once per access unit."""

                def outputframe(self, frame: Any, keyframe: bool = True, timestamp: Any = None,
                                packet: Any = None, audio: bool = False) -> None:
                    if not audio:
                        sink(bytes(frame), bool(keyframe), timestamp)

            kw = {"bitrate": self.bitrate, "repeat": True, "iperiod": self.iperiod}
            try:
                encoder = H264Encoder(framerate=self.fps, profile=PROFILE, **kw)
            except TypeError:        # an older picamera2: no profile (or framerate) argument
                log.warning("this picamera2 cannot set the H.264 profile (update python3-picamera2); "
                            "the encoder's default profile is used")
                encoder = H264Encoder(**kw)
            cam = self.camera.running()
            try:
                cam.start_encoder(encoder, SinkOutput(), name="lores")
            except Exception as exc:
                raise EncoderUnavailable(f"the hardware H.264 encoder did not start: {exc}") from exc
            self._encoder = encoder

    def request_keyframe(self) -> bool:
        """Ask for an IDR as soon as possible (picamera2 >= 0.3.31); False when this picamera2
        cannot, and the next periodic IDR (``KEYFRAME_SECONDS``) has to do."""
        encoder = self._encoder
        force = getattr(encoder, "force_key_frame", None)
        if force is None:
            return False
        force()
        return True

    def stop(self) -> None:
        with self._lock:
            encoder, self._encoder = self._encoder, None
        if encoder is not None:
            self.camera.running().stop_encoder(encoder)


def hardware_h264_for(camera: Any, setting: str, fps: int,
                      device: str | None = None) -> Picamera2H264Stream | None:
    """The hardware encoder stream the ``intercom.encoder`` setting asks for, or None for the
    software path. "auto": hardware when the camera is picamera2 (with its live stream) and
    the encoder device exists; "hardware": always with picamera2 (a failure to start then says
    why in the log and the intercom's health); "software": never."""
    if setting == "software" or getattr(camera, "name", "") != "picamera2":
        return None
    if getattr(camera, "live_size", None) is None:
        return None
    if setting == "auto" and not os.path.exists(device or ENCODER_DEVICE):
        return None
    return Picamera2H264Stream(camera, fps)


def encoder_name(stream: Any) -> str:
    return "hardware H.264 (camera encoder)" if stream is not None else "software VP8 (PyAV)"
