"""Intercom signalling on the panel API (Flask test client, real controller and media engine,
a Python aiortc peer as the office): session and CSRF, bad and oversized offers, the offer
rate, Talk and hang-up journaled through the controller, the MJPEG fallback, the station's
indicators, and a stuck media engine that leaves ring/approve/pulse/relock untouched."""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from controller import events as ev
from tests.support_intercom import accept, add_intercom, office_offer, remove_intercom
from tests.support_web import Signed, ring, wait_for

pytestmark = pytest.mark.media


@pytest.fixture
def intercom(controller) -> Iterator[Any]:  # noqa: F811
    service = add_intercom(controller, offers_per_minute=5, max_sdp_bytes=8000)
    yield service
    remove_intercom(controller, service)


@pytest.fixture
def office(app, intercom) -> Signed:  # noqa: F811
    return Signed(app.test_client(), "sam")


def journaled(controller: Any, kind: str) -> list[Any]:  # noqa: F811
    return list(reversed(controller.journal.query(types=[kind], limit=20)))


def test_offer_needs_a_session_and_the_csrf_token(app, intercom, peer_loop):  # noqa: F811
    pc = peer_loop.run(office_offer())
    anonymous = app.test_client().post("/api/intercom/offer", data={"sdp": pc.localDescription.sdp})
    assert anonymous.status_code == 401 and "sign in" in anonymous.get_json()["error"]
    signed = Signed(app.test_client(), "sam")
    no_token = signed.client.post("/api/intercom/offer", data={"sdp": pc.localDescription.sdp})
    assert no_token.status_code == 400 and "CSRF" in no_token.get_json()["error"]
    assert intercom.engine.viewers() == []
    assert app.test_client().get("/api/intercom/mjpeg").status_code == 401
    peer_loop.run(pc.close())


@pytest.mark.parametrize("sdp,status,words", [
    ("", 400, "sdp is required"),
    ("hello", 400, "not an SDP offer"),
    ("v=0\r\nm=audio 9 RTP/AVP 0\r\n", 400, "video section"),
    ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\x00", 400, "characters"),
    ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n" + "a=x\r\n" * 3000, 413, "larger than 8000 bytes"),
    ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n",
     400, "not a usable SDP offer"),
    ("v=0\r\n" + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" * 5, 400, "more than 4 media sections"),
    ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n" + "a=candidate:1 1 udp 1 10.0.0.1 9 typ host\r\n" * 41,
     400, "more than 40 ICE candidates"),
])
def test_bad_offers_get_a_clear_4xx_change_nothing_and_are_journaled(office, intercom, controller, sdp, status,
                                                                      words):  # noqa: F811
    before = controller.journal.last_seq
    resp = office.post("/api/intercom/offer", {"sdp": sdp, "reason": "look"})
    assert resp.status_code == status and words in resp.get_json()["error"]
    assert intercom.engine.viewers() == []
    [refused] = [e for e in controller.journal.query(limit=5) if e.seq > before]     # the only new event
    assert refused.type == ev.INTERCOM_REFUSED and refused.actor == "Sam Staff"
    assert refused.data["status"] == status and refused.data["actor_username"] == "sam"
    assert refused.data["category"] == ("too_large" if status == 413 else "malformed")
    assert office.post("/api/intercom/offer", {"sdp": "x", "reason": "party"}).status_code == 400


def test_too_many_offers_answer_429_with_retry_after(office, intercom):
    sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    codes = [office.post("/api/intercom/offer", {"sdp": sdp}).status_code for _ in range(7)]
    assert codes[:5] == [400] * 5 and codes[5:] == [429, 429]
    resp = office.post("/api/intercom/offer", {"sdp": sdp})
    assert 1 <= int(resp.headers["Retry-After"]) <= 61 and "at most 5 a minute" in resp.get_json()["error"]
    refused = [e.data["category"] for e in office.client.application.extensions["entry_controller"]
               .journal.query(types=[ev.INTERCOM_REFUSED], limit=20)]
    assert sorted(refused) == ["malformed"] * 5 + ["rate"] * 3


def test_live_view_and_talk_are_journaled_with_the_staff_member(office, intercom, controller, peer_loop):  # noqa: F811
    rid = ring(controller)
    pc = peer_loop.run(office_offer(talk_tone=True))
    resp = office.post("/api/intercom/offer", {"sdp": pc.localDescription.sdp, "reason": "ring"})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    peer_loop.run(accept(pc, body["sdp"]))
    wait_for(lambda: pc.connectionState == "connected", what="connected")
    assert office.post("/api/intercom/talk", {"viewer": body["viewer"], "on": "1"}).get_json()["talking"]
    state = wait_for(lambda: (s := office.get("/sim/state").get_json()["intercom"])["office_level"] > 0 and s,
                     what="office heard at the door")
    assert state["listening"] and state["talking"]
    assert office.post("/api/intercom/talk", {"viewer": body["viewer"], "on": "yes"}).status_code == 400
    assert office.post("/api/intercom/talk", {"viewer": "0" * 16, "on": "1"}).status_code == 404
    assert office.post("/api/intercom/hangup", {"viewer": body["viewer"]}).get_json()["ok"]
    intercom.engine.audit_drained()
    kinds = [e.type for e in controller.journal.query(limit=10)
             if e.type in (ev.LIVE_VIEW_STARTED, ev.LIVE_VIEW_ENDED, ev.TALK_STARTED, ev.TALK_ENDED)]
    assert list(reversed(kinds)) == [ev.LIVE_VIEW_STARTED, ev.TALK_STARTED, ev.TALK_ENDED, ev.LIVE_VIEW_ENDED]
    started = journaled(controller, ev.LIVE_VIEW_STARTED)[-1]
    assert started.actor == "Sam Staff" and started.data["actor_username"] == "sam"
    assert started.data["reason"] == "ring" and started.data["viewer"] == body["viewer"]
    assert journaled(controller, ev.LIVE_VIEW_ENDED)[-1].data["reason"] == "hangup"
    assert controller.core.status()["ring"]["request_id"] == rid
    peer_loop.run(pc.close())


