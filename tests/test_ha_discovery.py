"""Home Assistant MQTT discovery (mqtt.home_assistant): config, payload schema, real broker.

The broker test plays Home Assistant honestly: it reads the retained discovery configs with
the example campus ACL's home-assistant account, subscribes to exactly the topics those
configs name, and evaluates their Jinja value templates (as Home Assistant does, in a
sandbox, with ``value_json``) against the real payloads the daemon publishes.
"""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from jinja2.sandbox import SandboxedEnvironment

from controller import config as cfg
from controller.mqtt.discovery import COMPONENTS, configs
from tests.support_mqtt import Linked, Subscriber, example_campus_broker, load_schema, wait_for

CAMPUS, DOOR = "lincoln-elementary", "main-entrance"
ROOT = f"entry/{CAMPUS}/{DOOR}"
NODE = f"entry-{CAMPUS}-{DOOR}"
TOPIC = re.compile(rf"^homeassistant/(binary_sensor|sensor|image)/{NODE}/([a-z_]+)/config$")
EXPECTED = {"binary_sensor": {"door_open", "ringing", "lockdown", "panic", "online"}, "sensor": {"last_event"},
            "image": {"snapshot"}}
# Every field Home Assistant reads as a command (full names and discovery abbreviations):
COMMANDISH = re.compile(r"(command|cmd|payload_(lock|unlock|open|press|turn_on|turn_off)"
                        r"|pl_(lock|unlk|open|prs|ton|toff))")
TEMPLATES = SandboxedEnvironment()


def _schema_validator(component: str | None = None):
    schema = load_schema("ha-discovery")
    if component is not None:               # exactly this platform's definition
        schema = {**schema, "oneOf": [{"$ref": f"#/$defs/{component}"}]}
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def _check_payloads(found: dict[str, dict]) -> None:
    """Schema per platform, one device, unique ids, availability, no command anywhere."""
    kinds: dict[str, set[str]] = {}
    for topic, config in found.items():
        m = TOPIC.match(topic)
        assert m, topic
        component, object_id = m.groups()
        kinds.setdefault(component, set()).add(object_id)
        _schema_validator(component).validate(config)
        _schema_validator().validate(config)
        assert config["unique_id"] == f"{NODE}-{object_id}"
        assert config["device"]["identifiers"] == [NODE]
        assert not [k for k in _keys(config) if COMMANDISH.search(k)], config
        if object_id != "online":
            assert (config["availability_topic"], config["payload_available"], config["payload_not_available"]) \
                == (f"{ROOT}/status", "online", "offline")
    assert kinds == EXPECTED and set(kinds) <= set(COMPONENTS)
    assert len({json.dumps(c["device"], sort_keys=True) for c in found.values()}) == 1


def _keys(value) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in _keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def test_home_assistant_is_off_by_default_and_its_keys_are_strict():
    assert cfg.Settings().mqtt.home_assistant is False
    assert cfg.Settings().mqtt.home_assistant_prefix == "homeassistant"
    on = cfg.from_dict({"mqtt": {"home_assistant": True, "home_assistant_prefix": "ha"}})
    assert on.mqtt.home_assistant and on.mqtt.home_assistant_prefix == "ha"
    with pytest.raises(cfg.ConfigError) as bad:
        cfg.from_dict({"mqtt": {"home_assistant": "yes", "home_assistant_prefix": "Home/Assistant",
                                "home_asistant": True}})
    errors = "\n".join(bad.value.errors)
    assert "mqtt.home_assistant: 'yes' is not true or false" in errors
    assert "mqtt.home_assistant_prefix: 'Home/Assistant' is not a slug" in errors
    assert "mqtt.home_asistant: unknown key" in errors


def test_discovery_payloads_match_the_schema_and_offer_no_command():
    _check_payloads(configs("homeassistant", CAMPUS, DOOR, "Lincoln Elementary", "Main entrance", ROOT))


def test_the_schema_refuses_command_platforms_and_fields():
    """The schema can fail: a command topic, a lock/switch style payload, a missing device."""
    good = configs("homeassistant", CAMPUS, DOOR, "L", "M", ROOT)
    binary = good[f"homeassistant/binary_sensor/{NODE}/lockdown/config"]
    v = _schema_validator()
    for bad in ({**binary, "command_topic": f"{ROOT}/cmd/lockdown"}, {**binary, "cmd_t": "x"},
                {**binary, "payload_lock": "LOCK"}, {k: x for k, x in binary.items() if k != "device"},
                {**binary, "state_topic": "entry/#"}, {**binary, "device_class": "unlock"}):
        assert not v.is_valid(bad), bad


def _render(template: str | None, payload: bytes) -> str:
    """Home Assistant's value template evaluation: ``value`` and ``value_json`` in a sandbox."""
    text = payload.decode()
    if template is None:
        return text
    return TEMPLATES.from_string(template).render(value=text, value_json=json.loads(text)).strip()


