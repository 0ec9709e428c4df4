"""Issue 9 over MQTT (real Mosquitto): the district hears a lost journal (new epoch,
``journal_lost`` in the retained state, the lockdown still set) and a lockdown started while the
journal failed (journaled on recovery, ``during_fault: true``), with the fault's counts."""

from __future__ import annotations

import pytest

from controller import events as ev
from tests.support_core import FailingJournal
from tests.support_mqtt import Linked, dedupe, wait_for

pytestmark = pytest.mark.broker


def test_district_sees_a_lost_journal_and_the_lockdown_that_outlived_it(linked, subscriber, tmp_path):
    sub = subscriber()
    state = tmp_path / "door"
    first = linked(state_dir=state).ready()
    assert first.controller.start_lockdown("Sam Staff", "intruder", "panel").ok
    first.wait_delivered()
    old_epoch = first.journal.epoch
    first.close()
    (state / "journal.sqlite3").unlink()
    second = linked(state_dir=state, door=first.door).ready()
    second.wait_delivered()
    root = second.root

    def lost_state():
        states = [m.json() for m in sub.on(f"{root}/state")]
        return states and "journal_lost" in states[-1]["alarms"] and states[-1]
    st = wait_for(lost_state, what="state with journal_lost")
    assert st["lockdown"] is not None and st["epoch"] == second.journal.epoch != old_epoch
    assert "journal lost" in st["fault"]
    events = dedupe(sub.events(root))
    new = [e for e in events if e["epoch"] == second.journal.epoch]
    assert new[0]["seq"] == 1, "a new epoch starts its own seq: not a re-send"
    started = next(e for e in new if e["type"] == ev.CONTROLLER_STARTED)
    assert started["previous_stop"] == "unknown"
    assert any(e["type"] == ev.ALARM_RAISED and e["alarm"] == "journal_lost" for e in new)
    assert any(e["type"] == ev.LOCKDOWN_STARTED for e in new)


def test_lockdown_started_while_the_journal_failed_reaches_the_district(linked, subscriber, clock):
    sub = subscriber()
    lc: Linked = linked(clock=clock).ready()
    lc.controller.reserve.release()
    failing = FailingJournal(lc.journal)
    core = lc.controller.core
    core._recorder = failing
    failing.broken = True
    assert lc.controller.start_lockdown("Sam Staff", "intruder", "panel").ok
    lc.controller.press()
    failing.broken = False
    clock.advance(11)
    core.tick()
    lc.wait_delivered()

    def fault_events():
        found = [e for e in dedupe(sub.events(lc.root))
                 if e["type"] in (ev.JOURNAL_RECOVERED, ev.LOCKDOWN_STARTED)]
        return found if len(found) >= 2 else None
    events = wait_for(fault_events, what="recovery and lockdown on the bus")
    recovered, started = events[0], events[1]
    assert recovered["type"] == ev.JOURNAL_RECOVERED and recovered["presses"] == 1
    assert recovered["missed_by_type"][ev.LOCKDOWN_STARTED] == 1
    assert started["type"] == ev.LOCKDOWN_STARTED and started["during_fault"] is True and started["at"]
    states = [m.json() for m in sub.on(f"{lc.root}/state")]
    assert states[-1]["lockdown"] is not None
