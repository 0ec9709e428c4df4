"""Campus -> district topology on two real Mosquitto brokers running the shipped example configs.

systemd/mosquitto/campus.conf + campus.acl + district-bridge.conf on each campus broker,
district.conf + district.acl on the district broker, TLS between them with throwaway
certificates, one account per campus bridge. Doors are real controllers (Linked) on the
campus brokers; district clients are plain MQTT clients on the district broker.
"""

from __future__ import annotations

import json
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from controller import events as ev
from tests.support_district import (
    DISTRICT_ACCOUNTS,
    OTHER_CAMPUS,
    SHIPPED_CAMPUS,
    example_bridged_campus,
    example_district_broker,
)
from tests.support_mqtt import Linked, Subscriber, make_certs, validate_all, wait_for

pytestmark = pytest.mark.broker
A, B = SHIPPED_CAMPUS, OTHER_CAMPUS


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """One district broker and two bridged campus brokers, shared by the tests of this module."""
    base = tmp_path_factory.mktemp("district-net")
    certs = make_certs(base / "certs")
    district = example_district_broker(base / "district", certs)
    district.start()
    campuses = {}
    try:
        for campus in (A, B):
            campuses[campus] = example_bridged_campus(base / campus, campus, certs, district)
            campuses[campus].start()
        watch = Subscriber(district, user="district-ro", topics=("entry/bridges/+/state",), tls=certs)
        try:
            for campus in (A, B):
                wait_for(lambda c=campus: [m for m in watch.on(f"entry/bridges/{c}/state") if m.payload == b"1"],
                         timeout=60, what=f"the {campus} bridge to connect to the district over TLS")
        finally:
            watch.close()
        yield certs, district, campuses
    finally:
        for b in campuses.values():
            b.stop()
        district.stop()


def test_the_bridge_notification_namespace_is_no_campus():
    """entry/bridges/{campus}/state is a campus bridge's link state at the district."""
    from controller import config as cfg

    with pytest.raises(cfg.ConfigError, match="site.campus: 'bridges' is reserved"):
        cfg.from_dict({"site": {"campus": "bridges"}})


def _door(campuses, campus, tmp_path, clock, door="main-entrance"):
    user = {"main-entrance": "entry-main-entrance", "gym-door": "entry-gym-door"}[door]
    return Linked(campuses[campus], tmp_path / f"{campus}-{door}", clock=clock, campus=campus, door=door,
                  user=user).ready()


def _command(action="start", by="District Officer"):
    return json.dumps({"action": action, "id": f"dso-{uuid.uuid4().hex[:8]}", "reason": "test", "by": by})


def test_events_from_campus_doors_reach_a_district_subscriber(net, tmp_path, clock):
    certs, district, campuses = net
    ro = Subscriber(district, user="district-ro", topics=(f"entry/{A}/#", f"entry/{B}/#"), tls=certs)
    doors = [_door(campuses, A, tmp_path, clock), _door(campuses, B, tmp_path, clock)]
    try:
        for door in doors:
            door.controller.press()
            door.wait_delivered()
        for door in doors:
            pressed = wait_for(lambda d=door: [e for e in ro.events(d.root) if e["type"] == ev.BUZZER_PRESSED],
                               timeout=60, what=f"the press at {door.root} to reach the district")
            assert pressed[0]["campus"] == door.settings.site.campus
            wait_for(lambda d=door: [m for m in ro.on(f"{d.root}/status") if m.payload == b"online"],
                     what="the retained status bridged")
            wait_for(lambda d=door: ro.on(f"{d.root}/state"), what="the retained state bridged")
            wait_for(lambda d=door: [m for m in ro.messages if m.topic.startswith(f"{d.root}/snapshot/")],
                     what="the snapshot bridged")
        assert validate_all(ro) >= 6
        assert not [m for m in ro.messages if "/cmd/" in m.topic]      # commands never go out
    finally:
        for door in doors:
            door.close()
        ro.close()


def test_operator_lockdown_at_the_district_reaches_the_door_and_the_answer_comes_back(net, tmp_path, clock):
    certs, district, campuses = net
    ro = Subscriber(district, user="district-ro", tls=certs)
    op = Subscriber(district, user="district-operator", topics=(), tls=certs)
    door = _door(campuses, A, tmp_path, clock)
    campus_watch = Subscriber(campuses[A], user="district-ro", topics=(f"entry/{A}/#",))
    try:
        command = json.loads(_command())
        # refused at the district: the read-only account, and anything but a lockdown topic
        ro.publish(f"{door.root}/cmd/lockdown", _command(by="RO"))
        op.publish(f"{door.root}/cmd/unlock", json.dumps({"action": "unlock", "id": "u1", "by": "Operator"}))
        op.publish(f"{door.root}/cmd/lockdown", json.dumps(command))
        started = wait_for(lambda: door.events_of(ev.LOCKDOWN_STARTED), timeout=60, what="the district lockdown")
        assert [e.data["command_id"] for e in started] == [command["id"]]
        assert door.controller.core.status()["lockdown"] is not None
        answer = wait_for(lambda: [e for e in ro.events(door.root) if e["type"] == ev.LOCKDOWN_STARTED],
                          timeout=60, what="the door's answer at the district")
        assert answer[0]["command_id"] == command["id"] and answer[0]["source"] == "mqtt"
        # only the operator's lockdown crossed the bridge: no unlock topic, no read-only command
        wait_for(lambda: campus_watch.on(f"{door.root}/cmd/lockdown"), what="the command on the campus broker")
        cmds = [m for m in campus_watch.messages if "/cmd/" in m.topic]
        assert [m.topic for m in cmds] == [f"{door.root}/cmd/lockdown"]
        assert json.loads(cmds[0].payload)["id"] == command["id"]
        assert not door.events_of(ev.COMMAND_REJECTED)
    finally:
        door.close()
        for client in (ro, op, campus_watch):
            client.close()


