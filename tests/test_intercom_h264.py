"""The Pi 4 hardware H.264 path of the intercom against a fake picamera2 (tests/support_h264.py:
a real libx264 bitstream in picamera2's shape): the encoder choice and its config errors, the
adapter's picamera2 calls, the bounded hand-over from the encoder thread, and a WebRTC peer
(aiortc, the office side) decoding the camera's H.264 with keyframes on picture loss."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest

from controller import config as cfg
from controller.camera import build_camera
from controller.live_frames import TimePattern, latency_ms
from controller.live_h264 import EncoderUnavailable, Picamera2H264Stream, hardware_h264_for
from intercom.hw_video import HardwareH264Video, PacketRing
from tests.support_h264 import FakeH264Encoder, fake_h264_picamera2, nal_types  # noqa: F401
from tests.support_intercom import accept, add_intercom, office_offer, peer_loop, remove_intercom  # noqa: F401
from tests.support_web import build_controller, stop_controller, wait_for
from tests.test_camera import FakePicamera2

pytestmark = pytest.mark.media


def pi_camera(fps: int = 15):
    return build_camera("picamera2", 1280, 720, 85, "Main", live_size=(320, 240), live_fps=fps)


# ---------------------------------------------------------------- choice and config

def test_encoder_setting_defaults_to_auto_and_bad_values_name_the_key():
    assert cfg.Settings().intercom.encoder == "auto"
    with pytest.raises(cfg.ConfigError) as err:
        cfg.from_dict({"intercom": {"encoder": "gpu"}})
    assert "intercom.encoder" in str(err.value) and "'gpu'" in str(err.value)
    with pytest.raises(cfg.ConfigError) as err:           # the simulated camera has no encoder
        cfg.from_dict({"intercom": {"encoder": "hardware"}, "camera": {"kind": "simulated"}})
    assert "intercom.encoder" in str(err.value) and "picamera2" in str(err.value)
    ok = cfg.from_dict({"intercom": {"encoder": "hardware"}, "camera": {"kind": "picamera2"}})
    assert ok.intercom.encoder == "hardware"


def test_auto_uses_the_camera_encoder_only_where_the_pi_has_one(tmp_path, fake_h264_picamera2):  # noqa: F811
    device = tmp_path / "video11"
    cam = pi_camera()
    assert hardware_h264_for(cam, "auto", 15, device=str(device)) is None        # a Pi 5: no encoder node
    device.touch()                                                                # a Pi 4: bcm2835-codec
    assert isinstance(hardware_h264_for(cam, "auto", 15, device=str(device)), Picamera2H264Stream)
    assert hardware_h264_for(cam, "software", 15, device=str(device)) is None
    assert isinstance(hardware_h264_for(cam, "hardware", 15, device=str(tmp_path / "none")), Picamera2H264Stream)
    simulated = build_camera("simulated", 640, 480, 80)
    assert hardware_h264_for(simulated, "auto", 15, device=str(device)) is None
    no_live = build_camera("picamera2", 1280, 720, 85)                            # intercom off: no lores
    assert hardware_h264_for(no_live, "auto", 15, device=str(device)) is None


# ---------------------------------------------------------------- the adapter's picamera2 calls

def test_hardware_stream_runs_picamera2s_v4l2_encoder_on_the_lores_stream(fake_h264_picamera2):  # noqa: F811
    stream = Picamera2H264Stream(pi_camera(fps=15), 15)
    units: list[tuple[bytes, bool, int]] = []
    stream.start(lambda data, key, ts: units.append((data, key, ts)))
    stream.start(lambda *a: None)                                  # idempotent: one encoder
    [encoder] = FakeH264Encoder.instances
    assert encoder.kwargs == {"bitrate": 600_000, "repeat": True, "iperiod": 15, "framerate": 15,
                              "profile": "constrained baseline"}
    assert encoder.name == "lores" and encoder.size == (320, 240)
    wait_for(lambda: len(units) >= 3, what="access units")
    first, key, ts = units[0]
    assert key and nal_types(first)[:2] == [7, 8] and 5 in nal_types(first)     # SPS, PPS, IDR
    assert not units[1][1] and isinstance(ts, int)
    keys = encoder.keyframes
    assert stream.request_keyframe()
    wait_for(lambda: encoder.keyframes > keys, what="a keyframe on request")
    stream.stop()
    cam = fake_h264_picamera2.Picamera2.instances[0]
    assert ("start_encoder", "lores") in cam.calls and ("stop_encoder",) in cam.calls
    assert ("create_video_configuration", {"size": (1280, 720)}, {"size": (320, 240), "format": "YUV420"},
            {"controls": {"FrameRate": 15}, "buffer_count": 4}) in cam.calls


def test_hardware_stream_imports_picamera2_lazily_and_says_what_is_missing(mocker):
    mocker.patch.dict(sys.modules, {"picamera2": None, "picamera2.encoders.h264_encoder": None})
    stream = Picamera2H264Stream(pi_camera(), 15)                 # building it imports nothing
    with pytest.raises(EncoderUnavailable, match="hardware H.264 encoder is not available"):
        stream.start(lambda *a: None)


# ---------------------------------------------------------------- the hand-over

def test_packet_ring_drops_the_oldest_up_to_the_next_keyframe():
    ring = PacketRing(capacity=4)
    assert ring.push(b"p", False, 0) is True and len(ring) == 0      # no P-frame before the first IDR
    for i, key in enumerate([True, False, True, False]):
        assert ring.push(b"%d" % i, key, i) is False
    ring.push(b"4", False, 4)                                        # full: unit 0 (and its P) go
    assert [(d, k) for d, k, _ in ring.drain()] == [(b"2", True), (b"3", False), (b"4", False)]
    for i in range(4):
        ring.push(b"x", i == 0, 10 + i)
    assert ring.push(b"y", False, 20) is True                        # full, no later IDR: wait for one
    assert len(ring) == 0 and ring.push(b"z", False, 21) is True
    assert ring.push(b"k", True, 22) is False and [d for d, _, _ in ring.drain()] == [b"k"]
    assert ring.dropped == 1 + 2 + 4 + 1 + 1


def test_encoder_thread_never_waits_for_a_stalled_media_loop():
    """The loop is not running (stuck): the camera thread's callback still returns at once, the
    ring stays bounded and the loop is woken once, not once per unit."""
    class Stream:
        requests = 0

        def request_keyframe(self) -> bool:
            Stream.requests += 1
            return True

    loop = asyncio.new_event_loop()
    try:
        video = HardwareH264Video(Stream(), loop)
        done = threading.Event()

        def camera_thread() -> None:
            for i in range(500):
                video._on_unit(b"\x00\x00\x01\x65" if i % 50 == 0 else b"\x00\x00\x01\x41", i % 50 == 0, i * 66_000)
            done.set()
        t = threading.Thread(target=camera_thread)
        t.start()
        t.join(10)
        assert done.is_set()
        assert len(video.ring) <= video.ring.capacity and video.ring.dropped > 0
        assert len(loop._ready) <= 3            # type: ignore[attr-defined]  # one wake-up (+ keyframe asks)
    finally:
        loop.close()


def test_pts_rise_strictly_across_encoder_restarts():
    loop = asyncio.new_event_loop()
    try:
        video = HardwareH264Video(None, loop)
        for ts in (0, 66_000, 132_000):
            video._on_unit(b"\x00\x00\x01\x65", True, ts)
        video._offset = None                    # the encoder restarts: its timestamps start over
        video._on_unit(b"\x00\x00\x01\x65", True, 0)
        pts = [p for _, _, p in video.ring.drain()]
        assert pts == sorted(pts) and len(set(pts)) == 4
        assert pts[1] - pts[0] == 66_000 * 90_000 // 1_000_000          # the sensor's spacing, at 90 kHz
    finally:
        loop.close()


# ---------------------------------------------------------------- end to end over WebRTC

@pytest.fixture
def pi_controller(settings, pin_factory, fake_h264_picamera2, tmp_path, mocker):  # noqa: F811
    """A controller on a (fake) Pi 4: picamera2 camera, and the encoder node present, so
    intercom.encoder = "auto" picks the camera's encoder."""
    (tmp_path / "video11").touch()
    mocker.patch("controller.live_h264.ENCODER_DEVICE", str(tmp_path / "video11"))
    s = cfg.with_overrides(settings, camera={"kind": "picamera2", "width": 640, "height": 480})
    controller = build_controller(s, pin_factory)
    yield controller
    stop_controller(controller)


