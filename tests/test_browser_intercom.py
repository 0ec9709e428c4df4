"""The intercom in Debian's Chromium (fake camera/microphone devices) against the real server,
controller and media engine: a ring starts live video by itself (frames decoded, visitor
audio heard, checked through getStats), Talk reaches the door (the station meters it and
shows listening/talking), the viewer limit, the MJPEG fallback (WebRTC off, or WebRTC that
cannot connect), and the door flow beside a live view."""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

import pytest

from controller import config as cfg
from controller import events as ev
from tests.support_browser import expect, signed_in
from tests.support_intercom import add_intercom, remove_intercom
from tests.support_web import NAMES, TEST_CONFIG, add_users, build_controller, stop_controller, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.media]

STATS = """async () => {
  const v = Intercom.view();
  if (!v || !v.pc) return null;
  const out = {framesDecoded: 0, audioLevel: 0, audioEnergy: 0, width: 0};
  (await v.pc.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'video') { out.framesDecoded = s.framesDecoded || 0; out.width = s.frameWidth || 0; }
    if (s.kind === 'audio') { out.audioLevel = s.audioLevel || 0; out.audioEnergy = s.totalAudioEnergy || 0; }
  });
  return out;
}"""


def make_site(settings: Any, pin_factory: Any, **intercom: Any) -> Any:
    from web.server import WebServer
    s = cfg.with_overrides(settings, door={"unlock_seconds": 2.0})
    controller = build_controller(s, pin_factory)
    service = add_intercom(controller, **intercom)
    server = WebServer(controller, test_config=TEST_CONFIG, host="127.0.0.1", port=0,
                       station=controller.station)
    add_users(server.app.extensions["panel_store"])
    server.start()
    server.controller, server.intercom = controller, service
    return server


def close_site(server: Any) -> None:
    server.stop()
    remove_intercom(server.controller, server.intercom)
    stop_controller(server.controller)


@pytest.fixture
def site(settings, pin_factory) -> Iterator[Any]:
    server = make_site(settings, pin_factory)
    yield server
    close_site(server)


def stats(page: Any) -> dict[str, Any]:
    return page.evaluate(STATS) or {}


def journal_types(site: Any) -> list[str]:
    site.intercom.engine.audit_drained()
    return [e.type for e in reversed(site.controller.journal.query(limit=40))]


def test_ring_starts_live_video_with_the_visitor_voice_and_talk_reaches_the_door(intercom_browser, site):
    dash = signed_in(intercom_browser, site, "sam")
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    sim = dash.context.new_page()
    sim.goto("/sim")
    expect(sim.locator("#ic-listening")).not_to_have_class(re.compile(r"\bon\b"))
    sim.click("#press")
    expect(dash.locator("#ring")).to_be_visible()
    expect(dash.locator("body")).to_have_attribute("data-live", "webrtc")
    frames = wait_for(lambda: stats(dash).get("framesDecoded", 0) > 0 and stats(dash), what="frames decoded")
    assert frames["width"] == 320
    print(f"\nbrowser stats after the ring: {frames}")
    wait_for(lambda: stats(dash).get("audioEnergy", 0) > 0, what="visitor audio heard")
    expect(sim.locator("#ic-listening")).to_have_class(re.compile(r"\bon\b"))
    expect(sim.locator("#ic-talking")).not_to_have_class(re.compile(r"\bon\b"))
    assert site.intercom.engine.speaker.frames == 0                  # office mic off until Talk

    hold = dash.locator("#talk-hold")
    hold.hover()
    dash.mouse.down()                                                 # press and hold
    expect(sim.locator("#ic-talking")).to_have_class(re.compile(r"\bon\b"))
    expect(dash.locator("#talk-state")).to_contain_text("TALKING")
    wait_for(lambda: float(sim.locator("#ic-level").get_attribute("data-level")) > 0.001,
             what="office voice metered at the door")
    dash.mouse.up()
    expect(sim.locator("#ic-talking")).not_to_have_class(re.compile(r"\bon\b"))
    dash.click("#talk-toggle")                                        # the toggle stays on
    expect(dash.locator("#talk-toggle")).to_have_attribute("aria-pressed", "true")
    expect(sim.locator("#ic-talking")).to_have_class(re.compile(r"\bon\b"))
    dash.click("#talk-toggle")
    expect(sim.locator("#ic-talking")).not_to_have_class(re.compile(r"\bon\b"))

    dash.click("#approve")                                            # the door flow beside live media
    expect(dash.locator("#outcome")).to_have_text(f"Approved by {NAMES['sam']}")
    expect(sim.locator("#strike")).to_have_text(re.compile("UNLOCKED"))
    expect(sim.locator("#strike")).to_have_text("locked")
    expect(dash.locator("body")).to_have_attribute("data-live", "off")   # the view ends with the ring
    wait_for(lambda: ev.LIVE_VIEW_ENDED in journal_types(site), what="view ended")
    kinds = [k for k in journal_types(site) if k.startswith(("live_view", "talk"))]
    assert kinds == ["live_view_started", "talk_started", "talk_ended", "talk_started", "talk_ended",
                     "live_view_ended"]
    started = site.controller.journal.query(types=[ev.TALK_STARTED], limit=1)[0]
    assert started.actor == NAMES["sam"] and started.data["actor_username"] == "sam"
    dash.context.close()


