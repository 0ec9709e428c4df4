"""Entry core rules with an injected clock and a real SQLite journal in a temp dir."""

from __future__ import annotations

import threading

import pytest

from controller import events as ev
from controller.core import UNLOCK_CAP, EntryCore
from controller.door_settings import DoorSettings
from tests.support_core import FailingJournal


def make_core(journal, strike, clock, **rules):
    return EntryCore(journal, strike, DoorSettings(**rules), clock=clock, has_door_contact=True)


@pytest.fixture
def core(journal, strike, clock):
    return make_core(journal, strike, clock)


def types(journal) -> list[str]:
    return [e.type for e in reversed(journal.query(limit=1000))]


def test_strike_driven_locked_at_construction(journal, strike, clock):
    make_core(journal, strike, clock)
    assert strike.calls == [("lock", clock.monotonic())]


def test_press_starts_ring_and_is_journaled_first(core, journal):
    d = core.press()
    assert d.ok and d.code == "ringing"
    event = journal.last_event()
    assert event.type == ev.BUZZER_PRESSED and event.request_id == d.request_id
    assert core.status()["ring"]["request_id"] == d.request_id


def test_presses_while_ringing_coalesce_into_one_request(core, journal, clock):
    first = core.press()
    ids = set()
    for _ in range(4):
        clock.advance(0.2)
        ids.add(core.press().request_id)
    assert ids == {first.request_id}
    assert types(journal).count(ev.BUZZER_PRESSED) == 1
    assert core.status()["ring"]["presses"] == 5


def test_repeat_presses_are_journaled_at_most_once_per_interval(core, journal, clock):
    core.press()
    for _ in range(10):
        clock.advance(0.5)
        core.press()
    # 5 s of presses with a 2 s journaling interval: at most 2-3 repeat events, not 10
    assert 1 <= types(journal).count(ev.BUZZER_REPEATED) <= 3


def test_bounce_within_debounce_window_is_ignored(core, clock):
    core.press()
    clock.advance(0.01)
    d = core.press()
    assert d.code == "debounced"
    assert core.status()["ring"]["presses"] == 1


def test_approve_pulses_strike_for_configured_time_then_relocks(journal, strike, clock):
    core = make_core(journal, strike, clock, unlock_seconds=4)
    rid = core.press().request_id
    d = core.approve(rid, "Ms. Rivera")
    assert d.ok and strike.on
    approved = [e for e in journal.query(types=[ev.ENTRY_APPROVED])]
    assert approved[0].actor == "Ms. Rivera" and approved[0].request_id == rid
    clock.advance(3.999)
    core.tick()
    assert strike.on
    clock.advance(0.001)
    core.tick()
    assert not strike.on
    assert strike.pulses() == [(1000.0, 1004.0)]
    assert journal.last_event().type == ev.DOOR_LOCKED
    assert journal.last_event().data["reason"] == "pulse_end"


def test_unlock_is_journaled_before_strike_energizes(tmp_path, clock):
    order = []

    class Spy:
        def unlock(self):
            order.append("strike")

        def lock(self):
            pass

    class SpyJournal:
        def append(self, type, *a, **k):
            order.append(type)

    core = EntryCore(SpyJournal(), Spy(), clock=clock)
    rid = core.press().request_id
    core.approve(rid, "A")
    assert order.index(ev.ENTRY_APPROVED) < order.index(ev.DOOR_UNLOCKED) < order.index("strike")


def test_deny_ends_ring_without_unlock(core, strike, journal):
    rid = core.press().request_id
    assert core.deny(rid, "Mr. Chen").ok
    assert not strike.on and ("unlock", pytest.approx(1000.0)) not in strike.calls
    assert core.status()["ring"] is None
    assert journal.last_event().type == ev.ENTRY_DENIED


def test_ring_expires_exactly_at_timeout(journal, strike, clock):
    core = make_core(journal, strike, clock, ring_timeout_seconds=60)
    rid = core.press().request_id
    clock.advance(59.999)
    core.tick()
    assert core.status()["ring"] is not None
    clock.advance(0.001)  # exactly 60 s: expired
    d = core.approve(rid, "Staff")
    assert not d.ok and d.code == "expired"
    assert not strike.on
    assert ev.RING_EXPIRED in types(journal)


def test_approval_just_before_expiry_is_accepted(journal, strike, clock):
    core = make_core(journal, strike, clock, ring_timeout_seconds=60)
    rid = core.press().request_id
    clock.advance(59.999)
    assert core.approve(rid, "Staff").ok and strike.on