@pytest.mark.broker
def test_discovery_on_a_real_broker_resolves_against_the_daemons_payloads(tmp_path, clock):
    broker = example_campus_broker(tmp_path / "broker")
    broker.start()
    door = other = disco = ha = op = None
    try:
        door = Linked(broker, tmp_path / "door", clock=clock, campus=CAMPUS, door=DOOR, user="entry-main-entrance",
                      home_assistant=True).ready()
        # a door with the default (off) publishes no discovery at all
        other = Linked(broker, tmp_path / "other", clock=clock, campus=CAMPUS, door="gym-door",
                       user="entry-gym-door").ready()
        disco = Subscriber(broker, user="home-assistant", topics=("homeassistant/#",))
        wait_for(lambda: len(disco.messages) >= 7, what="the retained discovery configs")
        assert all(m.retain for m in disco.messages)
        found = {m.topic: m.json() for m in disco.messages}
        assert not [t for t in found if "gym-door" in t]
        _check_payloads(found)
        disco.close()       # one connection per account: the campus broker binds client ids to usernames

        # Home Assistant subscribes to what the configs name, with its own (read-only) account
        by_id = {t.split("/")[3]: c for t, c in found.items()}
        wanted = sorted({c[k] for c in found.values() for k in ("state_topic", "availability_topic",
                                                                 "json_attributes_topic", "image_topic") if k in c})
        ha = Subscriber(broker, user="home-assistant", topics=tuple(wanted))
        assert not ha.refused

        def value(object_id: str) -> str:
            c = by_id[object_id]
            latest = ha.on(c["state_topic"])
            return _render(c.get("value_template"), latest[-1].payload) if latest else ""

        def binary(object_id: str) -> str | None:
            result = value(object_id)
            c = by_id[object_id]
            return {c["payload_on"]: "on", c["payload_off"]: "off"}.get(result)

        def available() -> bool:
            latest = ha.on(f"{ROOT}/status")
            return bool(latest) and latest[-1].payload.decode() == by_id["ringing"]["payload_available"]

        wait_for(lambda: binary("online") == "on" and available(), what="online and available")
        wait_for(lambda: ha.on(f"{ROOT}/state"), what="the retained state")
        assert [binary(x) for x in ("door_open", "ringing", "lockdown", "panic")] == ["off"] * 4

        door.controller.press()
        wait_for(lambda: binary("ringing") == "on", what="ringing on")
        wait_for(lambda: value("last_event") in ("buzzer_pressed", "snapshot_captured"), what="the last event")
        attrs = json.loads(ha.on(by_id["last_event"]["json_attributes_topic"])[-1].payload)
        assert isinstance(attrs, dict) and attrs["campus"] == CAMPUS      # a JSON dictionary: attributes
        image_topic = re.compile("^" + by_id["snapshot"]["image_topic"].replace("+", "[^/]+") + "$")
        jpeg = wait_for(lambda: [m for m in ha.messages if image_topic.match(m.topic)], what="a snapshot")
        assert jpeg[-1].payload[:2] == b"\xff\xd8"          # raw JPEG bytes, as image_topic expects

        door.station.set_door(True)
        wait_for(lambda: binary("door_open") == "on", what="door open on")
        door.station.set_door(False)
        wait_for(lambda: binary("door_open") == "off", what="door open off")

        op = Subscriber(broker, user="district-operator", topics=())
        op.publish(f"{ROOT}/cmd/lockdown", json.dumps({"action": "start", "id": "ha-1", "by": "Office"}))
        wait_for(lambda: binary("lockdown") == "on", what="lockdown on")
        door.controller.core.set_alarm("panic", True)       # the alarm the panic control raises
        wait_for(lambda: binary("panic") == "on", what="panic on")

        door.close()                                        # clean stop: retained offline
        wait_for(lambda: binary("online") == "off" and not available(), what="offline and unavailable")
    finally:
        for c in (disco, ha, op):
            if c is not None:
                c.close()
        for d in (door, other):
            if d is not None:
                d.close()
        broker.stop()


@pytest.mark.broker
def test_discovery_refused_by_the_acl_changes_nothing_for_the_door(tmp_path, clock):
    """A prefix the campus ACL does not grant: the broker refuses the configs, the door goes on."""
    broker = example_campus_broker(tmp_path / "broker")
    broker.start()
    door = ro = None
    try:
        door = Linked(broker, tmp_path / "door", clock=clock, campus=CAMPUS, door=DOOR, user="entry-main-entrance",
                      home_assistant=True, home_assistant_prefix="elsewhere").ready()
        ro = Subscriber(broker, user="district-ro")
        door.controller.press()
        door.wait_delivered()
        wait_for(lambda: [e for e in ro.events(ROOT) if e["type"] == "buzzer_pressed"], what="the press")
        health = door.link.health()
        assert health["connected"] and health["connects"] == 1 and health["last_error"] is None
        assert "Denied PUBLISH from entry-main-entrance" in broker.log.read_text(errors="replace")
    finally:
        if ro is not None:
            ro.close()
        if door is not None:
            door.close()
        broker.stop()
