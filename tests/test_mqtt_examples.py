"""The example campus ACL in systemd/mosquitto/ does what docs/mqtt.md promises, on a real broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller import events as ev

from support_mqtt import Linked, Subscriber, start_broker, wait_for

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
                user="entry-main-entrance")
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