def test_mjpeg_fallback_streams_jpegs_and_counts_as_a_viewer(office, intercom, controller):  # noqa: F811
    resp = office.get("/api/intercom/mjpeg?reason=look", buffered=False)
    assert resp.status_code == 200 and resp.mimetype == "multipart/x-mixed-replace"
    chunks = resp.response
    first = next(chunks)
    assert b"Content-Type: image/jpeg" in first and b"\xff\xd8" in first
    assert [v["mode"] for v in intercom.engine.viewers()] == ["mjpeg"]
    assert intercom.engine.station()["watching"] and not intercom.engine.station()["listening"]
    resp.close()
    assert intercom.engine.viewers() == []
    intercom.engine.audit_drained()
    assert journaled(controller, ev.LIVE_VIEW_ENDED)[-1].data["mode"] == "mjpeg"


def test_webrtc_switched_off_in_config_sends_the_dashboard_to_mjpeg(office, intercom, controller):  # noqa: F811
    from controller import config as cfg
    controller.settings = cfg.with_overrides(controller.settings, intercom={"webrtc": False})
    info = office.get("/api/intercom").get_json()
    assert info["enabled"] and not info["webrtc"] and info["mjpeg"]
    resp = office.post("/api/intercom/offer", {"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"})
    assert resp.status_code == 409 and "MJPEG" in resp.get_json()["error"]


def test_a_stuck_media_engine_leaves_ring_approve_pulse_and_relock_untouched(
        office, intercom, controller, peer_loop, mocker):  # noqa: F811
    mocker.patch("intercom.engine.ANSWER_TIMEOUT_SECONDS", 1.0)
    intercom.engine.loop.call_soon_threadsafe(time.sleep, 8)      # a stuck encoder holds the media loop
    pc = peer_loop.run(office_offer())
    resp = office.post("/api/intercom/offer", {"sdp": pc.localDescription.sdp})
    assert resp.status_code == 503 and "MJPEG" in resp.get_json()["error"]
    started = time.monotonic()
    rid = ring(controller)
    approve = office.post("/api/approve", {"request_id": rid, "presses": "1"})
    assert approve.status_code == 200, approve.get_json()
    assert controller.station.strike_on
    wait_for(lambda: not controller.station.strike_on, what="relock after the pulse")
    assert time.monotonic() - started < 7.5           # well inside the media stall: nothing waited on it
    kinds = [e.type for e in controller.journal.query(limit=6)]
    assert ev.DOOR_LOCKED in kinds and ev.DOOR_UNLOCKED in kinds and ev.ENTRY_APPROVED in kinds
    peer_loop.run(pc.close())


def test_a_crashed_media_thread_answers_503_and_the_door_still_works(office, intercom, controller, peer_loop):  # noqa: F811
    intercom.engine.loop.call_soon_threadsafe(intercom.engine.loop.stop)     # the media thread ends
    wait_for(lambda: not intercom.engine.running, what="media thread gone")
    assert not office.get("/api/intercom").get_json()["webrtc"]
    pc = peer_loop.run(office_offer())
    assert office.post("/api/intercom/offer", {"sdp": pc.localDescription.sdp}).status_code == 503
    rid = ring(controller)
    assert office.post("/api/approve", {"request_id": rid, "presses": "1"}).status_code == 200
    wait_for(lambda: not controller.station.strike_on, what="relock")
    first = next(office.get("/api/intercom/mjpeg", buffered=False).response)   # the fallback still works
    assert b"\xff\xd8" in first
    peer_loop.run(pc.close())


def test_the_media_engine_loads_on_the_first_live_view_not_at_start(app, controller, peer_loop):  # noqa: F811
    service = add_intercom(controller, load=False)
    try:
        office = Signed(app.test_client(), "sam")
        assert service.engine is None and service.health() == {"running": False, "loaded": False,
                                                               "error": None, "viewers": 0}
        assert office.get("/api/intercom").get_json()["webrtc"]        # available: it loads on use
        assert office.get("/sim/state").get_json()["intercom"]["listening"] is False
        assert office.post("/api/intercom/talk", {"viewer": "0" * 16, "on": "1"}).status_code == 404
        assert service.engine is None
        pc = peer_loop.run(office_offer())
        resp = office.post("/api/intercom/offer", {"sdp": pc.localDescription.sdp})
        assert resp.status_code == 200 and service.engine is not None and service.health()["loaded"]
        peer_loop.run(pc.close())
    finally:
        remove_intercom(controller, service)


def test_an_engine_that_cannot_load_answers_503_and_the_door_works(app, controller, peer_loop, mocker):  # noqa: F811
    service = add_intercom(controller, load=False)
    try:
        mocker.patch.dict("sys.modules", {"intercom.engine": None})      # as if aiortc were missing
        office = Signed(app.test_client(), "sam")
        pc = peer_loop.run(office_offer())
        resp = office.post("/api/intercom/offer", {"sdp": pc.localDescription.sdp})
        assert resp.status_code == 503 and "not available" in resp.get_json()["error"]
        assert office.get("/api/intercom/mjpeg").status_code == 503
        assert "ImportError" in service.health()["error"] or "import" in service.health()["error"]
        rid = ring(controller)
        assert office.post("/api/approve", {"request_id": rid, "presses": "1"}).status_code == 200
        wait_for(lambda: not controller.station.strike_on, what="relock")
        peer_loop.run(pc.close())
    finally:
        remove_intercom(controller, service)
