"""The example campus ACL in systemd/mosquitto/ does what docs/mqtt.md promises, on a real broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller import events as ev
from tests.support_mqtt import Linked, Subscriber, start_broker, wait_for

pytestmark = pytest.mark.broker
EXAMPLES = Path(__file__).resolve().parent.parent / "systemd" / "mosquitto"
ACCOUNTS = {"entry-main-entrance": "pw-main", "entry-gym-door": "pw-gym", "district-ro": "pw-ro",
            "district-operator": "pw-op"}
CAMPUS = "lincoln-elementary"


@pytest.fixture(scope="module")
def campus_broker(tmp_path_factory):
    b = start_broker(tmp_path_factory.mktemp("campus"), acl=(EXAMPLES / "campus.acl").read_text(),
                     accounts=ACCOUNTS)
    yield b
    b.stop()


def test_example_acl_controller_district_and_operator(campus_broker, tmp_path, clock):
    ro = Subscriber(campus_broker, user="district-ro")
    op = Subscriber(campus_broker, user="district-operator", topics=())
    lc = Linked(campus_broker, tmp_path / "main", clock=clock, campus=CAMPUS, door="main-entrance",
                user="entry-main-entrance").ready()
    try:
        lc.wait_delivered()
        wait_for(lambda: ro.events(lc.root), what="district-ro sees the controller's events")
        start = json.dumps({"action": "start", "id": "ro", "reason": "x", "by": "RO"})
        ro.publish(f"{lc.root}/cmd/lockdown", start)                 # read-only: dropped by the ACL
        op.publish(f"{lc.root}/cmd/lockdown", json.dumps({"action": "start", "id": "op", "by": "Operator"}))
        started = wait_for(lambda: lc.events_of(ev.LOCKDOWN_STARTED), what="operator lockdown")
        assert [e.data["command_id"] for e in started] == ["op"]
    finally:
        lc.close()
        ro.close()
        op.close()


def test_example_acl_keeps_a_controller_inside_its_own_root(campus_broker, tmp_path, clock):
    """A controller account used for another door cannot publish there; its events stay in the outbox."""
    lc = Linked(campus_broker, tmp_path / "gym", clock=clock, campus=CAMPUS, door="gym-door",
                user="entry-main-entrance")
    watcher = Subscriber(campus_broker, user="district-ro")
    try:
        error = wait_for(lambda: lc.link.health()["last_error"], what="the refusal")
        assert "refused event publish" in error
        assert lc.journal.outbox_depth() >= 1 and lc.link.health()["delivered_count"] == 0
        assert not watcher.events(lc.root)
    finally:
        lc.close()
        watcher.close()


def test_example_campus_conf_runs_and_a_controller_connects_over_tls(tmp_path, clock):
    """systemd/mosquitto/campus.conf as shipped (paths and ports moved into the test's temp dir)."""
    from tests.support_mqtt import Broker, free_port, make_certs

    certs = make_certs(tmp_path / "certs")
    broker = Broker(tmp_path / "broker", acl=(EXAMPLES / "campus.acl").read_text(), accounts=ACCOUNTS)
    conf = (EXAMPLES / "campus.conf").read_text()
    for old, new in (("/etc/mosquitto/entry/passwd", str(broker.dir / "passwd")),
                     ("/etc/mosquitto/entry/acl", str(broker.dir / "acl")),
                     ("/etc/mosquitto/certs/ca.crt", str(certs.ca)),
                     ("/etc/mosquitto/certs/campus-broker.crt", str(certs.server_cert)),
                     ("/etc/mosquitto/certs/campus-broker.key", str(certs.server_key)),
                     ("/var/lib/mosquitto/", f"{broker.dir}/"),
                     ("listener 8883", f"listener {broker.port} 127.0.0.1"),
                     ("listener 1883 127.0.0.1", f"listener {free_port()} 127.0.0.1")):
        assert old in conf, f"example config changed: {old} not found"
        conf = conf.replace(old, new)
    broker.conf.write_text(("user root\n" if broker.conf.read_text().startswith("user root") else "") + conf)
    broker.start()
    lc = None
    try:
        lc = Linked(broker, tmp_path / "state", clock=clock, campus=CAMPUS, door="main-entrance",
                    user="entry-main-entrance", tls_ca_file=str(certs.ca))
        wait_for(lambda: lc.link.health()["connected"], what="TLS connection to the example broker")
        lc.wait_delivered()
    finally:
        if lc is not None:
            lc.close()
        broker.stop()


def test_example_bridge_carries_events_out_and_lockdown_in(tmp_path, clock):
    """campus broker + systemd/mosquitto/district-bridge.conf -> district broker (TLS, district.acl)."""
    from tests.support_mqtt import Broker, make_certs

    certs = make_certs(tmp_path / "certs")
    district_accounts = {"bridge-lincoln-elementary": "pw-bridge", "district-ro": "pw-ro",
                         "district-operator": "pw-op"}
    district = start_broker(tmp_path / "district", tls=certs, accounts=district_accounts,
                            acl=(EXAMPLES / "district.acl").read_text())
    campus = Broker(tmp_path / "campus", acl=(EXAMPLES / "campus.acl").read_text(), accounts=ACCOUNTS)
    bridge = (EXAMPLES / "district-bridge.conf").read_text()
    for old, new in (("district-mqtt.example.org:8883", f"127.0.0.1:{district.port}"),
                     ("remote_password CHANGE-ME-AT-INSTALL", "remote_password pw-bridge"),
                     ("/etc/mosquitto/certs/district-ca.crt", str(certs.ca))):
        assert old in bridge, f"example bridge changed: {old} not found"
        bridge = bridge.replace(old, new)
    # the district broker demands client certificates in this test; the bridge presents one
    bridge += f"bridge_certfile {certs.client_cert}\nbridge_keyfile {certs.client_key}\n"
    campus.conf.write_text(campus.conf.read_text() + bridge)
    campus.start()
    lc = None
    ro = op = None
    try:
        ro = Subscriber(district, user="district-ro", tls=certs)
        op = Subscriber(district, user="district-operator", topics=(), tls=certs)
        lc = Linked(campus, tmp_path / "state", clock=clock, campus=CAMPUS, door="main-entrance",
                    user="entry-main-entrance").ready()
        lc.controller.press()
        lc.wait_delivered()
        wait_for(lambda: any(e["type"] == ev.BUZZER_PRESSED for e in ro.events(lc.root)), timeout=60,
                 what="the event at the district broker")
        wait_for(lambda: ro.on(f"{lc.root}/status"), what="status bridged")
        op.publish(f"{lc.root}/cmd/lockdown",
                   json.dumps({"action": "start", "id": "district-1", "by": "District Officer"}))
        started = wait_for(lambda: lc.events_of(ev.LOCKDOWN_STARTED), timeout=60, what="bridged lockdown")
        assert started[0].data["command_id"] == "district-1"
        assert not [m for m in ro.messages if "/cmd/" in m.topic and m.topic != f"{lc.root}/cmd/lockdown"]
    finally:
        for client in (ro, op):
            if client is not None:
                client.close()
        if lc is not None:
            lc.close()
        campus.stop()
        district.stop()