@pytest.mark.parametrize("bogus", ["no-such-id", "", None, 42, "x" * 65, ["list"]])
def test_unknown_or_malformed_ids_refused_and_change_nothing(core, strike, journal, bogus):
    rid = core.press().request_id
    before = core.status()
    d = core.approve(bogus, "Staff")
    assert not d.ok and d.code in ("unknown", "invalid")
    assert not strike.on
    assert core.status()["ring"]["request_id"] == rid == before["ring"]["request_id"]
    assert journal.last_event().type == ev.ACTION_REFUSED


@pytest.mark.parametrize("actor", ["", "   ", None, 7, "x" * 101])
def test_approval_needs_a_named_staff_member(core, strike, actor):
    rid = core.press().request_id
    d = core.approve(rid, actor)
    assert d.code == "invalid" and not strike.on


def test_already_handled_id_refused(core, strike, clock):
    rid = core.press().request_id
    core.deny(rid, "A")
    d = core.approve(rid, "B")
    assert d.code == "handled" and not strike.on


def test_double_approval_gives_one_pulse(core, strike, clock, journal):
    rid = core.press().request_id
    assert core.approve(rid, "A").ok
    second = core.approve(rid, "B")
    assert second.code == "handled"
    clock.advance(10)
    core.tick()
    assert len(strike.pulses()) == 1
    assert types(journal).count(ev.DOOR_UNLOCKED) == 1


