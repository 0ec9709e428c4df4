"""Issue 9, core and journal faults: what a failing disk, a lost journal or a crash may not break.

Real journal (SQLite in a temp dir), fake clock, a strike that records its calls. Each test names
the finding it proves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import daemon
from controller import events as ev
from controller.core import EntryCore, Rules
from controller.journal import Journal
from tests.test_core import FailingJournal, RecordingStrike


@pytest.fixture
def journal(tmp_path: Path, clock):
    j = Journal(tmp_path / "j.sqlite3", "campus", "door", now=clock.now)
    yield j
    j.close()


def types(journal: Journal) -> list[str]:
    return [e.type for e in reversed(journal.query(limit=1000))]


# ---------------------------------------------------------------- finding 4: orphan rings
def test_ring_pressed_while_journal_failed_cannot_be_approved_after_recovery(journal, clock):
    strike = RecordingStrike(clock)
    failing = FailingJournal(journal)
    core = EntryCore(failing, strike, Rules(ring_timeout_seconds=120), clock=clock)
    failing.broken = True
    rid = core.press().request_id
    failing.broken = False
    clock.advance(11)                      # the fault retry fires: the journal recovered
    core.tick()
    assert core.fault is None
    d = core.approve(rid, "Sam Staff")
    assert not d.ok and d.code == "ring_not_recorded"
    assert not strike.on and ("unlock", clock.monotonic()) not in strike.calls
    refused = journal.query(types=[ev.ACTION_REFUSED], limit=1)[0]
    assert refused.data["code"] == "ring_not_recorded" and refused.request_id == rid
    # the visitor presses again: a fresh, journaled ring that can be approved
    clock.advance(1)
    fresh = core.press().request_id
    assert fresh != rid
    assert core.approve(fresh, "Sam Staff").ok and strike.on


def test_unrecorded_ring_still_pending_is_refused_not_approved(journal, clock):
    strike = RecordingStrike(clock)
    failing = FailingJournal(journal)
    core = EntryCore(failing, strike, Rules(ring_timeout_seconds=120), clock=clock)
    failing.broken = True
    rid = core.press().request_id
    failing.broken = False
    core._fault = None                      # the fault cleared without the recovery pass
    d = core.approve(rid, "Sam Staff")
    assert d.code == "ring_not_recorded" and not strike.on


# ---------------------------------------------------------------- finding 8: open pulse
def test_startup_after_crash_mid_pulse_journals_door_locked_startup(settings, pin_factory):
    c = daemon.build(settings, pin_factory=pin_factory)
    daemon.start(c)
    rid = c.press().request_id
    assert c.approve(rid, "Sam Staff").ok
    # crash: no stop(), no door_locked
    c.snapshots.close()
    c.hardware.close()
    c.journal.close()
    pin_factory.reset()
    c2 = daemon.build(settings, pin_factory=pin_factory)
    try:
        daemon.start(c2)
        kinds = types(c2.journal)
        last_unlock = len(kinds) - 1 - kinds[::-1].index(ev.DOOR_UNLOCKED)
        after = c2.journal.query(types=[ev.DOOR_LOCKED], limit=1)[0]
        assert ev.DOOR_LOCKED in kinds[last_unlock:]
        assert after.data["reason"] == "startup" and after.request_id == rid
        assert not c2.core.strike_energized
    finally:
        daemon.stop(c2, "test done")


def test_clean_start_journals_no_spurious_door_locked(settings, pin_factory):
    c = daemon.build(settings, pin_factory=pin_factory)
    daemon.start(c)
    daemon.stop(c, "test done")
    pin_factory.reset()
    c2 = daemon.build(settings, pin_factory=pin_factory)
    daemon.start(c2)
    daemon.stop(c2, "test done")
    j = Journal(Path(settings.storage.state_dir) / "journal.sqlite3", "x", "y")
    try:
        assert ev.DOOR_LOCKED not in types(j)
    finally:
        j.close()