def test_office_peer_decodes_the_camera_h264_and_picture_loss_asks_the_camera(pi_controller, peer_loop):  # noqa: F811
    service = add_intercom(pi_controller, fps=15)
    try:
        assert service.h264_stream is not None
        engine = service.engine
        pc = peer_loop.run(office_offer(audio=False))
        viewer_id, answer = engine.offer(pc.localDescription.sdp, "Sam", "sam", "s1", "look")
        assert "H264/90000" in answer and "VP8/90000" not in answer and "packetization-mode=1" in answer
        peer_loop.run(accept(pc, answer))
        wait_for(lambda: len(pc.received["video"]) >= 5, what="H.264 frames decoded by the office peer")
        frame = pc.received["video"][-1]
        assert (frame.width, frame.height) == service.h264_stream.camera.live_size == (640, 480)
        luma = frame.to_ndarray(format="gray")
        value = TimePattern(640, 480).read(luma)
        assert value is not None and latency_ms(value, int(time.time() * 1000)) < 60_000
        assert engine.viewers()[0]["codec"] == "H264" and engine.video.encoded == 0   # no software encode
        [encoder] = FakeH264Encoder.instances
        asked = encoder.key_requests
        time.sleep(0.6)                                             # past the keyframe rate limit
        sender = next(t.sender for t in engine._viewers[viewer_id].pc.getTransceivers() if t.kind == "video")
        engine.loop.call_soon_threadsafe(sender._send_keyframe)     # what aiortc does on a PLI or FIR
        wait_for(lambda: encoder.key_requests > asked, what="the PLI reaching the camera encoder")
        engine.close_viewer(engine.viewer(viewer_id, "s1"))
        peer_loop.run(pc.close())
        wait_for(lambda: ("stop_encoder",) in FakePicamera2.instances[0].calls,
                 what="the encoder stopped when nobody watches")
    finally:
        remove_intercom(pi_controller, service)


