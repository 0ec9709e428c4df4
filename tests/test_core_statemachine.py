"""Hypothesis RuleBasedStateMachine over the entry core.

Invariants: the strike is on only inside an approved pulse or an audited staff
unlock, never in lockdown, never longer than the cap; every unlock is journaled
before the strike energizes; seq strictly increasing by one.
"""

from __future__ import annotations

import itertools
import uuid

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from controller import events as ev
from controller.core import UNLOCK_CAP, EntryCore
from controller.door_settings import DoorSettings
from tests.conftest import FakeClock


class MemoryJournal:
    """Same contract as Journal.append, in memory (the SQLite one is tested separately)."""

    def __init__(self, clock):
        self.clock = clock
        self.events: list[ev.Event] = []
        self.broken = False

    def append(self, type, request_id=None, actor=None, **data):
        if self.broken:
            raise OSError("read-only file system")
        event = ev.Event(str(uuid.uuid4()), len(self.events) + 1, type, self.clock.now(), "c", "d",
                         request_id, actor, data)
        self.events.append(event)
        return event


class AuditedStrike:
    """Checks, at the moment of energizing, that an unlock was journaled just before."""

    def __init__(self, clock, journal, machine):
        self.clock, self.journal, self.machine = clock, journal, machine
        self.on = False
        self.on_since = 0.0
        self.journaled_unlocks_seen = 0
        self.violations: list[str] = []

    def unlock(self):
        unlocks = [e for e in self.journal.events if e.type == ev.DOOR_UNLOCKED]
        if len(unlocks) <= self.journaled_unlocks_seen:
            self.violations.append("strike energized without a journaled door_unlocked")
        last = unlocks[-1] if unlocks else None
        if last is not None and last.data.get("reason") == "approved":
            approved = [e for e in self.journal.events if e.type == ev.ENTRY_APPROVED
                        and e.request_id == last.request_id]
            if len(approved) != 1:
                self.violations.append("approved unlock without exactly one approval event")
        self.journaled_unlocks_seen = len(unlocks)
        if self.machine.core is not None and self.machine.core.in_lockdown:
            self.violations.append("strike energized during lockdown")
        if not self.on:
            self.on_since = self.clock.monotonic()
        self.on = True

    def lock(self):
        if self.on and self.clock.monotonic() - self.on_since > UNLOCK_CAP + 1e-9:
            self.violations.append("strike on beyond the cap")
        self.on = False
        self.journaled_unlocks_seen = len([e for e in self.journal.events if e.type == ev.DOOR_UNLOCKED])


class CoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.clock = FakeClock()
        self.journal = MemoryJournal(self.clock)
        self.core = None
        self.strike = AuditedStrike(self.clock, self.journal, self)
        self.core = EntryCore(self.journal, self.strike,
                              DoorSettings(unlock_seconds=5, ring_timeout_seconds=30, held_open_seconds=20),
                              clock=self.clock, has_door_contact=True)
        self.seen_ids: list[str] = []
        self.approved_ids: set[str] = set()
        self.names = itertools.cycle(["Ms. Rivera", "Mr. Chen", "Admin"])

    # ---- inputs
    @rule()
    def press(self):
        d = self.core.press()
        if d.request_id and d.request_id not in self.seen_ids:
            self.seen_ids.append(d.request_id)

    @rule(seconds=st.sampled_from([0.01, 0.05, 0.5, 1, 4.99, 5, 10, 29.99, 30, 31]))
    def time_passes(self, seconds):
        """Like the daemon's loop: wake at every deadline on the way, then at the end."""
        target = self.clock.monotonic() + seconds
        while (deadline := self.core.next_deadline()) is not None and deadline <= target:
            self.clock.advance(max(0.0, deadline - self.clock.monotonic()))
            self.core.tick()
            if self.core.next_deadline() == deadline:  # e.g. a fault retry that moved nothing
                break
        self.clock.advance(max(0.0, target - self.clock.monotonic()))
        self.core.tick()

    @precondition(lambda self: self.seen_ids)
    @rule(data=st.data())
    def approve_known(self, data):
        rid = data.draw(st.sampled_from(self.seen_ids))
        was_pending = (self.core.status()["ring"] or {}).get("request_id") == rid
        in_lockdown = self.core.in_lockdown
        faulted = self.core.fault is not None
        d = self.core.approve(rid, next(self.names))
        if d.ok:
            assert was_pending and not in_lockdown and not faulted
            assert rid not in self.approved_ids, "one request approved twice"
            self.approved_ids.add(rid)

    @rule(rid=st.one_of(st.text(max_size=70), st.none(), st.integers(), st.uuids().map(str)))
    def approve_bogus(self, rid):
        assert not self.core.approve(rid, "Intruder").ok

    @precondition(lambda self: self.seen_ids)
    @rule(data=st.data())
    def deny(self, data):
        self.core.deny(data.draw(st.sampled_from(self.seen_ids)), next(self.names))

    @rule()
    def unlock_now(self):
        in_lockdown = self.core.in_lockdown
        d = self.core.unlock_now(next(self.names))
        assert not (d.ok and in_lockdown)

    @rule()
    def lockdown_start(self):
        self.core.start_lockdown("District", "drill", "mqtt")

    @rule()
    def lockdown_end(self):
        self.core.end_lockdown("Principal", "all clear", "panel")

    @rule(is_open=st.booleans())
    def door(self, is_open):
        self.core.door_changed(is_open)

    @rule(broken=st.booleans())
    def journal_health(self, broken):
        self.journal.broken = broken

    # ---- invariants
    @invariant()
    def strike_matches_core_and_rules(self):
        assert not self.strike.violations, self.strike.violations
        assert self.strike.on == self.core.strike_energized
        if self.core.in_lockdown:
            assert not self.strike.on
        if self.strike.on:
            assert self.clock.monotonic() - self.strike.on_since <= UNLOCK_CAP
            assert self.core.fault is None

    @invariant()
    def seq_strictly_increasing_by_one(self):
        seqs = [e.seq for e in self.journal.events]
        assert seqs == list(range(1, len(seqs) + 1))

    @invariant()
    def every_unlock_and_approval_is_journaled(self):
        unlock_events = [e for e in self.journal.events if e.type == ev.DOOR_UNLOCKED]
        approved_events = {e.request_id for e in self.journal.events if e.type == ev.ENTRY_APPROVED}
        assert self.approved_ids <= approved_events
        if self.strike.on:
            assert unlock_events


CoreMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
test_entry_core_state_machine = CoreMachine.TestCase
