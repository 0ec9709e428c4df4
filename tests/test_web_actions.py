"""Staff actions through the panel: the real core decides; the panel maps Decisions to HTTP
and never unlocks for an unknown, handled, expired or locked-down request."""

from __future__ import annotations

import pytest

from controller import events as ev
from tests.support_web import NAMES, ring, wait_for, wait_snapshot


def strike_on_count(pin_factory_pin) -> int:
    return sum(1 for s in pin_factory_pin.states if s.state)


@pytest.fixture
def strike_pin(controller, pin_factory):
    return pin_factory.pin(controller.settings.gpio.strike_pin)


def test_approve_pulses_once_with_staff_name(staff, controller, strike_pin):
    rid = ring(controller)
    resp = staff.post("/api/approve", {"request_id": rid})
    assert resp.status_code == 200 and resp.json["ok"] and resp.json["request_id"] == rid
    assert controller.station.strike_on is True
    approved = controller.journal.query(types=[ev.ENTRY_APPROVED])
    assert approved[0].actor == NAMES["sam"] and approved[0].request_id == rid
    # the same request again: 409, and no second pulse
    again = staff.post("/api/approve", {"request_id": rid})
    assert again.status_code == 409 and again.json["code"] == "handled"
    assert strike_on_count(strike_pin) == 1


def test_deny_ends_the_ring_without_unlock(staff, controller, strike_pin):
    rid = ring(controller)
    resp = staff.post("/api/deny", {"request_id": rid})
    assert resp.status_code == 200 and resp.json["reason"] == "denied"
    assert controller.status()["ring"] is None
    assert strike_on_count(strike_pin) == 0
    assert staff.post("/api/approve", {"request_id": rid}).status_code == 409
    assert strike_on_count(strike_pin) == 0


@pytest.mark.parametrize("rid,status", [
    ("0b4f8a52-8c4f-4f39-9a55-6f1e0c3a9d11", 404),      # unknown
    ("", 400), ("x" * 65, 400), ("../../etc/passwd", 404), ("' OR 1=1 --", 404), ("\u0000", 404),
])
@pytest.mark.parametrize("action", ["approve", "deny"])
def test_bad_request_ids_never_unlock(staff, controller, strike_pin, action, rid, status):
    ring(controller)
    resp = staff.post(f"/api/{action}", {"request_id": rid})
    assert resp.status_code == status
    assert resp.json["ok"] is False
    assert strike_on_count(strike_pin) == 0
    assert controller.status()["ring"] is not None       # the real ring is still pending


def test_lockdown_refuses_approval_with_409(staff, controller, strike_pin):
    rid = ring(controller)
    assert staff.post("/api/lockdown/start", {"reason": "drill"}).status_code == 200
    assert controller.status()["lockdown"]["actor"] == NAMES["sam"]
    resp = staff.post("/api/approve", {"request_id": rid})
    assert resp.status_code == 409 and resp.json["code"] == "lockdown"
    unlock = staff.post("/api/unlock", {"confirm": "yes"})
    assert unlock.status_code == 409
    assert strike_on_count(strike_pin) == 0
    # ending needs the confirmation field, then works
    assert staff.post("/api/lockdown/end").status_code == 400
    assert controller.status()["lockdown"] is not None
    assert staff.post("/api/lockdown/end", {"confirm": "yes"}).status_code == 200
    assert controller.status()["lockdown"] is None


def test_unlock_now_needs_confirmation_and_is_audited(staff, controller, strike_pin):
    assert staff.post("/api/unlock").status_code == 400
    assert strike_on_count(strike_pin) == 0
    resp = staff.post("/api/unlock", {"confirm": "yes", "note": "delivery"})
    assert resp.status_code == 200
    unlocked = controller.journal.query(types=[ev.DOOR_UNLOCKED])[0]
    assert unlocked.actor == NAMES["sam"] and unlocked.data["reason"] == "staff_unlock"
    assert strike_on_count(strike_pin) == 1


def test_expired_ring_gives_409(app, controller, staff, strike_pin):
    rid = ring(controller)
    # expire it through the core's own rule: move the ring's deadline, then tick
    controller.core._ring.expires_at = controller.clock.monotonic() - 1
    controller.core.tick()
    resp = staff.post("/api/approve", {"request_id": rid})
    assert resp.status_code == 409 and resp.json["code"] == "expired"
    assert strike_on_count(strike_pin) == 0


def test_journal_failure_gives_503(staff, controller, strike_pin):
    rid = ring(controller)
    controller.journal.close()          # the disk "goes away": the core must fail closed
    resp = staff.post("/api/approve", {"request_id": rid})
    assert resp.status_code == 503 and resp.json["code"] == "fault"
    assert strike_on_count(strike_pin) == 0
    # the panel keeps answering, clearly, without a 500
    status = staff.get("/api/status")
    assert status.status_code == 200 and "journal_failure" in status.json["status"]["alarms"]
    assert staff.get("/history").status_code == 503
    assert staff.get("/history.csv").status_code == 503


def test_alarm_acknowledge(staff, controller):
    controller.station.set_door(True)           # opened while locked: forced open
    wait_for(lambda: "forced_open" in controller.status()["alarms"])
    assert staff.post("/api/alarm/ack", {"alarm": "nonsense"}).status_code == 400
    assert staff.post("/api/alarm/ack", {"alarm": "tamper"}).status_code == 404
    assert staff.post("/api/alarm/ack", {"alarm": "forced_open"}).status_code == 200
    assert "forced_open" not in controller.status()["alarms"]


def test_status_json(staff, controller):
    rid = ring(controller)
    wait_snapshot(controller, rid)
    data = staff.get("/api/status").json
    assert data["status"]["ring"]["request_id"] == rid and data["status"]["ring"]["snapshot"] is True
    assert data["status"]["door"] == "locked"
    assert data["health"]["camera"]["ok"] is True and data["health"]["mqtt"] == {"enabled": False,
                                                                                 "connected": False}
    assert data["health"]["disk"]["free_bytes"] > 0
    assert data["recent"][0]["type"] in (ev.BUZZER_PRESSED, ev.SNAPSHOT_CAPTURED)


def test_sim_station(staff, controller):
    assert staff.get("/sim").status_code == 200
    state = staff.post("/sim/press").json
    assert state["ringing"] is True and state["leds"]["ringing"] is True
    assert staff.post("/sim/door", {"open": "maybe"}).status_code == 400
    assert staff.post("/sim/door", {"open": "1"}).json["door"] == "open"
    assert staff.post("/sim/door", {"open": "0"}).json["door"] == "locked"
    assert staff.post("/sim/exit").status_code == 200
    assert controller.station.strike_on is False            # egress never energizes the strike


def test_sim_is_absent_outside_the_simulated_campus(controller):
    from tests.support_web import TEST_CONFIG, Signed, add_users
    from web import close_app, create_app
    controller.simulated = False
    controller.hardware.pin_factory = type("LGPIOFactory", (), {})()   # real pins: never /sim
    app = create_app(controller, test_config=TEST_CONFIG)
    try:
        add_users(app.extensions["panel_store"])
        user = Signed(app.test_client(), "sam")
        assert user.get("/sim").status_code == 404
        assert user.post("/sim/press").status_code == 404
        assert controller.status()["ring"] is None
    finally:
        close_app(app)
