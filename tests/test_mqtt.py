"""MQTT link against a real private Mosquitto: contract, schemas, commands, ACL, auth."""

from __future__ import annotations

import hashlib
import json

import jsonschema
import pytest

from controller import events as ev
from controller.camera import CameraError
from controller.mqtt import Backoff, CommandError, parse_command
from tests.support_mqtt import Linked, dedupe, load_schema, validate, wait_for

pytestmark = pytest.mark.broker

COMMAND = load_schema("lockdown-command")

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
    lc = linked().ready()
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
    operator.publish(f"{lc.root}/cmd/lockdown", command("start", level="secure"))   # lockdown_started (MQTT)
    wait_event(lc, ev.LOCKDOWN_STARTED)
    assert c.start_lockdown("Principal", "threat inside", level="lockdown").ok   # lockdown_level_changed
    assert c.end_lockdown("Principal", "drill over").ok          # lockdown_ended (panel)
    operator.publish(f"{lc.root}/cmd/lockdown", b"{not json")    # command_rejected
    wait_event(lc, ev.COMMAND_REJECTED)
    lc.link.intake.detail_per_interval = 0                       # beyond the rate: summarized
    lc.link.intake.interval_seconds = 0.5
    operator.publish(f"{lc.root}/cmd/lockdown", b"[]")           # commands_rejected
    wait_event(lc, ev.COMMANDS_REJECTED)
    # The core's fault-recovery path is the core tests' business; here only its wire form matters.
    lc.journal.append(ev.JOURNAL_RECOVERED, fault="simulated")
    lc.journal.append(ev.JOURNAL_ACCEPTED, actor="Ada Admin", source="panel", epoch=lc.journal.epoch,
                      previous_epochs=["0" * 32])
    # Panel sign-in and account audit events, in the shapes web/auth.py and web/admin.py write.
    lc.journal.append(ev.LOGIN_SUCCEEDED, username="sam", address="10.0.0.5", session="0123456789abcdef")
    lc.journal.append(ev.LOGIN_FAILED, username="sam", address="10.0.0.5")
    lc.journal.append(ev.LOGIN_THROTTLED, username="sam", address="10.0.0.5", limits=["user"])
    lc.journal.append(ev.ACCOUNT_CHANGED, actor="Ada Admin", action="add", username="kim", role="staff")
    # Intercom audit events, in the shapes intercom/engine.py and web/intercom_audit.py write.
    who = {"actor": "Sam Staff", "actor_username": "sam", "viewer": "0123456789abcdef"}
    lc.journal.append(ev.LIVE_VIEW_STARTED, mode="webrtc", reason="ring", **who)
    lc.journal.append(ev.TALK_STARTED, **who)
    lc.journal.append(ev.TALK_ENDED, reason="released", seconds=3.5, **who)
    lc.journal.append(ev.LIVE_VIEW_ENDED, mode="webrtc", reason="hangup", seconds=20.0, **who)
    lc.journal.append(ev.INTERCOM_REFUSED, actor="Sam Staff", actor_username="sam", category="sdp_too_large",
                      status=413, reason="the offer is larger than 20000 bytes")
    lc.journal.append(ev.INTERCOM_REFUSALS, total=57, reasons={"rate": 57}, since="2026-11-29T08:00:00Z",
                      seconds=60.0)
    lc.wait_delivered()
    lc.close()                                                   # journals controller_stopped
    # controller_stopped is journaled after the link stops: the next start publishes it.
    lc2 = linked(door=lc.door, state_dir=lc.settings.storage.state_dir)
    wait_event(lc2, ev.CONTROLLER_STARTED, 2)
    lc2.wait_delivered()

    root = lc.root
    got = sub.events(root)
    for e in got:
        validate(e, "event")
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


def test_status_and_state_are_retained_and_clean_stop_publishes_offline(linked, subscriber, broker):
    lc = linked()
    root = lc.root
    wait_for(lambda: lc.link.health()["connected"], what="link connected")
    lc.wait_delivered()
    late = subscriber(topics=(f"{root}/status", f"{root}/state"))   # joins after: gets retained copies
    status = wait_for(lambda: late.on(f"{root}/status"), what="retained status")
    assert status[-1].retain and status[-1].payload == b"online"
    validate(status[-1].payload.decode(), "status")
    state = wait_for(lambda: late.on(f"{root}/state"), what="retained state")[-1].json()
    validate(state, "state")
    assert state["door"] == "locked" and state["lockdown"] is None and state["door_id"] == lc.door

    for _ in range(20):
        lc.controller.core.tick()                            # timer ticks that change nothing
    rid = lc.controller.press().request_id                   # a change re-publishes state
    fresh = wait_for(lambda: [m.json() for m in late.on(f"{root}/state") if m.json()["ringing"] == rid],
                     what="state with the ring")
    validate(fresh[-1], "state")
    states = [{k: v for k, v in m.json().items() if k != "ts"} for m in late.on(f"{root}/state")]
    assert all(a != b for a, b in zip(states, states[1:], strict=False)), "state is published on change only"
    assert fresh[-1]["last_seq"] >= lc.events_of(ev.BUZZER_PRESSED)[0].seq

    lc.wait_delivered()                                      # acknowledgements are committed in batches
    health = lc.link.health()
    assert health["connected"] and health["last_error"] is None and health["delivered_count"] >= 2
    lc.close()
    wait_for(lambda: late.on(f"{root}/status")[-1].payload == b"offline", what="offline on clean stop")
    fresh_sub = subscriber(topics=(f"{root}/status",))
    assert wait_for(lambda: fresh_sub.on(f"{root}/status"))[-1].payload == b"offline"