def test_live_look_without_a_ring_and_the_viewer_limit(intercom_browser, settings, pin_factory):
    site = make_site(settings, pin_factory, max_viewers=2)
    try:
        pages, viewers = [], []
        for _ in range(3):
            page = signed_in(intercom_browser, site, "sam")
            page.click("#live-look")
            expect(page.locator("body")).to_have_attribute("data-live", "webrtc")
            wait_for(lambda p=page: stats(p).get("framesDecoded", 0) > 0, what="frames decoded")
            pages.append(page)
            viewers.append(page.evaluate("Intercom.view().viewer"))
        engine = site.intercom.engine
        assert len(engine.viewers()) == 2
        wait_for(lambda: ev.LIVE_VIEW_ENDED in journal_types(site), what="oldest dropped")
        dropped = site.controller.journal.query(types=[ev.LIVE_VIEW_ENDED], limit=1)[0]
        assert dropped.data["reason"] == "dropped"
        assert dropped.data["viewer"] == viewers[0]
        assert {v["id"] for v in engine.viewers()} == set(viewers[1:])
        assert site.controller.core.status()["ring"] is None
        pages[2].click("#live-close")
        expect(pages[2].locator("body")).to_have_attribute("data-live", "off")
        wait_for(lambda: len(engine.viewers()) == 1, what="closed view freed")
        for page in pages:
            page.context.close()
    finally:
        close_site(site)


def test_mjpeg_fallback_when_webrtc_is_off(intercom_browser, settings, pin_factory):
    site = make_site(settings, pin_factory, webrtc=False)
    try:
        dash = signed_in(intercom_browser, site, "sam")
        expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
        site.controller.station.press()
        expect(dash.locator("body")).to_have_attribute("data-live", "mjpeg")
        expect(dash.locator("#live-note")).to_be_visible()
        expect(dash.locator("#live-note")).to_contain_text("Video only (MJPEG over HTTPS)")
        wait_for(lambda: dash.evaluate("document.getElementById('live-mjpeg').naturalWidth") == 320,
                 what="MJPEG frames shown")
        assert [v["mode"] for v in site.intercom.engine.viewers()] == ["mjpeg"]
        expect(dash.locator("#talk-hold")).to_be_hidden()
        dash.context.close()
    finally:
        close_site(site)


def test_webrtc_that_cannot_connect_falls_back_to_mjpeg_and_frees_the_peer(intercom_browser, settings, pin_factory):
    """The answer reaches the browser with the wrong ICE credentials (as if every UDP check were
    lost): the connection never completes; the dashboard says so and shows MJPEG; the door's
    side is freed."""
    site = make_site(settings, pin_factory, connect_timeout_seconds=3.0)
    try:
        dash = signed_in(intercom_browser, site, "sam")

        def break_ice(route: Any) -> None:
            resp = route.fetch()
            body = resp.json()
            body["sdp"] = re.sub(r"a=ice-pwd:\S+", "a=ice-pwd:" + "x" * 24, body["sdp"])
            route.fulfill(response=resp, body=json.dumps(body))
        dash.route("**/api/intercom/offer", break_ice)
        dash.click("#live-look")
        expect(dash.locator("body")).to_have_attribute("data-live", "mjpeg", timeout=30_000)
        expect(dash.locator("#live-note")).to_contain_text("WebRTC could not connect")
        wait_for(lambda: [v["mode"] for v in site.intercom.engine.viewers()] == ["mjpeg"],
                 what="the failed WebRTC viewer freed")
        dash.context.close()
    finally:
        close_site(site)


def test_a_stuck_media_thread_leaves_the_door_flow_untouched_in_the_browser(intercom_browser, site):
    """A live view is open; the media loop then hangs (a stuck encoder). The dashboard still
    rings, approves, and the station sees the pulse and the relock."""
    import time
    dash = signed_in(intercom_browser, site, "sam")
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    dash.click("#live-look")
    expect(dash.locator("body")).to_have_attribute("data-live", "webrtc")
    wait_for(lambda: stats(dash).get("framesDecoded", 0) > 0, what="frames decoded")
    sim = dash.context.new_page()
    sim.goto("/sim")
    engine = site.intercom.engine
    engine.loop.call_soon_threadsafe(time.sleep, 12)              # the media thread is stuck from here
    decoded = stats(dash)["framesDecoded"]
    started = time.monotonic()
    sim.click("#press")
    expect(dash.locator("#ring")).to_be_visible()
    dash.click("#approve")
    expect(dash.locator("#outcome")).to_have_text(f"Approved by {NAMES['sam']}")
    expect(sim.locator("#strike")).to_have_text(re.compile("UNLOCKED"))
    expect(sim.locator("#strike")).to_have_text("locked")
    assert time.monotonic() - started < 11                         # inside the stall: nothing waited on it
    assert stats(dash)["framesDecoded"] - decoded < 15             # the video did stall meanwhile
    kinds = journal_types(site)
    assert kinds.index(ev.ENTRY_APPROVED) < kinds.index(ev.DOOR_UNLOCKED) < len(kinds) - 1
    assert ev.DOOR_LOCKED in kinds[kinds.index(ev.DOOR_UNLOCKED):]
    dash.context.close()