def test_district_wide_lockdown_reaches_doors_on_every_campus(net, tmp_path, clock):
    certs, district, campuses = net
    op = Subscriber(district, user="district-operator", topics=(), tls=certs)
    doors = [_door(campuses, A, tmp_path, clock, "gym-door"), _door(campuses, B, tmp_path, clock, "gym-door")]
    try:
        command = json.loads(_command())
        op.publish("entry/all/cmd/lockdown", json.dumps(command))
        for door in doors:
            started = wait_for(lambda d=door: d.events_of(ev.LOCKDOWN_STARTED), timeout=60,
                               what=f"the district-wide lockdown at {door.root}")
            assert started[0].data["command_id"] == command["id"]
    finally:
        for door in doors:
            door.close()
        op.close()


def test_the_boards_district_wide_lockdown_reaches_doors_on_every_campus(net, tmp_path, clock):
    """The board's publisher (district/board/publisher.py) with the operator's account over TLS:
    one message on entry/all/cmd/lockdown, carried in by both shipped bridges. No database here:
    to the district these doors are unknown, and they lock down all the same."""
    from district.board.config import MqttSettings
    from district.board.publisher import LockdownPublisher
    certs, district, campuses = net
    settings = MqttSettings(host="127.0.0.1", port=district.port, username="district-operator",
                            password_file=str(district.password_file("district-operator")), tls_ca_file=str(certs.ca))
    doors = [_door(campuses, A, tmp_path, clock), _door(campuses, B, tmp_path, clock)]
    try:
        result = LockdownPublisher(settings).publish("start", [], by="Olivia (district)", reason="drill",
                                                     district_wide=True)
        assert result.topics == result.acknowledged == ["entry/all/cmd/lockdown"]
        for door in doors:
            # the door's persistent session may first deliver an earlier test's district-wide
            # lockdown (queued while no door of this account was connected): then the board's
            # command is answered "already: ..." with its id, which proves it arrived all the same
            answer = wait_for(lambda d=door: [e for t in (ev.LOCKDOWN_STARTED, ev.COMMAND_REJECTED)
                                              for e in d.events_of(t) if e.data.get("command_id") == result.command_id],
                              timeout=60, what=f"the board's district-wide lockdown at {door.root}")[0]
            assert answer.actor == "Olivia (district)" and answer.data["source"] == "mqtt"
            assert answer.type == ev.LOCKDOWN_STARTED or answer.data["reason"].startswith("already")
            assert door.controller.core.status()["lockdown"] is not None
    finally:
        for door in doors:
            door.close()


def _client(district, certs, user, password=None):
    """A raw MQTT client on the district broker with an account's credentials."""
    got: list[mqtt.MQTTMessage] = []
    granted: list[list[int]] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv311)
    c.username_pw_set(user, password or DISTRICT_ACCOUNTS[user])
    c.tls_set(ca_certs=str(certs.ca))
    c.on_message = lambda _c, _u, m: got.append(m)
    c.on_subscribe = lambda _c, _u, _mid, codes, _p: granted.append([int(getattr(x, "value", x)) for x in codes])
    c.connect("127.0.0.1", district.port, keepalive=30)
    c.loop_start()
    return c, got, granted


