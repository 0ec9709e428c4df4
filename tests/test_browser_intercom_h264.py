"""The Pi 4 hardware H.264 path in Debian's Chromium: a controller with the (fake) picamera2
camera and the encoder node present, so ``intercom.encoder = "auto"`` picks the camera's
H.264 encoder (tests/support_h264.py: a real libx264 stream in picamera2's shape). A ring
starts the live view by itself; getStats shows frames decoded with codec video/H264, and
the drawn capture time is read back from the decoded picture on a canvas."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from controller import config as cfg
from controller.live_frames import latency_ms
from tests.support_browser import expect, signed_in
from tests.support_h264 import FakeH264Encoder
from tests.support_intercom import add_intercom, remove_intercom
from tests.support_web import TEST_CONFIG, add_users, build_controller, stop_controller, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.media]

STATS = """async () => {
  const v = Intercom.view();
  if (!v || !v.pc) return null;
  const stats = await v.pc.getStats();
  const out = {framesDecoded: 0, width: 0, codec: '', keyFramesDecoded: 0};
  stats.forEach((s) => {
    if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
    out.framesDecoded = s.framesDecoded || 0;
    out.keyFramesDecoded = s.keyFramesDecoded || 0;
    out.width = s.frameWidth || 0;
    const codec = s.codecId && stats.get(s.codecId);
    out.codec = codec ? codec.mimeType + ' ' + (codec.sdpFmtpLine || '') : '';
  });
  return out;
}"""

# the time pattern's value read from the live <video> (bottom row of blocks; see live_frames.TimePattern)
READ_PATTERN = """() => {
  const video = document.querySelector('video');
  if (!video || !video.videoWidth) return null;
  const w = video.videoWidth, h = video.videoHeight, c = document.createElement('canvas');
  c.width = w; c.height = h;
  const g = c.getContext('2d'); g.drawImage(video, 0, 0);
  const b = Math.max(8, Math.floor(w / 40)), y = h - 2 * b + Math.floor(b / 2);
  const px = g.getImageData(0, y, w, 1).data, bits = [];
  for (let i = 0; i < 34; i++) { const x = i * b + Math.floor(b / 2); bits.push(px[4 * x + 1] >= 128 ? 1 : 0); }
  if (bits[0] !== 1 || bits[1] !== 0) return null;
  let v = 0; for (const bit of bits.slice(2)) v = v * 2 + bit;
  return {value: v, now: Date.now()};
}"""


@pytest.fixture
def pi_site(settings, pin_factory, fake_h264_picamera2, tmp_path, mocker) -> Iterator[Any]:
    from web.server import WebServer
    (tmp_path / "video11").touch()                       # a Pi 4: the bcm2835-codec encoder node
    mocker.patch("controller.live_h264.ENCODER_DEVICE", str(tmp_path / "video11"))
    s = cfg.with_overrides(settings, door={"unlock_seconds": 2.0},
                           camera={"kind": "picamera2", "width": 640, "height": 480})
    controller = build_controller(s, pin_factory)
    service = add_intercom(controller, width=640, height=480, fps=15)
    server = WebServer(controller, test_config=TEST_CONFIG, host="127.0.0.1", port=0, station=controller.station)
    add_users(server.app.extensions["panel_store"])
    server.start()
    server.controller, server.intercom = controller, service
    yield server
    server.stop()
    remove_intercom(controller, service)
    stop_controller(controller)


def test_ring_shows_the_camera_h264_decoded_in_chromium(intercom_browser, pi_site):
    assert pi_site.intercom.h264_stream is not None
    dash = signed_in(intercom_browser, pi_site, "sam")
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    sim = dash.context.new_page()
    sim.goto("/sim")
    sim.click("#press")
    expect(dash.locator("body")).to_have_attribute("data-live", "webrtc")
    got = wait_for(lambda: (s := dash.evaluate(STATS) or {}).get("framesDecoded", 0) > 5 and s,
                   what="H.264 frames decoded in Chromium")
    print(f"\nChromium stats, camera H.264: {got}")
    assert got["codec"].startswith("video/H264") and "packetization-mode=1" in got["codec"]
    assert got["width"] == 640 and got["keyFramesDecoded"] >= 1
    assert [v["codec"] for v in pi_site.intercom.engine.viewers()] == ["H264"]
    assert pi_site.intercom.engine.video.encoded == 0                # nothing encoded in software
    read = wait_for(lambda: dash.evaluate(READ_PATTERN), what="the time pattern in the decoded picture")
    assert 0 <= latency_ms(read["value"], read["now"]) < 10_000
    [encoder] = FakeH264Encoder.instances
    assert encoder.name == "lores" and encoder.kwargs["profile"] == "constrained baseline"
    dash.click("#deny")                                              # the view ends with the ring
    expect(dash.locator("body")).to_have_attribute("data-live", "off")
    wait_for(lambda: not encoder._thread.is_alive(), what="the camera encoder stopped with the view")
    dash.context.close()
