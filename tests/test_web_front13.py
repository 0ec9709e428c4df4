"""Issue 13 panel endpoints with Flask's test client and the real core: a bad visitor record,
an unknown lockdown level and a panic without the hold are clear 400s that change nothing;
the good ones do what they say; the dashboard carries the level choice and the panic control."""

from __future__ import annotations

import pytest

from controller import events as ev
from tests.support_web import NAMES, ring


@pytest.mark.parametrize("fields,error", [
    ({"visitor_name": "x" * 81}, "visitor_name: longer than 80 characters"),
    ({"visitor_name": "Jane\r\nDoe"}, "control or invisible characters"),
    ({"visitor_name": "Jane\u200bDoe"}, "U+200B"),                 # zero-width space
    ({"visitor_purpose": "inspector"}, "visitor_purpose: 'inspector' is not one of"),
    ({"visitor_id_checked": "perhaps"}, "visitor_id_checked: use yes or no"),
])
def test_bad_visitor_record_is_a_clear_400_and_opens_nothing(staff, controller, fields, error):
    rid = ring(controller)
    resp = staff.post("/api/approve", {"request_id": rid, **fields})
    assert resp.status_code == 400 and error in resp.json["error"], resp.json
    assert controller.status()["ring"]["request_id"] == rid and not controller.station.strike_on
    assert not controller.journal.query(types=[ev.ENTRY_APPROVED])


def test_visitor_record_is_stored_with_the_approval(staff, controller):
    rid = ring(controller)
    resp = staff.post("/api/approve", {"request_id": rid, "visitor_name": " Kim Lee ",
                                       "visitor_purpose": "contractor", "visitor_id_checked": "yes"})
    assert resp.status_code == 200, resp.json
    approved = controller.journal.query(types=[ev.ENTRY_APPROVED])[0]
    assert approved.data["visitor"] == {"name": "Kim Lee", "purpose": "contractor", "id_checked": True}
    history = staff.get("/history").get_data(as_text=True)
    assert "Kim Lee · Contractor · ID checked" in history


@pytest.mark.parametrize("level", ["secure", "lockdown"])
def test_lockdown_start_takes_a_level(staff, controller, level):
    resp = staff.post("/api/lockdown/start", {"level": level})
    assert resp.status_code == 200 and controller.status()["lockdown"]["level"] == level
    assert staff.get("/api/status").json["status"]["lockdown"]["level"] == level


def test_lockdown_without_a_level_is_lockdown_and_an_unknown_level_is_refused(staff, controller):
    resp = staff.post("/api/lockdown/start", {"level": "shelter"})
    assert resp.status_code == 400 and "level: use one of secure, lockdown" in resp.json["error"]
    assert controller.status()["lockdown"] is None
    assert staff.post("/api/lockdown/start", {}).status_code == 200
    assert controller.status()["lockdown"]["level"] == "lockdown"


def test_panic_needs_the_hold_and_names_the_staff_member(staff, controller):
    assert staff.post("/api/panic", {}).status_code == 400
    assert "panic" not in controller.status()["alarms"]
    resp = staff.post("/api/panic", {"held": "yes"})
    assert resp.status_code == 200 and resp.json["code"] == "ok"
    raised = controller.journal.query(types=[ev.ALARM_RAISED])[0]
    assert (raised.data["alarm"], raised.data["source"], raised.data["by"]) == ("panic", "panel", NAMES["sam"])
    assert (raised.actor, raised.data["actor_username"]) == (NAMES["sam"], "sam")     # the account too
    assert staff.post("/api/panic", {"held": "yes"}).json["code"] == "already"
    assert staff.post("/api/alarm/ack", {"alarm": "panic"}).status_code == 200
    assert "panic" not in controller.status()["alarms"]


def test_dashboard_has_the_level_choice_the_panic_control_and_the_visitor_picks(staff):
    page = staff.get("/").get_data(as_text=True)
    for needle in ('id="lockdown-start-secure"', 'id="lockdown-escalate"', 'id="panic"',
                   'value="parent_guardian"', 'value="volunteer"', 'id="visitor-id-checked"',
                   "lockdown.js", "panic.js", "visitor.js"):
        assert needle in page, needle