HOSTILE = [
    ("malformed JSON", b"{not json", "malformed"),
    ("not UTF-8", b"\xff\xfe\x00", "malformed"),
    ("not an object", b'["start"]', "malformed"),
    ("missing field", json.dumps({"action": "start", "id": "x"}).encode(), "missing field 'by'"),
    ("wrong type", json.dumps({"action": "start", "id": 7, "by": "A"}).encode(), "'id' must be a string"),
    ("empty actor", json.dumps({"action": "start", "id": "x", "by": "  "}).encode(), "must not be empty"),
    ("unknown action", command("unlock").encode(), "unknown action"),
    ("unknown field", command("start", door="open").encode(), "unknown field"),
    ("oversized", command("start", reason="x" * 2000).encode(), "too large"),
    ("end not allowed", command("end").encode(), "not allowed"),
]


def test_hostile_commands_change_nothing_and_are_journaled(linked, subscriber):
    lc = linked().ready()
    operator = subscriber(user="operator", topics=())
    before = lc.controller.core.status()
    topic = f"{lc.root}/cmd/lockdown"
    for _name, payload, _reason in HOSTILE:
        operator.publish(topic, payload)
    operator.publish(topic, command("start", id="retained-1"), retain=True)   # retained: never acted on
    rejected = wait_event(lc, ev.COMMAND_REJECTED, len(HOSTILE) + 1)
    operator.publish(topic, b"", retain=True)               # clear the retained message again
    reasons = [e.data["reason"] for e in rejected]
    for (name, _payload, expected), reason in zip(HOSTILE, reasons, strict=False):
        assert expected in reason, f"{name}: {reason}"
    assert reasons[len(HOSTILE)].startswith("retained")
    assert all(e.data["source"] == "mqtt" and e.data["topic"] == topic for e in rejected)
    assert rejected[len(HOSTILE)].data["command_id"] == "retained-1"
    after = lc.controller.core.status()
    assert after == before and not lc.controller.core.in_lockdown
    assert not lc.events_of(ev.LOCKDOWN_STARTED) and not lc.events_of(ev.DOOR_UNLOCKED)
    assert lc.link.health()["commands_rejected"] >= len(HOSTILE) + 1


@pytest.mark.parametrize("name,payload,expected", HOSTILE)
def test_command_parser_refuses(name, payload, expected):
    with pytest.raises(CommandError, match=expected.replace("(", r"\(")):
        parse_command(payload, allow_end=False)
    try:   # the schema agrees that these are not valid commands (except the config-only refusal)
        data = json.loads(payload)
    except ValueError:
        return
    if name != "end not allowed":
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, COMMAND)


def test_valid_commands_match_the_schema():
    for action in ("start", "end"):
        payload = command(action)
        validate(json.loads(payload), "lockdown-command")
        assert parse_command(payload.encode(), allow_end=True)["action"] == action


def test_lockdown_command_starts_lockdown_and_approvals_are_refused(linked, subscriber):
    lc = linked().ready()
    sub = subscriber(topics=(f"{lc.root}/state", f"{lc.root}/events"))
    operator = subscriber(user="operator", topics=())
    operator.publish(f"{lc.root}/cmd/lockdown", command("start", id="cmd-42"))
    started = wait_event(lc, ev.LOCKDOWN_STARTED)[0]
    assert started.actor == "District Officer"
    assert started.data["source"] == "mqtt" and started.data["command_id"] == "cmd-42"
    assert lc.controller.core.in_lockdown
    wait_for(lambda: any(m.json()["lockdown"] for m in sub.on(f"{lc.root}/state")), what="state lockdown")
    wait_for(lambda: any(e["type"] == ev.LOCKDOWN_STARTED and e["command_id"] == "cmd-42"
                         for e in sub.events(lc.root)), what="the lockdown_started acknowledgement")

    rid = lc.controller.press().request_id
    decision = lc.controller.approve(rid, "Ms Office") if rid else None
    assert decision is None or (not decision.ok and decision.code == "lockdown")
    unlock = lc.controller.unlock_now("Ms Office", "try")
    assert not unlock.ok and unlock.code == "lockdown"
    assert not lc.controller.core.strike_energized and not lc.events_of(ev.DOOR_UNLOCKED)

    # district-wide topic: same effect; a repeated start is answered, not silently dropped
    operator.publish("entry/all/cmd/lockdown", command("start", id="cmd-43"))
    answer = wait_for(lambda: [e for e in lc.events_of(ev.COMMAND_REJECTED) if e.data["command_id"] == "cmd-43"])
    assert answer[0].data["reason"].startswith("already")
    operator.publish(f"{lc.root}/cmd/lockdown", command("end", id="cmd-44"))   # not allowed by default
    wait_for(lambda: [e for e in lc.events_of(ev.COMMAND_REJECTED) if e.data["command_id"] == "cmd-44"])
    assert lc.controller.core.in_lockdown


