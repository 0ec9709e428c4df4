"""Issue 9, core and journal faults: what a failing disk, a lost journal or a crash may not break.

Real journal (SQLite in a temp dir), fake clock, a strike that records its calls. Each test names
the finding it proves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import daemon
from controller import events as ev
from controller.core import EntryCore
from controller.door_settings import DoorSettings
from controller.journal import Journal
from tests.support_core import FailingJournal, RecordingStrike


def crash(c, pin_factory) -> None:
    """What a SIGKILL leaves: no stop(), no door_locked, no controller_stopped (the OS closes files)."""
    c.snapshots.close()
    c.hardware.close()
    c.journal.close()
    c.lock_file.close()
    pin_factory.reset()


def types(journal: Journal) -> list[str]:
    return [e.type for e in reversed(journal.query(limit=1000))]


# ---------------------------------------------------------------- finding 4: orphan rings
def test_ring_pressed_while_journal_failed_cannot_be_approved_after_recovery(journal, clock):
    strike = RecordingStrike(clock)
    failing = FailingJournal(journal)
    core = EntryCore(failing, strike, DoorSettings(ring_timeout_seconds=120), clock=clock)
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
    core = EntryCore(failing, strike, DoorSettings(ring_timeout_seconds=120), clock=clock)
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
    crash(c, pin_factory)
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


# ---------------------------------------------------------------- finding 1: durable lockdown
class FreeingReserve:
    """A disk reserve whose release makes the failing journal writable again (like a ballast)."""

    def __init__(self, failing):
        self.failing, self.released, self.held = failing, 0, True

    def release(self):
        if not self.held:
            return False
        self.held, self.failing.broken = False, False
        self.released += 1
        return True

    def restore(self):
        self.held = True
        return True


def test_lockdown_started_on_a_full_disk_survives_recovery_and_restart(settings, pin_factory):
    """The issue's reproduction: lockdown while the journal fails, space freed, restart, approve."""
    c = daemon.build(settings, pin_factory=pin_factory)
    daemon.start(c)
    c.reserve.release()                            # the reserve is already used up
    failing = FailingJournal(c.journal)
    c.core._recorder = failing
    failing.broken = True
    d = c.start_lockdown("Sam Staff", "intruder", "panel")
    assert d.ok and c.core.in_lockdown
    failing.broken = False                          # space freed; the service restarts
    daemon.stop(c, "signal SIGTERM")
    pin_factory.reset()
    c2 = daemon.build(settings, pin_factory=pin_factory)
    try:
        daemon.start(c2)
        assert c2.core.in_lockdown
        started = c2.journal.query(types=[ev.LOCKDOWN_STARTED], limit=1)
        assert started and started[0].data["during_fault"] is True and started[0].actor == "Sam Staff"
        rid = c2.press().request_id
        assert c2.approve(rid, "Sam Staff").code == "lockdown"
        assert not c2.core.strike_energized
        # only an explicit, journaled end lifts it, and it stays lifted after a restart
        assert c2.end_lockdown("Sam Staff", "all clear").ok
        assert not (Path(settings.storage.state_dir) / "lockdown.json").exists()
    finally:
        daemon.stop(c2, "test done")
    pin_factory.reset()
    c3 = daemon.build(settings, pin_factory=pin_factory)
    try:
        daemon.start(c3)
        assert not c3.core.in_lockdown
    finally:
        daemon.stop(c3, "test done")


def test_lockdown_file_kept_when_the_journal_is_lost(settings, pin_factory):
    c = daemon.build(settings, pin_factory=pin_factory)
    daemon.start(c)
    c.start_lockdown("Sam Staff", "drill", "panel")
    daemon.stop(c, "test done")
    pin_factory.reset()
    (Path(settings.storage.state_dir) / "journal.sqlite3").unlink()
    c2 = daemon.build(settings, pin_factory=pin_factory)
    try:
        daemon.start(c2)
        assert c2.core.in_lockdown and c2.core.status()["lockdown"]["actor"] == "Sam Staff"
    finally:
        daemon.stop(c2, "test done")


def test_corrupt_lockdown_file_means_lockdown(settings, pin_factory):
    state = Path(settings.storage.state_dir)
    state.mkdir(parents=True)
    (state / "lockdown.json").write_bytes(b"\x00garbage")
    c = daemon.build(settings, pin_factory=pin_factory)
    try:
        daemon.start(c)
        assert c.core.in_lockdown
    finally:
        daemon.stop(c, "test done")


def test_recovery_journals_what_happened_during_the_fault(journal, clock, tmp_path):
    from controller.durable import FileLockdownStore
    strike = RecordingStrike(clock)
    failing = FailingJournal(journal)
    store = FileLockdownStore(tmp_path / "lockdown.json")
    core = EntryCore(failing, strike, DoorSettings(ring_timeout_seconds=120), clock=clock, lockdown_store=store)
    failing.broken = True
    rid = core.press().request_id
    clock.advance(1)
    core.press()
    clock.advance(1)
    assert core.approve(rid, "Sam Staff").code == "fault"
    assert core.deny(rid, "Sam Staff").ok
    assert core.start_lockdown("Sam Staff", "intruder").ok
    assert store.load()["actor"] == "Sam Staff"      # durable before it was reported
    clock.advance(1)
    assert core.unlock_now("Sam Staff").code in ("lockdown", "fault")
    failing.broken = False
    clock.advance(10)
    core.tick()
    rec = journal.query(types=[ev.JOURNAL_RECOVERED], limit=1)[0].data
    assert rec["presses"] == 2 and rec["rings"] == 1 and rec["denials"] == 1
    assert rec["refused_actions"] >= 2 and rec["missed_events"] >= 5
    assert rec["first_missed"] == "2026-11-29T08:00:00.000Z" and rec["last_missed"]
    lk = journal.query(types=[ev.LOCKDOWN_STARTED], limit=1)[0]
    assert lk.data["during_fault"] is True and lk.data["at"] == "2026-11-29T08:00:02.000Z"
    assert lk.seq > journal.query(types=[ev.JOURNAL_RECOVERED], limit=1)[0].seq
    assert core.end_lockdown("Sam Staff", "clear").ok and store.load() is None


