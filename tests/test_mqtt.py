"""MQTT link against a real private Mosquitto: contract, schemas, commands, ACL, auth."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest

from controller import events as ev
from controller.camera import CameraError
from controller.mqtt import MqttLink, parse_command, CommandError

from support_mqtt import (Linked, Subscriber, broker, dedupe, load_schema, wait_for)  # noqa: F401

pytestmark = pytest.mark.broker

EVENT = load_schema("event")
STATE = load_schema("state")
STATUS = load_schema("status")
COMMAND = load_schema("lockdown-command")


def validate(instance: object, schema: dict) -> None:
    jsonschema.validate(instance, schema, format_checker=jsonschema.FormatChecker())


@pytest.fixture
def linked(broker, tmp_path, clock):
    made: list[Linked] = []

    def make(state_dir: Path | None = None, **kwargs) -> Linked:
        kwargs.setdefault("clock", clock)
        lc = Linked(broker, state_dir or tmp_path / f"state{len(made)}", **kwargs)
        made.append(lc)
        return lc

    yield make
    for lc in made:
        lc.close()


@pytest.fixture
def subscriber(broker):
    subs: list[Subscriber] = []

    def make(**kwargs) -> Subscriber:
        s = Subscriber(broker, **kwargs)
        subs.append(s)
        return s

    yield make
    for s in subs:
        s.close()


def command(action: str = "start", **extra: object) -> str:
    body = {"action": action, "id": extra.pop("id", "cmd-1"), "reason": "drill", "by": "District Officer"}
    body.update(extra)
    return json.dumps(body)


class BrokenCamera:
    name = "broken"

    def start(self) -> None: ...
    def close(self) -> None: ...

    def capture_jpeg(self) -> bytes:
        raise CameraError("lens cap on")


def wait_event(lc: Linked, type_: str, count: int = 1) -> list:
    return wait_for(lambda: (e := lc.events_of(type_)) and len(e) >= count and e, what=f"{count} {type_}")


# ---------------------------------------------------------------- the feed


def test_every_event_type_arrives_schema_valid_in_seq_order(linked, subscriber, clock, tmp_path):
    sub = subscriber()
    lc = linked()
    core, c = lc.controller.core, lc.controller
    operator = subscriber(user="operator", topics=())

    rid = c.press().request_id                                   # buzzer_pressed (+ snapshot_captured)
    wait_event(lc, ev.SNAPSHOT_CAPTURED)
    clock.advance(3)
    c.press()                                                    # buzzer_repeated
    assert c.approve(rid, "Ms Office").ok                        # entry_approved, door_unlocked
    core.door_changed(True)                                      # door_opened
    core.door_changed(False)                                     # door_closed, door_locked
    c.snapshots.camera = BrokenCamera()
    clock.advance(10)
    rid2 = c.press().request_id                                  # camera_failed
    wait_event(lc, ev.CAMERA_FAILED)
    assert c.deny(rid2, "Ms Office").ok                          # entry_denied
    clock.advance(10)
    c.press()
    clock.advance(61)
    core.tick()                                                  # ring_expired
    assert not c.approve("no-such-ring", "Ms Office").ok         # action_refused
    core.tamper_changed(True)                                    # alarm_raised
    core.tamper_changed(False)                                   # alarm_cleared
    operator.publish(f"{lc.root}/cmd/lockdown", command("start"))   # lockdown_started (over MQTT)
    wait_event(lc, ev.LOCKDOWN_STARTED)
    assert c.end_lockdown("Principal", "drill over").ok          # lockdown_ended (panel)
    operator.publish(f"{lc.root}/cmd/lockdown", b"{not json")    # command_rejected
    wait_event(lc, ev.COMMAND_REJECTED)
    # The core's fault-recovery path is the core tests' business; here only its wire form matters.
    lc.journal.append(ev.JOURNAL_RECOVERED, fault="simulated")
    lc.wait_delivered()
    lc.close()                                                   # journals controller_stopped
    # controller_stopped is journaled after the link stops: the next start publishes it.
    lc2 = linked(door=lc.door, state_dir=lc.settings.storage.state_dir)
    wait_event(lc2, ev.CONTROLLER_STARTED, 2)
    lc2.wait_delivered()

    root = lc.root
    got = sub.events(root)
    for e in got:
        validate(e, EVENT)
    unique = dedupe(got)
    seqs = [e["seq"] for e in unique]
    assert seqs == list(range(1, lc2.journal.last_seq + 1)), "every event once, in seq order, no gaps"
    missing = set(ev.ALL_TYPES) - {e["type"] for e in unique}
    assert not missing, f"never published: {sorted(missing)}"
    by_seq = {e["seq"]: e for e in unique}
    for stored in lc2.journal.query(limit=1000):
        assert by_seq[stored.seq] == json.loads(stored.to_json()), "wire form is Event.to_dict()"
    assert [e for e in unique if e["type"] == ev.CONTROLLER_STARTED][-1]["previous_stop"] == "clean"
    # snapshot JPEG published with the event's size and sha256
    snap = next(e for e in got if e["type"] == ev.SNAPSHOT_CAPTURED)
    jpeg = sub.on(f"{root}/snapshot/{snap['request_id']}")
    assert jpeg and jpeg[0].payload[:2] == b"\xff\xd8"
    assert len(jpeg[0].payload) == snap["size"]
    assert hashlib.sha256(jpeg[0].payload).hexdigest() == snap["sha256"]