def test_a_browser_without_h264_gets_the_software_vp8(pi_controller, peer_loop):  # noqa: F811
    service = add_intercom(pi_controller)
    try:
        engine = service.engine

        async def vp8_only_offer():
            from aiortc import RTCRtpSender
            pc = await office_offer(audio=False)
            vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType != "video/H264"]
            pc.getTransceivers()[0].setCodecPreferences(vp8)
            await pc.setLocalDescription(await pc.createOffer())
            return pc
        pc = peer_loop.run(vp8_only_offer())
        viewer_id, answer = engine.offer(pc.localDescription.sdp, "Sam", "sam", "s1", "look")
        assert "VP8/90000" in answer and "H264" not in answer
        peer_loop.run(accept(pc, answer))
        wait_for(lambda: len(pc.received["video"]) >= 2, what="VP8 frames")
        assert engine.viewers()[0]["codec"] == "VP8" and not FakeH264Encoder.instances
        peer_loop.run(pc.close())
    finally:
        remove_intercom(pi_controller, service)


def test_a_camera_encoder_that_fails_to_start_ends_the_view_and_says_why(pi_controller, peer_loop, mocker):  # noqa: F811
    service = add_intercom(pi_controller)
    try:
        mocker.patch.object(service.h264_stream, "start", side_effect=OSError("/dev/video11: no such device"))
        engine = service.engine
        pc = peer_loop.run(office_offer(audio=False))
        viewer_id, answer = engine.offer(pc.localDescription.sdp, "Sam", "sam", "s1", "look")
        peer_loop.run(accept(pc, answer))
        wait_for(lambda: engine.hw_video.error is not None, what="the encoder error")
        assert "/dev/video11" in engine.health()["video_encoder_error"]
        peer_loop.run(pc.close())
    finally:
        remove_intercom(pi_controller, service)


def test_software_vp8_is_the_only_codec_answered_even_when_the_offer_lists_h264_first(settings, pin_factory, peer_loop):  # noqa: F811
    """Safari-like offers put H.264 first. The shared VP8 packets must not go out labelled
    H.264 (before, aiortc kept the offer's order in the answer: preferences set after the
    offer did not filter it)."""
    controller = build_controller(settings, pin_factory)
    service = add_intercom(controller)
    try:
        assert service.h264_stream is None                      # the simulated camera: software
        engine = service.engine

        async def h264_first_offer():
            from aiortc import RTCRtpSender
            pc = await office_offer(audio=False)
            codecs = RTCRtpSender.getCapabilities("video").codecs
            pc.getTransceivers()[0].setCodecPreferences(sorted(codecs, key=lambda c: c.mimeType != "video/H264"))
            await pc.setLocalDescription(await pc.createOffer())
            return pc
        pc = peer_loop.run(h264_first_offer())
        assert pc.localDescription.sdp.index("H264/90000") < pc.localDescription.sdp.index("VP8/90000")
        viewer_id, answer = engine.offer(pc.localDescription.sdp, "Sam", "sam", "s1", "look")
        assert "VP8/90000" in answer and "H264" not in answer
        peer_loop.run(accept(pc, answer))
        wait_for(lambda: len(pc.received["video"]) >= 2, what="VP8 frames decoded")
        peer_loop.run(pc.close())
    finally:
        remove_intercom(controller, service)
        stop_controller(controller)


def test_an_older_picamera2_without_the_profile_argument_still_starts(fake_h264_picamera2):  # noqa: F811
    """picamera2 before the profile/framerate arguments (Bookworm's first releases)."""
    class OldEncoder(FakeH264Encoder):
        def __init__(self, bitrate=None, repeat=False, iperiod=None):
            super().__init__(bitrate=bitrate, repeat=repeat, iperiod=iperiod)
    sys.modules["picamera2.encoders.h264_encoder"].H264Encoder = OldEncoder   # the fixture's fresh module
    stream = Picamera2H264Stream(pi_camera(), 15)
    units: list[bool] = []
    stream.start(lambda data, key, ts: units.append(key))
    wait_for(lambda: units, what="units from the older encoder")
    [encoder] = FakeH264Encoder.instances
    assert encoder.kwargs["repeat"] is True and encoder.kwargs["iperiod"] == 15 and encoder.kwargs["profile"] is None
    stream.stop()
