"""Issue 13 over a real Mosquitto: lockdown levels in the command, the events and the retained
state; a panic from the desk button (MockFactory pin) published at once (QoS 1, retained state)
and not clearable over MQTT; visitor names kept off the broker when configured."""

from __future__ import annotations

import json

import jsonschema
import pytest

from controller import events as ev
from controller.mqtt import CommandError, parse_command
from tests.support_mqtt import load_schema, validate, wait_for
from tests.test_mqtt import command, wait_event

pytestmark = pytest.mark.broker


@pytest.mark.parametrize("level", ["secure", "lockdown"])
def test_command_level_parsing(level):
    assert parse_command(command("start", level=level).encode(), allow_end=False)["level"] == level
    validate(json.loads(command("start", level=level)), "lockdown-command")


def test_command_without_level_means_lockdown():
    assert parse_command(command("start").encode(), allow_end=False)["level"] == "lockdown"


@pytest.mark.parametrize("payload,expected", [
    (command("start", level="shelter"), "unknown level 'shelter'"),
    (command("start", level=""), "unknown level ''"),
    (command("start", level=2), "'level' must be a string"),
    (command("end", level="secure"), "'level' applies only to 'start'"),
])
def test_command_level_refusals(payload, expected):
    with pytest.raises(CommandError, match=expected):
        parse_command(payload.encode(), allow_end=True)
    with pytest.raises(jsonschema.ValidationError):                      # the schema agrees
        jsonschema.validate(json.loads(payload), load_schema("lockdown-command"))


def test_secure_then_escalation_over_mqtt_travel_in_events_and_retained_state(linked, subscriber):
    lc = linked().ready()
    sub = subscriber(topics=(f"{lc.root}/state", f"{lc.root}/events"))
    operator = subscriber(user="operator", topics=())
    topic = f"{lc.root}/cmd/lockdown"
    operator.publish(topic, command("start", id="s-1", level="secure"))
    started = wait_event(lc, ev.LOCKDOWN_STARTED)[0]
    assert started.data["level"] == "secure" and started.data["command_id"] == "s-1"
    wait_for(lambda: any((m.json()["lockdown"] or {}).get("level") == "secure" for m in sub.on(f"{lc.root}/state")),
             what="retained state at level secure")
    assert lc.controller.unlock_now("Ms Office").code == "lockdown"          # secure refuses unlocks too

    operator.publish(topic, command("start", id="s-2", level="lockdown"))
    changed = wait_event(lc, ev.LOCKDOWN_LEVEL_CHANGED)[0]
    assert (changed.data["previous_level"], changed.data["level"], changed.data["command_id"]) == (
        "secure", "lockdown", "s-2")
    wait_for(lambda: any((m.json()["lockdown"] or {}).get("level") == "lockdown" for m in sub.on(f"{lc.root}/state")),
             what="retained state escalated")
    wait_for(lambda: any(e["type"] == ev.LOCKDOWN_LEVEL_CHANGED for e in sub.events(lc.root)), what="event on MQTT")

    operator.publish(topic, command("start", id="s-3", level="panic"))
    refused = wait_for(lambda: [e for e in lc.events_of(ev.COMMAND_REJECTED) if e.data["command_id"] == "s-3"])
    assert "unknown level 'panic'" in refused[0].data["reason"]
    assert lc.controller.status()["lockdown"]["level"] == "lockdown"


def test_desk_panic_button_is_published_at_once_and_mqtt_cannot_clear_it(linked, subscriber):
    lc = linked().ready()
    sub = subscriber(topics=(f"{lc.root}/state", f"{lc.root}/events"))
    operator = subscriber(user="operator", topics=())
    lc.station.press_panic()                          # the desk button's GPIO pin (MockFactory)
    raised = wait_for(lambda: [e for e in sub.events(lc.root)
                               if e["type"] == ev.ALARM_RAISED and e["alarm"] == "panic"], what="panic on MQTT")
    assert raised[0]["source"] == "desk_button" and raised[0]["by"] == "desk panic button"
    states = wait_for(lambda: [m.json() for m in sub.on(f"{lc.root}/state") if "panic" in m.json()["alarms"]],
                      what="panic in the retained state")
    # the alarm's own state change comes first (at once); then the lockdown panic.starts_lockdown starts
    assert states[0]["lockdown"] is None or states[0]["lockdown"]["level"] == "lockdown"
    wait_for(lambda: any("panic" in m.json()["alarms"] and (m.json()["lockdown"] or {}).get("level") == "lockdown"
                         for m in sub.on(f"{lc.root}/state")), what="the lockdown panic started, in the state")
    # Nothing over MQTT clears it: not an "end", not an "ack" or "clear" action.
    for i, action in enumerate(("ack", "clear", "end")):
        operator.publish(f"{lc.root}/cmd/lockdown", command(action, id=f"p-{i}", alarm="panic")
                         if action != "end" else command(action, id=f"p-{i}"))
    wait_for(lambda: len([e for e in lc.events_of(ev.COMMAND_REJECTED) if e.data["command_id"].startswith("p-")]) == 3)
    status = lc.controller.status()
    assert "panic" in status["alarms"] and status["lockdown"] is not None
    assert lc.controller.core.acknowledge_alarm("panic", "Ms Office").ok     # the panel's way


@pytest.mark.parametrize("publish_names", [True, False])
def test_visitor_names_on_mqtt_follow_the_config(linked, subscriber, publish_names):
    lc = linked(publish_visitor_names=publish_names).ready()
    sub = subscriber(topics=(f"{lc.root}/events",))
    rid = lc.controller.press().request_id
    visitor = {"name": "Jane Doe", "purpose": "delivery", "id_checked": True}
    assert lc.controller.approve(rid, "Ms Office", visitor=visitor).ok
    got = wait_for(lambda: [e for e in sub.events(lc.root) if e["type"] == ev.ENTRY_APPROVED], what="approval")[0]
    if publish_names:
        assert got["visitor"] == visitor
    else:
        assert got["visitor"] == {"purpose": "delivery", "id_checked": True, "name_withheld": True}
        assert not any("Jane" in m.payload.decode() for m in sub.on(f"{lc.root}/events"))
    assert lc.events_of(ev.ENTRY_APPROVED)[0].data["visitor"]["name"] == "Jane Doe"     # the journal keeps it
