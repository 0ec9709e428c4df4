"""Intercom adapters in-process: the time pattern, the live sources (simulated, and the real
picamera2 path against a fake picamera2 module), the ALSA microphone and speaker against a
fake ``av.open`` (ALSA cannot run here), the door-speaker meter and the [intercom] config."""

from __future__ import annotations

import sys
import time
import types

import av
import numpy as np
import pytest

from controller import config as cfg
from controller.camera import Picamera2Camera, build_camera
from controller.live_frames import Picamera2LiveSource, SimulatedLiveSource, TimePattern, latency_ms, live_source_for
from intercom.door_audio import AlsaSpeaker, MeterSpeaker, level
from intercom.tracks import AUDIO_SAMPLES, AlsaMicrophone, to_i420
from tests.test_camera import FakePicamera2


def tone(amplitude: float, samples: int = 960, fmt: str = "s16") -> av.AudioFrame:
    t = np.arange(samples) / 48000
    data = (amplitude * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
    frame.sample_rate = 48000
    return frame


@pytest.mark.parametrize("ms", [0, 1, 123_456_789, 2 ** 32 - 1, 1_764_480_000_123])
def test_time_pattern_round_trips_through_a_drawn_frame(ms):
    from PIL import Image
    img = Image.new("RGB", (640, 480), (90, 90, 90))
    pattern = TimePattern(640, 480)
    pattern.draw(img, ms)
    assert pattern.read(np.asarray(img.convert("L"))) == ms % 2 ** 32


def test_time_pattern_refuses_a_frame_without_sync_blocks():
    assert TimePattern(640, 480).read(np.zeros((480, 640), dtype=np.uint8)) is None
    with pytest.raises(ValueError, match="too small"):
        TimePattern(100, 20)


def test_simulated_live_frame_carries_its_capture_time_after_yuv_conversion():
    source = SimulatedLiveSource(320, 240, "Main door")
    before = int(time.time() * 1000)
    frame = source.grab()
    i420 = to_i420(frame)
    assert i420.shape == (240 * 3 // 2, 320)
    value = TimePattern(320, 240).read(i420[:240])          # the Y plane
    assert value == frame.captured_ms % 2 ** 32
    assert 0 <= latency_ms(value, int(time.time() * 1000)) <= int(time.time() * 1000) - before + 1


def test_latency_wraps_around_the_pattern_range():
    assert latency_ms(2 ** 32 - 10, 2 ** 32 + 5) == 15


class FakeLiveCamera(FakePicamera2):
    def create_video_configuration(self, main=None, lores=None, **kw):
        self.calls.append(("create_video_configuration", main, lores, kw))
        return {"main": main, "lores": lores, **kw}

    def capture_array(self, name="main"):
        self.calls.append(("capture_array", name))
        w, h = 320, 240
        return np.full((h * 3 // 2, w), 77, dtype=np.uint8)


@pytest.fixture
def fake_live_picamera2(mocker):
    FakePicamera2.instances.clear()
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakeLiveCamera
    mocker.patch.dict(sys.modules, {"picamera2": module})
    return module


def test_picamera2_with_live_video_runs_a_lores_yuv_stream_beside_the_snapshot_stream(fake_live_picamera2):
    cam = build_camera("picamera2", 1280, 720, 85, "Main", live_size=(320, 240), live_fps=12)
    assert isinstance(cam, Picamera2Camera)
    source = live_source_for(cam, 320, 240)
    assert isinstance(source, Picamera2LiveSource)
    frame = source.grab()
    [pc] = FakePicamera2.instances
    kind, main, lores, kw = pc.calls[0]
    assert kind == "create_video_configuration" and main == {"size": (1280, 720)}
    assert lores == {"size": (320, 240), "format": "YUV420"} and kw["controls"] == {"FrameRate": 12}
    assert ("capture_array", "lores") in pc.calls
    assert frame.kind == "yuv420" and to_i420(frame).shape == (360, 320)
    cam.capture_jpeg()                                    # snapshots still come from the main stream
    assert ("capture_file", "jpeg") in pc.calls


def test_picamera2_without_live_video_keeps_the_still_configuration(fake_live_picamera2):
    cam = build_camera("picamera2", 1280, 720, 85)
    cam.start()
    assert FakePicamera2.instances[0].calls[0][0] == "create_still_configuration"


class FakeAlsaIn:
    """What av.open(device, format="alsa") returns: a container decoding audio frames."""

    def __init__(self, frames):
        self.frames = frames
        self.closed = False

    def decode(self, audio=0):
        for frame in self.frames:          # a sound card delivers in real time
            time.sleep(0.005)
            yield frame

    def close(self):
        self.closed = True


def test_alsa_microphone_opens_the_device_through_pyav_and_fans_out_20ms_frames():
    calls = []
    container = FakeAlsaIn([tone(0.5, 480) for _ in range(8)])     # 8 x 10 ms

    def opener(device, **kw):
        calls.append((device, kw))
        return container
    mic = AlsaMicrophone("hw:1,0", opener=opener)
    a, b = mic.track(), mic.track()
    deadline = time.monotonic() + 5
    while (a.q.qsize() < 4 or b.q.qsize() < 4) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls == [("hw:1,0", {"format": "alsa", "mode": "r", "options": {"sample_rate": "48000", "channels": "1"}})]
    chunk = a.q.get_nowait()
    assert chunk.shape == (AUDIO_SAMPLES,) and np.abs(chunk).max() > 10000
    assert b.q.qsize() >= 3
    mic._thread.join(5)
    assert container.closed


def test_alsa_microphone_that_cannot_open_says_why_and_leaves_silence():
    def opener(device, **kw):
        raise av.error.FileNotFoundError(2, "No such file or directory")
    mic = AlsaMicrophone("hw:9,0", opener=opener)
    track = mic.track()
    mic._thread.join(5)
    assert "hw:9,0" in mic.error
    import asyncio
    frame = asyncio.run(track.recv())
    assert not frame.to_ndarray().any()


class FakeAlsaOut:
    def __init__(self):
        self.packets = []
        self.closed = False
        self.stream_args = None

    def add_stream(self, codec, rate=None):
        self.stream_args = (codec, rate)
        return av.open("/dev/null", "w", format="s16le").add_stream("pcm_s16le", rate=rate)

    def mux(self, packet):
        self.packets.append(packet)

    def close(self):
        self.closed = True


def test_alsa_speaker_writes_pcm_through_pyav_off_the_caller_thread():
    out = FakeAlsaOut()
    calls = []

    def opener(device, **kw):
        calls.append((device, kw))
        return out
    speaker = AlsaSpeaker("plughw:0,0", opener=opener)
    for _ in range(5):
        speaker.play(tone(0.3))
    deadline = time.monotonic() + 5
    while len(out.packets) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    speaker.close()
    speaker._thread.join(5)
    assert calls == [("plughw:0,0", {"mode": "w", "format": "alsa"})]
    assert out.stream_args == ("pcm_s16le", 48000) and len(out.packets) >= 3 and out.closed
    assert speaker.level > 0.1


def test_meter_holds_the_peak_level_then_forgets_it(mocker):
    meter = MeterSpeaker()
    assert meter.level == 0.0
    meter.play(tone(0.5))
    meter.play(tone(0.01))
    assert 0.3 < meter.level < 0.4              # RMS of a 0.5 sine is about 0.354
    assert level(tone(0.0)) == 0.0
    now = time.monotonic()
    mocker.patch("intercom.door_audio.time.monotonic", return_value=now + 5)
    assert meter.level == 0.0


def test_intercom_config_defaults_and_errors_name_the_key():
    ic = cfg.Settings().intercom
    assert (ic.width, ic.height, ic.fps, ic.max_viewers, ic.webrtc) == (640, 480, 15, 4, True)
    assert (ic.audio_in, ic.audio_out) == ("alsa", "alsa")      # a real door: its microphone and speaker
    with pytest.raises(cfg.ConfigError) as err:
        cfg.from_dict({"intercom": {"fps": 60, "max_viewers": 0, "audio_out": "hdmi", "webrtc": "no",
                                    "stun_servers": "stun:ok.example:3478, http://bad", "colour": 1}})
    text = str(err.value)
    for key in ("intercom.fps", "intercom.max_viewers", "intercom.audio_out", "intercom.webrtc",
                "intercom.stun_servers", "intercom.colour"):
        assert key in text
    assert "http://bad" in text


def test_engine_module_is_not_imported_by_the_core():
    import subprocess
    code = ("import sys, controller.core, controller.daemon, controller.live_frames; "
            "print(any(m.startswith(('aiortc', 'av')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr




def test_refusal_flood_is_journaled_in_detail_up_to_a_rate_then_summarized():
    from controller import events as ev
    from web.intercom_audit import RefusalLog
    written = []
    log = RefusalLog(lambda kind, **data: written.append((kind, data)), detail_per_interval=3, interval_seconds=0.3)
    for i in range(8):
        log.refused("malformed" if i % 2 else "rate", 400, "bad offer", "Sam Staff", "sam")
    assert [k for k, _ in written] == [ev.INTERCOM_REFUSED] * 3
    assert written[0][1] == {"actor": "Sam Staff", "actor_username": "sam", "category": "rate", "status": 400,
                             "reason": "bad offer"}
    deadline = time.monotonic() + 5
    while len(written) < 4 and time.monotonic() < deadline:        # the summary needs no further refusal
        time.sleep(0.02)
    kind, summary = written[3]
    assert kind == ev.INTERCOM_REFUSALS and summary["total"] == 5
    assert summary["reasons"] == {"malformed": 3, "rate": 2} and summary["seconds"] >= 0.3
    log.refused("rate", 429, "again", "Sam Staff", "sam")           # a new interval: detailed again
    assert written[-1][0] == ev.INTERCOM_REFUSED
    log.close()
    assert len(written) == 5


def test_refusals_left_at_close_are_not_lost():
    from web.intercom_audit import RefusalLog
    written = []
    log = RefusalLog(lambda kind, **data: written.append((kind, data)), detail_per_interval=0, interval_seconds=60)
    log.refused("too_large", 413, "big", None, None)
    log.close()
    assert written[-1][0] == "intercom_refusals" and written[-1][1]["total"] == 1
