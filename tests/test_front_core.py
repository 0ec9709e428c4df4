"""Issue 13 core rules, with an injected clock and a real journal: rings during a lockdown are
never approvable (not even after it ends, when they close as missed visits), the two lockdown
levels (secure / lockdown) with escalation, the panic alarm, and the visitor record.

Each "lockdown screens" finding of issue 13 has a test here that fails on the old core."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import events as ev
from controller import labels, visitor
from controller.core import EntryCore
from controller.door_settings import DoorSettings
from controller.durable import FileLockdownStore
from controller.journal import Journal
from controller.panic import Panic
from tests.support_core import RecordingStrike


class Leds:
    def __init__(self):
        self.shown: list[str] = []

    def show(self, state):
        self.shown.append(state)


@pytest.fixture
def journal(tmp_path: Path, clock):
    j = Journal(tmp_path / "j.sqlite3", "campus", "door", now=clock.now)
    yield j
    j.close()


@pytest.fixture
def leds():
    return Leds()


@pytest.fixture
def core(journal, clock, leds, tmp_path):
    return EntryCore(journal, RecordingStrike(clock), DoorSettings(ring_timeout_seconds=60), clock=clock,
                     indicators=leds, lockdown_store=FileLockdownStore(tmp_path / "lockdown.json"))


def types(journal, *wanted):
    return [e for e in journal.query(limit=500)[::-1] if not wanted or e.type in wanted]


# ------------------------------------------------------------ rings during a lockdown
def test_ring_during_lockdown_is_refused_and_never_approvable_after_it_ends(core, journal):
    core.start_lockdown("Ann", "drill")
    rid = core.press().request_id
    assert core.status()["ring"]["lockdown"] is True           # the panel shows "Entry refused"
    assert core.approve(rid, "Sam").code == "lockdown"
    assert core.end_lockdown("Ann").ok
    # Old code: the ring stayed pending after the end and this approval opened the door.
    d = core.approve(rid, "Sam")
    assert (d.ok, d.code) == (False, "lockdown")
    assert "never be approved" in d.reason
    assert not core.strike_energized and core.status()["ring"] is None
    expired = types(journal, ev.RING_EXPIRED)
    assert [(e.request_id, e.data["reason"]) for e in expired] == [(rid, "lockdown_ended")]
    assert not types(journal, ev.ENTRY_APPROVED, ev.DOOR_UNLOCKED)


def test_ring_pending_when_a_lockdown_starts_is_refused_too(core):
    rid = core.press().request_id
    assert core.status()["ring"]["lockdown"] is False
    core.start_lockdown("Ann", level="secure")
    assert core.status()["ring"]["lockdown"] is True
    core.end_lockdown("Ann")
    assert core.approve(rid, "Sam").code == "lockdown"


def test_ring_after_the_lockdown_ended_is_approvable(core):
    core.start_lockdown("Ann")
    core.end_lockdown("Ann")
    rid = core.press().request_id
    assert core.approve(rid, "Sam").ok


def test_station_shows_lockdown_not_ringing(core, leds):
    core.start_lockdown("Ann")
    core.press()
    # Old code: a ring during a lockdown showed the normal Ringing pattern.
    assert leds.shown[-1] == "lockdown" and "ringing" not in leds.shown
    core.end_lockdown("Ann")
    assert leds.shown[-1] == "idle"


def test_the_missed_label_says_why(core, journal):
    core.start_lockdown("Ann")
    core.press()
    core.end_lockdown("Ann")
    e = types(journal, ev.RING_EXPIRED)[0].to_dict()
    assert labels.describe(e) == "Missed: rang during the lockdown (entry was refused)"


# ------------------------------------------------------------ levels
@pytest.mark.parametrize("level", ["secure", "lockdown"])
def test_both_levels_refuse_every_unlock_and_travel_in_events_and_status(core, journal, level):
    assert core.start_lockdown("Ann", "drill", level=level).ok
    assert core.status()["lockdown"]["level"] == level
    assert core.unlock_now("Sam").code == "lockdown"
    rid = core.press().request_id
    assert core.approve(rid, "Sam").code == "lockdown"
    assert not core.strike_energized
    started = types(journal, ev.LOCKDOWN_STARTED)[0]
    assert started.data["level"] == level
    assert types(journal, ev.BUZZER_PRESSED)[0].data["level"] == level


def test_default_level_is_lockdown(core):
    core.start_lockdown("Ann")
    assert core.status()["lockdown"]["level"] == "lockdown"


def test_unknown_level_is_refused_and_changes_nothing(core):
    d = core.start_lockdown("Ann", level="shelter")
    assert (d.ok, d.code) == (False, "invalid") and "secure or lockdown" in d.reason
    assert core.status()["lockdown"] is None


def test_escalation_secure_to_lockdown_is_journaled_and_saved(core, journal, tmp_path):
    core.start_lockdown("Ann", "police: threat outside", level="secure")
    lid = types(journal, ev.LOCKDOWN_STARTED)[0].data["lockdown_id"]
    d = core.start_lockdown("Bo", "intruder inside", level="lockdown")
    assert (d.ok, d.code) == (True, "ok")
    assert core.status()["lockdown"]["level"] == "lockdown"
    changed = types(journal, ev.LOCKDOWN_LEVEL_CHANGED)
    assert [(e.actor, e.data["previous_level"], e.data["level"], e.data["lockdown_id"]) for e in changed] == [
        ("Bo", "secure", "lockdown", lid)]
    assert len(types(journal, ev.LOCKDOWN_STARTED)) == 1        # one lockdown, escalated
    assert FileLockdownStore(tmp_path / "lockdown.json").load()["level"] == "lockdown"
    assert core.start_lockdown("Cy", level="lockdown").code == "already"
    assert labels.describe(changed[0].to_dict()) == "Lockdown level changed by Bo: SECURE → LOCKDOWN"


def test_level_survives_a_restart_from_the_file_and_from_the_journal(settings, pin_factory):
    from controller import daemon
    c = daemon.build(settings, pin_factory=pin_factory)
    daemon.start(c)
    c.start_lockdown("Ann", level="secure")
    daemon.stop(c, "test")
    pin_factory.reset()
    c = daemon.build(settings, pin_factory=pin_factory)
    daemon.start(c)
    assert c.status()["lockdown"]["level"] == "secure"
    c.start_lockdown("Ann", level="lockdown")
    daemon.stop(c, "test")
    (Path(settings.storage.state_dir) / "lockdown.json").unlink()      # the file lost: the journal tells
    pin_factory.reset()
    c = daemon.build(settings, pin_factory=pin_factory)
    daemon.start(c)
    try:
        status = c.status()["lockdown"]
        assert status["level"] == "lockdown" and status["actor"] == "Ann"
    finally:
        daemon.stop(c, "test")


# ------------------------------------------------------------ panic
def test_panic_raises_the_alarm_at_once_naming_the_source_and_starts_a_lockdown(core, journal):
    panic = Panic(core, starts_lockdown=True)
    assert panic.trigger("panel", "Sam Staff") is True
    raised = types(journal, ev.ALARM_RAISED)
    assert [(e.data["alarm"], e.data["source"], e.data["by"]) for e in raised] == [("panic", "panel", "Sam Staff")]
    first = types(journal)
    assert first.index(raised[0]) < first.index(types(journal, ev.LOCKDOWN_STARTED)[0])   # alarm first
    assert "panic" in core.status()["alarms"]
    assert core.status()["lockdown"]["level"] == "lockdown"
    assert labels.describe(raised[0].to_dict()) == "Alarm: PANIC (duress) button pressed by Sam Staff on the panel"


def test_panic_escalates_a_secure_lockdown(core):
    core.start_lockdown("Ann", level="secure")
    Panic(core).trigger("desk_button", "desk panic button")
    assert core.status()["lockdown"]["level"] == "lockdown"


def test_panic_without_lockdown_by_config(core):
    Panic(core, starts_lockdown=False).trigger("panel", "Sam")
    assert "panic" in core.status()["alarms"] and core.status()["lockdown"] is None


def test_panic_is_acknowledged_only_by_a_named_staff_member(core, journal):
    Panic(core, starts_lockdown=False).trigger("panel", "Sam")
    assert core.acknowledge_alarm("panic", "").code == "invalid"
    assert core.acknowledge_alarm("panic", "Ann").ok
    cleared = types(journal, ev.ALARM_CLEARED)
    assert [(e.data["alarm"], e.actor) for e in cleared] == [("panic", "Ann")]


def test_desk_button_is_debounced_like_the_buzzer(core, clock, journal):
    panic = Panic(core, starts_lockdown=False, debounce_ms=50, monotonic=clock.monotonic)
    assert panic.press_button() is True
    clock.advance(0.01)
    assert panic.press_button() is False                 # contact bounce
    core.acknowledge_alarm("panic", "Ann")
    clock.advance(0.2)
    assert panic.press_button() is True
    assert [e.data["source"] for e in types(journal, ev.ALARM_RAISED)] == ["desk_button", "desk_button"]


# ------------------------------------------------------------ visitor record
def test_approve_with_a_visitor_record_stores_it_with_the_visit(core, journal):
    rid = core.press().request_id
    record = visitor.parse("Jane Doe", "parent_guardian", "yes")
    assert core.approve(rid, "Sam", visitor=record).ok
    approved = types(journal, ev.ENTRY_APPROVED)[0]
    assert approved.data["visitor"] == {"name": "Jane Doe", "purpose": "parent_guardian", "id_checked": True}
    assert labels.describe(approved.to_dict()) == (
        "Approved by Sam — visitor: Jane Doe · Parent or guardian · ID checked")


def test_approve_without_a_record_stays_as_before(core, journal):
    rid = core.press().request_id
    assert core.approve(rid, "Sam").ok
    assert "visitor" not in types(journal, ev.ENTRY_APPROVED)[0].data


def test_core_refuses_a_bad_record_and_opens_nothing(core):
    rid = core.press().request_id
    d = core.approve(rid, "Sam", visitor={"name": "Jane\x1b[2J"})
    assert (d.ok, d.code) == (False, "invalid") and "control" in d.reason
    assert not core.strike_energized and core.status()["ring"] is not None


@pytest.mark.parametrize("name,purpose,checked,error", [
    ("x" * 81, "", "", "longer than 80"),
    ("Jane\nDoe", "", "", r"U\+000A"),
    ("Jane\u202eeoD", "", "", r"U\+202E"),               # a bidi override forges text direction
    ("Jane", "plumber", "", "not one of"),
    ("Jane", "", "maybe", "yes or no"),
])
def test_visitor_validation(name, purpose, checked, error):
    with pytest.raises(visitor.VisitorError, match=error):
        visitor.parse(name, purpose, checked)


def test_visitor_parse_keeps_what_was_given():
    assert visitor.parse("", "", "") is None
    assert visitor.parse("  Émile Zola ", None, None) == {"name": "Émile Zola", "id_checked": False}
    assert visitor.parse(None, "delivery", "no") == {"purpose": "delivery", "id_checked": False}


def test_names_can_be_kept_off_mqtt(core, journal):
    import json
    rid = core.press().request_id
    core.approve(rid, "Sam", visitor={"name": "Jane Doe", "purpose": "delivery", "id_checked": True})
    e = types(journal, ev.ENTRY_APPROVED)[0]
    assert json.loads(visitor.mqtt_text(e, True))["visitor"]["name"] == "Jane Doe"
    hidden = json.loads(visitor.mqtt_text(e, False))
    assert hidden["visitor"] == {"purpose": "delivery", "id_checked": True, "name_withheld": True}
    assert "Jane" not in visitor.mqtt_text(e, False)
    assert e.data["visitor"]["name"] == "Jane Doe"        # the journal keeps it


# ------------------------------------------------------------ config keys
@pytest.mark.parametrize("data,expected", [
    ({"gpio": {"panic_pin": 40}}, "gpio.panic_pin: 40 is not a usable BCM GPIO"),
    ({"gpio": {"panic_pin": 27}}, "gpio.panic_pin: pin 27 is already used by gpio.buzzer_pin"),
    ({"panic": {"starts_lockdown": "yes"}}, "panic.starts_lockdown: 'yes' is not true or false"),
    ({"mqtt": {"publish_visitor_names": 0}}, "mqtt.publish_visitor_names: 0 is not true or false"),
])
def test_new_config_keys_are_validated_by_name(data, expected):
    from controller import config as cfg
    with pytest.raises(cfg.ConfigError) as err:
        cfg.from_dict(data)
    assert expected in str(err.value), str(err.value)


def test_new_config_defaults():
    from controller import config as cfg
    s = cfg.from_dict({"gpio": {"panic_pin": 6}})
    assert (s.gpio.panic_pin, s.panic.starts_lockdown, s.mqtt.publish_visitor_names) == (6, True, True)