def test_disk_reserve_lets_the_lockdown_reach_the_journal(journal, clock, tmp_path):
    from controller.durable import FileLockdownStore
    strike = RecordingStrike(clock)
    failing = FailingJournal(journal)
    reserve = FreeingReserve(failing)
    core = EntryCore(failing, strike, DoorSettings(), clock=clock, reserve=reserve,
                     lockdown_store=FileLockdownStore(tmp_path / "lockdown.json"))
    failing.broken = True                          # the disk just filled up
    assert core.start_lockdown("Sam Staff", "intruder").ok
    assert reserve.released == 1 and core.fault is None
    lk = journal.query(types=[ev.LOCKDOWN_STARTED], limit=1)[0]
    assert "during_fault" not in lk.data
    assert "disk_full" in core.status()["alarms"]
    clock.advance(11)
    core.tick()                                    # room again: the reserve is re-created
    assert reserve.held and "disk_full" not in core.status()["alarms"]


def test_file_disk_reserve_releases_and_restores(tmp_path):
    from controller.durable import DiskReserve
    r = DiskReserve(tmp_path / "reserve.ballast", 256 * 1024)
    assert r.restore() and r.held and (tmp_path / "reserve.ballast").stat().st_blocks * 512 >= 256 * 1024
    assert r.release() and not r.held and not r.release()
    assert r.restore() and r.held


def test_panel_audit_events_lost_to_a_fault_are_counted(journal, clock):
    failing = FailingJournal(journal)
    core = EntryCore(failing, RecordingStrike(clock), DoorSettings(), clock=clock)
    failing.broken = True
    assert core.audit(ev.LOGIN_FAILED, username="sam", address="10.0.0.5") is False
    assert core.audit(ev.LOGIN_SUCCEEDED, username="sam", address="10.0.0.5", session="x") is False
    failing.broken = False
    clock.advance(11)
    core.tick()
    rec = journal.query(types=[ev.JOURNAL_RECOVERED], limit=1)[0].data
    assert rec["missed_by_type"] == {ev.LOGIN_FAILED: 1, ev.LOGIN_SUCCEEDED: 1}
    assert core.audit(ev.LOGIN_FAILED, username="sam", address="10.0.0.5") is True
    with pytest.raises(ValueError):
        core.audit("no_such_type")


def test_reserve_is_kept_when_the_failure_is_not_a_full_disk(journal, clock):
    class ClosedJournal:
        def append(self, *a, **k):
            raise RuntimeError("journal is closed")
    reserve = FreeingReserve(FailingJournal(journal))
    core = EntryCore(ClosedJournal(), RecordingStrike(clock), DoorSettings(), clock=clock, reserve=reserve)
    core.press()
    assert reserve.held and reserve.released == 0 and core.fault


def test_adapter_writes_lost_to_a_fault_are_counted_and_fail_closed(journal, clock):
    """A photo or a refused MQTT command that cannot be journaled (the adapters write to the
    journal themselves) is no silent gap: the core fails closed and journal_recovered counts it."""
    from controller.faults import CountingRecorder

    failing = FailingJournal(journal)
    core = EntryCore(failing, RecordingStrike(clock), DoorSettings(), clock=clock)
    adapter = CountingRecorder(failing, core.lost_event)
    failing.broken = True
    for type in (ev.SNAPSHOT_CAPTURED, ev.CAMERA_FAILED, ev.COMMAND_REJECTED):
        with pytest.raises(OSError, match="disk full"):
            adapter.append(type, None, reason="x")
    assert core.fault is not None and "journal_failure" in core.status()["alarms"]
    failing.broken = False
    clock.advance(11)
    core.tick()
    assert core.fault is None
    rec = journal.query(types=[ev.JOURNAL_RECOVERED], limit=1)[0].data
    assert rec["missed_by_type"] == {ev.SNAPSHOT_CAPTURED: 1, ev.CAMERA_FAILED: 1, ev.COMMAND_REJECTED: 1}
    assert adapter.append(ev.CAMERA_FAILED, None, reason="x").type == ev.CAMERA_FAILED


def test_daemon_counts_a_photo_the_journal_could_not_take(settings, pin_factory):
    """Wired for real: the snapshot service writes through the counting recorder."""
    c = daemon.build(settings, pin_factory=pin_factory)
    try:
        daemon.start(c)
        assert c.snapshots.recorder is not c.journal
        real = c.journal.append

        def broken(type, *a, **k):
            if type == ev.SNAPSHOT_CAPTURED:
                raise OSError("disk I/O error")
            return real(type, *a, **k)

        c.journal.append = broken
        rid = c.press().request_id
        from tests.conftest import wait_for
        wait_for(lambda: c.core.fault is not None)
        c.journal.append = real
        assert c.approve(rid, "Sam Staff").code == "fault"     # failing closed until it recovers
    finally:
        daemon.stop(c, "test done")
