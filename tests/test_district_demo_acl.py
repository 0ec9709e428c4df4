"""The district demo's broker runs the SHIPPED systemd/mosquitto/campus.acl (district/demo_services.py
render_acl), not an ACL of its own: per-door accounts for every demo campus, the district accounts as
shipped. Proven on a real Mosquitto: the operator's district-wide lockdown reaches every door (the demo's
old hand-written ACL refused the operator ``entry/all/cmd/lockdown``), a door reads only its own commands
and cannot write another campus's topics."""

from __future__ import annotations

import time

import pytest

from district.demo_services import CAMPUS_ACL, DemoError, door_account, render_acl
from tests.support_mqtt import Subscriber, start_broker, wait_for

pytestmark = [pytest.mark.broker]

CAMPUSES = ["lincoln-elementary", "washington-middle"]
DOORS = ("main-entrance", "gym-door")


def _blocks(acl: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for block in acl.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith("#")]
        if lines:
            out[lines[0].removeprefix("user ")] = lines[1:]
    return out


def test_rendered_acl_is_the_shipped_one_per_campus():
    shipped = _blocks(CAMPUS_ACL.read_text())
    rendered = _blocks(render_acl(CAMPUSES, DOORS))
    for campus in CAMPUSES:
        for door in DOORS:
            assert rendered[door_account(campus, door)] == [
                rule.replace("lincoln-elementary", campus) for rule in shipped[f"entry-{door}"]]
    others = {user: rules for user, rules in shipped.items() if user.removeprefix("entry-") not in DOORS}
    assert others and all(rendered[user] == rules for user, rules in others.items())
    assert len(rendered) == len(others) + len(CAMPUSES) * len(DOORS)


def test_a_shipped_acl_without_a_demo_door_is_refused(tmp_path):
    edited = tmp_path / "campus.acl"
    edited.write_text(CAMPUS_ACL.read_text().replace("user entry-gym-door", "user entry-side-door"))
    with pytest.raises(DemoError, match="entry-gym-door"):
        render_acl(CAMPUSES, DOORS, shipped=edited)


def test_on_a_real_broker_the_operator_locks_every_door_and_doors_stay_in_their_lane(tmp_path):
    accounts = {door_account(c, d): f"pw-{c}-{d}" for c in CAMPUSES for d in DOORS}
    accounts |= {"district-ro": "pw-ro", "district-operator": "pw-op"}
    broker = start_broker(tmp_path / "broker", acl=render_acl(CAMPUSES, DOORS), accounts=accounts)
    clients: list[Subscriber] = []
    try:
        door = Subscriber(broker, user=door_account("lincoln-elementary", "main-entrance"),
                          topics=("entry/lincoln-elementary/main-entrance/cmd/lockdown", "entry/all/cmd/lockdown",
                                  "entry/washington-middle/main-entrance/cmd/lockdown"))
        watcher = Subscriber(broker, user="district-ro", topics=("entry/#",))
        operator = Subscriber(broker, user="district-operator", topics=())
        other = Subscriber(broker, user=door_account("washington-middle", "gym-door"), topics=())
        clients += [door, watcher, operator, other]
        operator.publish("entry/all/cmd/lockdown", b'{"level": "lockdown"}')
        operator.publish("entry/lincoln-elementary/main-entrance/cmd/lockdown", b'{"level": "lockdown"}')
        operator.publish("entry/washington-middle/main-entrance/cmd/lockdown", b'{"level": "lockdown"}')
        other.publish("entry/lincoln-elementary/main-entrance/events", b"{}")       # not its campus: dropped
        other.publish("entry/washington-middle/gym-door/events", b"{}")             # its own: delivered
        wait_for(lambda: door.on("entry/all/cmd/lockdown") and door.on(
            "entry/lincoln-elementary/main-entrance/cmd/lockdown") and watcher.on(
            "entry/washington-middle/gym-door/events"), what="the allowed messages")
        time.sleep(0.5)                 # anything the ACL wrongly let through has arrived by now
        assert not door.on("entry/washington-middle/main-entrance/cmd/lockdown")   # another door's command
        assert not watcher.on("entry/lincoln-elementary/main-entrance/events")
    finally:
        for c in clients:
            c.close()
        broker.stop()
