"""Human words everywhere staff read: one table (controller/labels.py) used by the activity feed,
History and the CSV export; egress is an exit; the Staff column names who acted on that row; a
ring that expired stays in a Missed list until acknowledged; health refreshes on the stream."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import datetime, timezone

import pytest

from controller import config as cfg
from controller import events as ev
from controller import labels
from controller.vocabulary import Alarm
from tests.conftest import FakeClock
from tests.support_web import (
    NAMES,
    TEST_CONFIG,
    Signed,
    add_users,
    build_controller,
    ring,
    session_cookie,
    stop_controller,
    wait_for,
    wait_snapshot,
)
from tests.test_web_stream import StreamReader

RAW = re.compile(r"\b[a-z]+_[a-z_]+\b")      # pulse_end, staff_unlock, buzzer_pressed, …


@pytest.fixture
def settings(tmp_path):
    """Short timers (a ring expires within seconds) and an outbox (MQTT on, no link started)."""
    base = cfg.with_overrides(
        cfg.Settings(), gpio={"buzzer_pin": 27, "strike_pin": 17, "door_contact_pin": 22, "tamper_pin": 24,
                              "exit_request_pin": 23, "led_ringing_pin": 19, "led_approved_pin": 26,
                              "led_denied_pin": 13},
        camera={"kind": "simulated", "width": 160, "height": 120, "capture_timeout_seconds": 2.0},
        storage={"state_dir": tmp_path / "state"}, web={"enabled": False},
        mqtt={"enabled": True, "host": "127.0.0.1", "port": 9})
    return cfg.with_overrides(base, door={"unlock_seconds": 0.5, "ring_timeout_seconds": 5.0})


@pytest.fixture
def controller(settings, pin_factory):
    c = build_controller(settings, pin_factory)
    yield c
    stop_controller(c)


def test_every_event_type_and_reason_has_words():
    assert set(labels.TYPES) == set(ev.ALL_TYPES)
    for code in ("approved", "staff_unlock", "pulse_end", "door_closed", "lockdown", "shutdown", "fault", "startup"):
        assert "_" not in labels.reason(code)
    for alarm in Alarm:
        assert alarm in labels.ALARMS
    assert labels.describe({"type": "door_opened", "egress": True}) == labels.EXIT
    assert labels.describe({"type": "door_locked", "reason": "pulse_end"}) == "Door locked (unlock time over)"


def _activity(controller):
    """A visit approved, an unlock now, the strike relocking on its own, and someone leaving."""
    rid = ring(controller)
    wait_snapshot(controller, rid)
    assert controller.approve(rid, NAMES["sam"], 1, 1).ok
    wait_for(lambda: controller.journal.query(types=[ev.DOOR_LOCKED], limit=1), what="pulse end")
    assert controller.unlock_now(NAMES["sam"], "panel").ok
    wait_for(lambda: len(controller.journal.query(types=[ev.DOOR_LOCKED], limit=5)) >= 2, what="relock")
    controller.station.request_exit()
    controller.station.set_door(True)
    controller.station.set_door(False)
    wait_for(lambda: controller.journal.query(types=[ev.DOOR_CLOSED], limit=1), what="door closed")
    return rid


def test_history_and_csv_speak_human(staff, controller):
    rid = _activity(controller)
    html = staff.get("/history").get_data(as_text=True)
    cells = " ".join(re.findall(r"<td>([^<]*)</td>", html))
    assert not RAW.findall(cells), RAW.findall(cells)
    assert "unlock time over" in html and "staff pressed Unlock now" in html and labels.EXIT in html
    # the Staff column names who acted on THAT row: nobody on the press, Sam on the approval
    press_row = re.search(r'<tr class="t-buzzer_pressed">(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r"<td>([^<]*)</td>", press_row)[:2] == ["Buzzer pressed", ""]
    approve_row = re.search(r'<tr class="t-entry_approved">(.*?)</tr>', html, re.S).group(1)
    assert NAMES["sam"] in approve_row

    rows = list(csv.DictReader(io.StringIO(staff.get("/history.csv").get_data(as_text=True))))
    for r in rows:
        for column in ("event", "staff", "outcome", "outcome_by", "note"):
            assert not RAW.findall(r[column]), (column, r[column])
    assert {r["event"] for r in rows if r["type"] == "door_opened"} == {labels.EXIT}
    visit = [r for r in rows if r["request_id"] == rid and r["type"] == "buzzer_pressed"][0]
    assert visit["staff"] == "" and visit["outcome_by"] == NAMES["sam"]


def test_dashboard_feed_events_carry_their_sentence(staff, controller):
    _activity(controller)
    state = staff.get("/api/status").get_json()
    feed = [e["label"] for e in state["recent"]]
    assert "Door locked (unlock time over)" in feed and labels.EXIT in feed
    assert "Door unlocked by Sam Staff (staff pressed Unlock now)" in feed
    page = staff.get("/").get_data(as_text=True)
    table = json.loads(re.search(r'data-labels="([^"]*)"', page).group(1).replace("&#34;", '"')
                       .replace("&quot;", '"').replace("&amp;", "&").replace("&#39;", "'"))
    assert table["alarms"]["forced_open"] == "Door forced open"


@pytest.fixture
def fake_clock_panel(settings, pin_factory):
    """A controller on a fake clock (started at the real time: the panel's lists are dated) and
    Sam signed in to its panel: the test moves the ring's expiry instead of sleeping 5 s."""
    from web import close_app, create_app
    clock = FakeClock(wall=datetime.now(timezone.utc))
    controller = build_controller(settings, pin_factory, clock=clock)
    app = create_app(controller, test_config=TEST_CONFIG, station=controller.station)
    try:
        add_users(app.extensions["panel_store"])
        yield controller, clock, Signed(app.test_client(), "sam")
    finally:
        close_app(app)
        stop_controller(controller)


def test_expired_ring_stays_missed_with_its_photo_until_acknowledged(fake_clock_panel):
    controller, clock, staff = fake_clock_panel
    rid = ring(controller)
    wait_snapshot(controller, rid)
    clock.advance(controller.settings.door.ring_timeout_seconds - 0.5)
    controller.core.tick()
    assert controller.core.status()["ring"]["request_id"] == rid      # not before its time
    clock.advance(1.0)
    controller.test_loop.wake.set()                                  # the core loop expires it
    wait_for(lambda: controller.core.status()["ring"] is None, what="ring expiry")
    missed = staff.get("/api/status").get_json()["missed"]
    assert [m["request_id"] for m in missed] == [rid] and missed[0]["snapshot"] is True
    assert staff.post("/api/missed/ack", {"request_id": "nope"}).status_code == 404
    assert staff.post("/api/missed/ack", {"request_id": rid}).status_code == 200
    assert staff.get("/api/status").get_json()["missed"] == []


@pytest.fixture
def slow_beat_server(controller):
    """The real server with a heartbeat far longer than the test: only a change can send a state."""
    from web.server import WebServer
    server = WebServer(controller, test_config={**TEST_CONFIG, "SSE_HEARTBEAT_SECONDS": 120.0},
                       host="127.0.0.1", port=0)
    add_users(server.app.extensions["panel_store"])
    server.start()
    yield server
    server.stop()


def _states(reader: StreamReader, start: int) -> list[dict]:
    text = reader.buffer.decode()[start:]
    return [json.loads(m) for m in re.findall(r"event: state\ndata: (.*)\n", text)]


def test_outbox_depth_refreshes_on_the_stream_when_it_drains(slow_beat_server, controller):
    reader = StreamReader(slow_beat_server.port, session_cookie(slow_beat_server, "sam"))
    try:
        reader.read_until(b"event: session")
        rid = ring(controller)
        wait_snapshot(controller, rid)
        assert controller.deny(rid, NAMES["sam"]).ok          # the ring is over: no more events come
        reader.sock.settimeout(30)

        def receive() -> None:
            try:
                reader.sock.settimeout(1)
                reader.buffer += reader.sock.recv(65536)
            except OSError:
                pass

        def denied_state_seen() -> bool:
            receive()
            states = _states(reader, 0)
            return bool(states) and states[-1]["status"]["ring"] is None and states[-1]["health"]["outbox_depth"] > 0
        wait_for(denied_state_seen, what="the state after the deny, with events waiting to send")
        mark = len(reader.buffer)          # everything after this was sent after the outbox drained
        seqs = [e.seq for e in controller.journal.undelivered(limit=1000)]
        controller.journal.mark_delivered(seqs)        # what the MQTT link does on the broker's ack

        def drained() -> bool:
            receive()
            return any(s["health"]["outbox_depth"] == 0 for s in _states(reader, mark))
        t0 = time.monotonic()
        wait_for(drained, timeout=20, what="a state with the drained outbox")
        print(f"\noutbox drain reached the stream after {time.monotonic() - t0:.2f} s (reported, not asserted)")
    finally:
        reader.close()