def test_a_campus_bridge_account_stays_inside_its_campus(tmp_path):
    """Campus A's bridge credentials cannot publish into campus B, inject commands, or read B's
    commands; the same credentials can do what the bridge needs (positive controls)."""
    certs = make_certs(tmp_path / "certs")
    district = example_district_broker(tmp_path / "district", certs)   # no bridges: nobody shares the id
    district.start()
    bridge_a = ro = op = None
    try:
        ro = Subscriber(district, user="district-ro", tls=certs)
        op = Subscriber(district, user="district-operator", topics=(), tls=certs)
        bridge_a, got, granted = _client(district, certs, f"bridge-{A}")
        bridge_a.subscribe([(f"entry/{A}/+/cmd/#", 1), (f"entry/{B}/+/cmd/#", 1), ("entry/#", 1)])
        wait_for(lambda: granted, what="the SUBACK")
        for topic, payload in (
                (f"entry/{A}/main-entrance/events", b'{"own":"campus"}'),           # allowed
                (f"entry/{B}/main-entrance/events", b'{"forged":"event"}'),         # another campus
                (f"entry/{B}/main-entrance/state", b'{"forged":"state"}'),
                (f"entry/{B}/main-entrance/status", b"offline"),
                (f"entry/{A}/main-entrance/cmd/lockdown", _command().encode()),     # commands: never
                (f"entry/{B}/main-entrance/cmd/lockdown", _command().encode()),
                ("entry/all/cmd/lockdown", _command().encode()),
                (f"entry/bridges/{B}/state", b"0")):
            bridge_a.publish(topic, payload, qos=1).wait_for_publish(timeout=15)
        sent = {}
        for topic in (f"entry/{B}/main-entrance/cmd/lockdown", f"entry/{A}/main-entrance/cmd/lockdown",
                      "entry/all/cmd/lockdown"):
            sent[topic] = _command()
            op.publish(topic, sent[topic])
        wait_for(lambda: len(got) >= 2 and len(ro.messages) >= 4, what="the allowed publishes at the district")
        time.sleep(1.0)         # give anything the ACL wrongly let through time to arrive too
        # district-ro saw the bridge's own-campus event and the operator's three commands, nothing else
        assert sorted((m.topic, m.payload.decode()) for m in ro.messages) == sorted(
            [(f"entry/{A}/main-entrance/events", '{"own":"campus"}'), *sent.items()])
        # the bridge account read its own campus's and the district-wide commands, never campus B's
        assert sorted((m.topic, m.payload.decode()) for m in got) == sorted(
            (t, p) for t, p in sent.items() if not t.startswith(f"entry/{B}/"))
        # a bridge password is no district-ro: a wrong one is refused outright
        refused = Subscriber(district, user=f"bridge-{A}", password="wrong", tls=certs, topics=())
        assert refused.refused
        refused.close()
    finally:
        for c in (ro, op):
            if c is not None:
                c.close()
        if bridge_a is not None:
            bridge_a.disconnect()
            bridge_a.loop_stop()
        district.stop()


def test_a_bridge_that_cannot_verify_the_district_certificate_carries_nothing(tmp_path, clock):
    certs = make_certs(tmp_path / "certs")
    district = example_district_broker(tmp_path / "district", certs)
    district.start()
    campus = example_bridged_campus(tmp_path / "campus", A, certs, district, bridge_ca=certs.wrong_ca)
    campus.start()
    ro = door = None
    try:
        ro = Subscriber(district, user="district-ro", tls=certs)
        door = Linked(campus, tmp_path / "door", clock=clock, campus=A, door="main-entrance",
                      user="entry-main-entrance").ready()
        door.controller.press()
        door.wait_delivered()
        wait_for(lambda: campus.log.read_text(errors="replace").count("certificate verify failed") >= 2,
                 timeout=30, what="the bridge to fail verification (and retry)")
        assert not ro.messages
        assert "Bridge bridge-lincoln-elementary sending CONNECT" in campus.log.read_text(errors="replace")
    finally:
        if door is not None:
            door.close()
        if ro is not None:
            ro.close()
        campus.stop()
        district.stop()


def test_the_bridge_reconnects_after_a_district_restart_and_queued_events_arrive(net, tmp_path, clock):
    """District broker down while a door keeps ringing: the campus broker queues the bridged QoS 1
    events, the bridge reconnects when the district returns, and every one arrives."""
    certs, district, campuses = net
    door = _door(campuses, A, tmp_path, clock)
    # a persistent district session: the district keeps it (and queues for it) across its restart
    sub = Subscriber(district, user="district-ro", topics=(f"{door.root}/events", f"entry/bridges/{A}/state"),
                     clean=False, tls=certs)
    try:
        door.controller.press()
        door.wait_delivered()
        wait_for(lambda: sub.events(door.root), timeout=60, what="the first event at the district")
        before = door.journal.last_seq
        district.stop()
        for _ in range(3):
            door.controller.press()
            clock.advance(120)                        # ring expires: more events while the district is away
            door.controller.core.tick()
        door.wait_delivered()                         # on the campus broker; the bridge is down
        queued = [e for e in reversed(door.journal.query(limit=1000)) if e.seq > before]
        assert len(queued) >= 6
        with sub.lock:
            sub.messages.clear()
        district.start()
        wait_for(lambda: [m for m in sub.on(f"entry/bridges/{A}/state") if m.payload == b"1"], timeout=90,
                 what="the bridge to reconnect to the restarted district")
        wanted = {e.id for e in queued}
        wait_for(lambda: wanted <= {e["id"] for e in sub.events(door.root)}, timeout=90,
                 what="every event queued during the district outage")
        seqs = sorted({e["seq"] for e in sub.events(door.root) if e["id"] in wanted})
        assert seqs == list(range(before + 1, before + 1 + len(queued)))
    finally:
        door.close()
        sub.close()