def test_remote_lockdown_end_only_when_config_allows(linked, subscriber):
    lc = linked(allow_remote_lockdown_end=True).ready()
    operator = subscriber(user="operator", topics=())
    operator.publish("entry/all/cmd/lockdown", command("start", id="a1"))
    wait_event(lc, ev.LOCKDOWN_STARTED)
    operator.publish(f"{lc.root}/cmd/lockdown", command("end", id="a2"))
    ended = wait_event(lc, ev.LOCKDOWN_ENDED)[0]
    assert ended.data["source"] == "mqtt" and ended.data["command_id"] == "a2"
    assert not lc.controller.core.in_lockdown


UNLOCK_TOPICS = ["{root}/cmd/unlock", "{root}/unlock", "{root}/cmd/door", "{root}/cmd/approve",
                 "{root}/cmd/open", "entry/all/cmd/unlock", "{root}/cmd/lockdown/unlock", "{root}/set"]


def test_no_topic_can_unlock_the_door(linked, subscriber):
    lc = linked().ready()
    rid = lc.controller.press().request_id                 # a pending ring an attacker would love to approve
    admin = subscriber(user="admin", topics=())             # may publish anywhere, unlike real accounts
    for t in UNLOCK_TOPICS:
        for body in (json.dumps({"action": "unlock", "id": "u", "by": "x", "request_id": rid}), "unlock", "1"):
            admin.publish(t.format(root=lc.root), body)
    admin.publish(f"{lc.root}/cmd/lockdown", command("unlock", id="barrier"))   # processed in order
    wait_for(lambda: [e for e in lc.events_of(ev.COMMAND_REJECTED) if e.data["command_id"] == "barrier"])
    assert not lc.controller.core.strike_energized
    assert not lc.events_of(ev.DOOR_UNLOCKED) and not lc.events_of(ev.ENTRY_APPROVED)
    assert lc.controller.core.status()["ring"]["request_id"] == rid
    assert set(lc.link.command_topics) == {f"{lc.root}/cmd/lockdown", "entry/all/cmd/lockdown"}


def test_district_read_only_account_can_watch_but_not_command(linked, subscriber):
    lc = linked().ready()
    district = subscriber(user="district")
    lc.controller.press()
    wait_for(lambda: any(e["type"] == ev.BUZZER_PRESSED for e in district.events(lc.root)),
             what="district sees events")
    district.publish(f"{lc.root}/cmd/lockdown", command("start", id="ro-1"))     # ACL drops it
    district.publish("entry/all/cmd/lockdown", command("start", id="ro-2"))
    operator = subscriber(user="operator", topics=())
    operator.publish(f"{lc.root}/cmd/lockdown", b"barrier")
    wait_event(lc, ev.COMMAND_REJECTED)
    assert not lc.controller.core.in_lockdown and not lc.events_of(ev.LOCKDOWN_STARTED)
    assert [e.data["command_id"] for e in lc.events_of(ev.COMMAND_REJECTED)] == [None]


def test_anonymous_and_wrong_password_are_refused(linked, subscriber, broker):
    anonymous = subscriber(user="")
    assert anonymous.refused and not anonymous.connected.is_set()
    wrong = subscriber(user="district", password="guess")
    assert wrong.refused
    lc = linked(user="ctl", password_file=str(broker.password_file("district")))    # wrong secret
    wait_for(lambda: lc.link.health()["last_error"], what="the refusal to be reported")
    health = lc.link.health()
    assert not health["connected"] and "refused" in health["last_error"]
    watcher = subscriber(topics=(f"{lc.root}/status",))
    lc.controller.press()
    assert lc.journal.outbox_depth() >= 2 and not watcher.on(f"{lc.root}/status")


def test_backoff_has_jitter_and_a_cap():
    class Recorder:
        delays: list[float] = []

        def reconnect_delay_set(self, lo: float, hi: float) -> None:
            assert lo == hi
            self.delays.append(lo)

    rec = Recorder()
    for rng in (0.0, 1.0):
        backoff, rec.delays = Backoff(1.0, 8.0, lambda r=rng: r), []
        for _ in range(6):
            backoff.schedule(rec)
        caps = [1, 2, 4, 8, 8, 8]
        expected = [c / 2 for c in caps] if rng == 0.0 else caps
        assert rec.delays == expected
