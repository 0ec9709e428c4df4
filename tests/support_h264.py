"""A fake picamera2 with the Pi 4's hardware H.264 encoder, for the intercom's hardware path.

libcamera and the bcm2835 V4L2 encoder cannot run here. The fake keeps picamera2's shape
(``Picamera2.start_encoder(encoder, output, name=...)`` / ``stop_encoder``,
``picamera2.encoders.h264_encoder.H264Encoder(bitrate, repeat, iperiod, framerate, profile)``
with ``force_key_frame()``, ``picamera2.outputs.Output.outputframe``) and produces a real
H.264 bitstream: the simulated entrance (with the time pattern) encoded by PyAV's libx264
as constrained baseline, Annex B, SPS/PPS before every IDR, one access unit per call, on
the encoder's own thread, as picamera2 calls its outputs."""

from __future__ import annotations

import fractions
import sys
import threading
import time
import types
from typing import Any

import av
import numpy as np
import pytest

from controller.live_frames import SimulatedLiveSource
from tests.test_camera import FakePicamera2


class FakeOutput:
    def __init__(self, pts: Any = None) -> None:
        self.recording = False

    def outputframe(self, frame: Any, keyframe: bool = True, timestamp: Any = None,
                    packet: Any = None, audio: bool = False) -> None:
        pass


class FakeH264Encoder:
    instances: list["FakeH264Encoder"] = []

    def __init__(self, bitrate: Any = None, repeat: bool = True, iperiod: Any = None, framerate: Any = None,
                 enable_sps_framerate: bool = False, qp: Any = None, profile: Any = None):
        self.kwargs = {"bitrate": bitrate, "repeat": repeat, "iperiod": iperiod, "framerate": framerate,
                       "profile": profile}
        self.key_requests = 0
        self.keyframes = 0
        self.units = 0
        self.name = ""
        self.size = (0, 0)
        self.output: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.block: threading.Event | None = None     # tests: hold the encoder thread in outputframe
        FakeH264Encoder.instances.append(self)

    def force_key_frame(self) -> None:
        self.key_requests += 1

    def start(self, output: Any, name: str, size: tuple[int, int]) -> None:
        self.output, self.name, self.size = output, name, size
        self._thread = threading.Thread(target=self._run, name="fake-h264-encoder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        w, h = self.size
        fps = int(self.kwargs["framerate"] or 15)
        source = SimulatedLiveSource(w, h, "H264")
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = w, h, "yuv420p"
        codec.bit_rate = int(self.kwargs["bitrate"] or 600_000)
        codec.time_base = fractions.Fraction(1, 1_000_000)
        codec.framerate = fractions.Fraction(fps, 1)
        codec.gop_size = int(self.kwargs["iperiod"] or 60)
        codec.profile = "Baseline"
        codec.options = {"tune": "zerolatency", "preset": "ultrafast", "forced-idr": "1", "level": "31"}
        served = 0
        start = time.monotonic()
        while not self._stop.is_set():
            t_us = int((time.monotonic() - start) * 1_000_000)
            frame = av.VideoFrame.from_image(source.grab().data).reformat(format="yuv420p")
            frame.pts, frame.time_base = t_us, codec.time_base
            if self.key_requests > served:
                served += 1
                frame.pict_type = av.video.frame.PictureType.I
            for packet in codec.encode(frame):
                if packet.is_keyframe:
                    self.keyframes += 1
                self.units += 1
                self.output.outputframe(bytes(packet), packet.is_keyframe, t_us)
            self._stop.wait(1 / fps)


class FakeH264Camera(FakePicamera2):
    """picamera2.Picamera2 with a lores stream and encoders."""

    def create_video_configuration(self, main: Any = None, lores: Any = None, **kw: Any) -> Any:
        self.calls.append(("create_video_configuration", main, lores, kw))
        self.lores = lores
        return {"main": main, "lores": lores, **kw}

    def capture_array(self, name: str = "main") -> Any:
        w, h = self.lores["size"]
        return np.full((h * 3 // 2, w), 77, dtype=np.uint8)

    def start_encoder(self, encoder: Any, output: Any = None, pts: Any = None, quality: Any = None,
                      name: Any = None) -> None:
        self.calls.append(("start_encoder", name))
        if name != "lores":
            raise RuntimeError(f"Encode stream {name} was not defined")
        encoder.start(output, name, self.lores["size"])

    def stop_encoder(self, encoders: Any = None) -> None:
        self.calls.append(("stop_encoder",))
        encoders.stop()


@pytest.fixture
def fake_h264_picamera2(mocker: Any) -> Any:
    FakePicamera2.instances.clear()
    FakeH264Encoder.instances.clear()
    root = types.ModuleType("picamera2")
    root.Picamera2 = FakeH264Camera  # type: ignore[attr-defined]
    encoders = types.ModuleType("picamera2.encoders")
    h264 = types.ModuleType("picamera2.encoders.h264_encoder")
    h264.H264Encoder = FakeH264Encoder  # type: ignore[attr-defined]
    outputs = types.ModuleType("picamera2.outputs")
    outputs.Output = FakeOutput  # type: ignore[attr-defined]
    mocker.patch.dict(sys.modules, {"picamera2": root, "picamera2.encoders": encoders,
                                    "picamera2.encoders.h264_encoder": h264, "picamera2.outputs": outputs})
    return root


def nal_types(unit: bytes) -> list[int]:
    """The NAL unit types in an Annex B access unit (7 SPS, 8 PPS, 5 IDR slice, 1 slice)."""
    out, i = [], 0
    while (i := unit.find(b"\x00\x00\x01", i)) != -1:
        i += 3
        if i < len(unit):
            out.append(unit[i] & 0x1F)
    return out