def test_racing_approvals_from_threads_give_exactly_one_pulse(core, strike):
    rid = core.press().request_id
    barrier = threading.Barrier(8)
    results = []

    def approve(n):
        barrier.wait()
        results.append(core.approve(rid, f"staff{n}"))

    threads = [threading.Thread(target=approve, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.ok for r in results) == 1
    assert [c for c, _ in strike.calls].count("unlock") == 1


def test_repeated_unlocks_never_extend_past_cap(journal, strike, clock):
    core = make_core(journal, strike, clock, unlock_seconds=20)
    assert core.unlock_now("A").ok
    start = clock.monotonic()
    for _ in range(10):
        clock.advance(5)
        core.unlock_now("A")
    # whatever happened, it is off at the cap
    pulses = strike.pulses()
    assert pulses and all(end - begin <= UNLOCK_CAP for begin, end in pulses)
    assert pulses[0] == (start, start + UNLOCK_CAP)


def test_approval_during_staff_unlock_extends_only_to_cap(journal, strike, clock):
    core = make_core(journal, strike, clock, unlock_seconds=25)
    core.unlock_now("A")
    clock.advance(20)
    rid = core.press().request_id
    assert core.approve(rid, "B").ok
    clock.advance(9.99)
    core.tick()
    assert strike.on
    clock.advance(0.01)
    core.tick()
    assert not strike.on
    assert strike.pulses() == [(1000.0, 1000.0 + UNLOCK_CAP)]


def test_staff_unlock_is_audited_with_actor(core, journal, strike):
    assert core.unlock_now("Ms. Rivera", "delivery").ok and strike.on
    e = journal.query(types=[ev.DOOR_UNLOCKED])[0]
    assert e.actor == "Ms. Rivera" and e.data["reason"] == "staff_unlock" and e.data["note"] == "delivery"


def test_staff_unlock_needs_a_name(core, strike):
    assert core.unlock_now("").code == "invalid" and not strike.on


def test_lockdown_refuses_every_unlock_but_records_presses(core, strike, journal):
    core.start_lockdown("District", "drill", "mqtt")
    rid = core.press().request_id
    assert journal.query(types=[ev.BUZZER_PRESSED])[0].data["lockdown"] is True
    assert core.approve(rid, "A").code == "lockdown"
    assert core.unlock_now("A").code == "lockdown"
    assert not strike.on and "unlock" not in [c for c, _ in strike.calls]
    # the ring is still pending and can be denied
    assert core.deny(rid, "A").ok


def test_lockdown_ends_a_running_pulse(core, strike, journal):
    core.unlock_now("A")
    core.start_lockdown("B", "threat")
    assert not strike.on
    assert journal.query(types=[ev.DOOR_LOCKED])[0].data["reason"] == "lockdown"


def test_lockdown_end_allows_unlocks_again(core, strike):
    core.start_lockdown("A")
    assert core.end_lockdown("A").ok
    assert core.unlock_now("A").ok and strike.on


def test_door_opened_while_locked_is_forced_open(core, journal):
    core.door_changed(True)
    assert "forced_open" in core.status()["alarms"]
    assert journal.last_event().type == ev.ALARM_RAISED
    assert journal.last_event().data["alarm"] == "forced_open"


def test_door_opened_after_request_to_exit_is_egress_not_forced(journal, strike, clock):
    core = make_core(journal, strike, clock, exit_request_seconds=10)
    core.exit_requested()
    clock.advance(3)
    core.door_changed(True)
    assert "forced_open" not in core.status()["alarms"]
    assert journal.last_event().data["egress"] is True
    assert not strike.on          # egress is mechanical: never touches the strike
    core.door_changed(False)
    clock.advance(11)             # a stale exit request does not excuse a later opening
    core.door_changed(True)
    assert "forced_open" in core.status()["alarms"]


def test_door_opened_during_pulse_is_entry_not_forced(core, journal):
    rid = core.press().request_id
    core.approve(rid, "A")
    core.door_changed(True)
    assert "forced_open" not in core.status()["alarms"]
    assert core.status()["door"] == "open"


def test_strike_relocks_as_soon_as_door_closes_after_entry(core, strike, clock, journal):
    rid = core.press().request_id
    core.approve(rid, "A")
    clock.advance(1)
    core.door_changed(True)
    clock.advance(1)
    core.door_changed(False)
    assert not strike.on
    assert strike.pulses() == [(1000.0, 1002.0)]
    assert journal.query(types=[ev.DOOR_LOCKED])[0].data["reason"] == "door_closed"


def test_held_open_alarm_after_configured_time(journal, strike, clock):
    core = make_core(journal, strike, clock, held_open_seconds=30)
    core.unlock_now("A")
    core.door_changed(True)
    clock.advance(29.9)
    core.tick()
    assert "held_open" not in core.status()["alarms"]
    clock.advance(0.1)
    core.tick()
    assert "held_open" in core.status()["alarms"]
    core.door_changed(False)
    assert "held_open" not in core.status()["alarms"]
    assert ev.ALARM_CLEARED in types(journal)


def test_forced_open_alarm_needs_acknowledgement(core):
    core.door_changed(True)
    core.door_changed(False)
    assert "forced_open" in core.status()["alarms"]
    assert core.acknowledge_alarm("forced_open", "Ms. Rivera").ok
    assert core.status()["alarms"] == {}


def test_journal_failure_fails_closed(tmp_path, journal, strike, clock):
    failing = FailingJournal(journal)
    core = EntryCore(failing, strike, DoorSettings(), clock=clock)
    rid = core.press().request_id
    failing.broken = True
    d = core.approve(rid, "A")
    assert not d.ok and d.code == "fault"
    assert not strike.on and "unlock" not in [c for c, _ in strike.calls]
    assert "journal_failure" in core.status()["alarms"] and core.fault
    assert core.unlock_now("A").code == "fault"


def test_journal_failure_during_pulse_relocks(journal, strike, clock):
    failing = FailingJournal(journal)
    core = EntryCore(failing, strike, DoorSettings(), clock=clock, has_door_contact=True)
    core.unlock_now("A")
    failing.broken = True
    core.door_changed(True)   # cannot be journaled
    assert not strike.on and core.fault


def test_core_recovers_when_journal_writes_again(journal, strike, clock):
    failing = FailingJournal(journal)
    core = EntryCore(failing, strike, DoorSettings(), clock=clock)
    failing.broken = True
    core.press()
    assert core.fault
    failing.broken = False
    clock.advance(10)
    core.tick()
    assert core.fault is None
    assert journal.last_event().type == ev.JOURNAL_RECOVERED
    assert core.unlock_now("A").ok


def test_seq_rises_by_one_for_every_transition(core, journal, clock):
    rid = core.press().request_id
    core.approve(rid, "A")
    core.door_changed(True)
    core.door_changed(False)
    core.start_lockdown("A")
    core.end_lockdown("A")
    seqs = [e.seq for e in reversed(journal.query(limit=100))]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 8


def test_next_deadline_tracks_ring_and_pulse(journal, strike, clock):
    core = make_core(journal, strike, clock, unlock_seconds=5, ring_timeout_seconds=60)
    assert core.next_deadline() is None
    core.press()
    assert core.next_deadline() == 1060.0
    core.unlock_now("A")
    assert core.next_deadline() == 1005.0


def test_indicators_follow_state(journal, strike, clock):
    shown = []

    class Leds:
        def show(self, state):
            shown.append(state)

    core = EntryCore(journal, strike, DoorSettings(denied_indicator_seconds=5), clock=clock, indicators=Leds())
    rid = core.press().request_id
    core.deny(rid, "A")
    clock.advance(5)
    core.tick()
    rid = core.press().request_id
    core.approve(rid, "A")
    assert shown == ["idle", "ringing", "denied", "idle", "ringing", "approved"]


def test_shutdown_relocks_and_journals(core, strike, journal):
    core.unlock_now("A")
    core.shutdown("signal SIGTERM")
    assert not strike.on
    e = journal.last_event()
    assert e.type == ev.DOOR_LOCKED and e.data["reason"] == "signal SIGTERM"
