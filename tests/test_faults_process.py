"""Fault injection on the real daemon (a subprocess: `entry-buzzer simulate --console`).

Each scenario breaks something the way a failing SD card, a crash or an operator would, restarts
the controller, and then checks the invariants a district security officer relies on:

- the strike is never energized without a journaled approval of a journaled ring (or an
  audited staff unlock);
- a lockdown, once started, is in force after every later restart until an explicit end;
- no gap in the audit: seq is contiguous within a journal, and a fault that kept events out of
  the journal is announced by ``journal_recovered`` with counts;
- every pulse has a ``door_locked``.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller import events as ev
from controller import labels
from tests.conftest import wait_for
from tests.test_daemon_process import Daemon, events_in

pytestmark = pytest.mark.process


@pytest.fixture
def config(tmp_path):
    p = tmp_path / "config.toml"
    p.write_text("[door]\nunlock_seconds = 25\nring_timeout_seconds = 120\n")
    return p


def status(d: Daemon) -> str:
    d.send("status")
    return d.expect("strike pin")


def quit_(d: Daemon) -> None:
    d.send("quit")
    assert d.proc.wait(30) == 0


def check_invariants(events: list[ev.Event]) -> None:
    """The audit of one journal is whole and every unlock is justified and closed."""
    assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + len(events))), "seq gap"
    assert len({e.epoch for e in events}) == 1
    pressed = {e.request_id for e in events if e.type == ev.BUZZER_PRESSED}
    approved = set()
    open_pulse = None
    for e in events:
        if e.type == ev.ENTRY_APPROVED:
            assert e.request_id in pressed, "approval of a ring that was never journaled"
            approved.add(e.request_id)
        elif e.type == ev.DOOR_UNLOCKED:
            if e.data["reason"] == "approved":
                assert e.request_id in approved, "unlock without a journaled approval"
            else:
                assert e.data["reason"] == "staff_unlock" and e.actor
            if not e.data.get("extended"):
                assert open_pulse is None, "a new pulse before the last one was locked"
                open_pulse = e
        elif e.type == ev.DOOR_LOCKED:
            open_pulse = None
        elif e.type == ev.CONTROLLER_STOPPED:
            assert open_pulse is None, "stopped with a pulse still open in the audit"
    assert open_pulse is None, "a pulse without door_locked"


def lockdowns_open(events: list[ev.Event]) -> bool:
    kinds = [e.type for e in events if e.type in (ev.LOCKDOWN_STARTED, ev.LOCKDOWN_ENDED)]
    return bool(kinds) and kinds[-1] == ev.LOCKDOWN_STARTED


def start_with_lockdown(state: Path, config: Path) -> None:
    d = Daemon(state, config)
    try:
        d.send("lockdown start")
        d.expect("Lockdown started")
        quit_(d)
    finally:
        d.close()


def assert_locked_down_and_refusing(d: Daemon) -> str:
    d.send("press")
    d.expect("pressed")
    d.send("approve")
    refused = d.expect("Refused (approve)")
    assert "lockdown" in refused or "failing closed" in refused
    s = status(d)
    assert "strike pin off (locked)" in s and "LOCKDOWN active" in s
    return s


# ---------------------------------------------------------------- journal damaged between runs
@pytest.mark.parametrize("damage", ["truncate", "delete", "foreign"])
def test_damaged_journal_keeps_the_lockdown_and_refuses_unlocks(tmp_path, config, damage):
    state = tmp_path / "state"
    start_with_lockdown(state, config)
    old = events_in(state)
    check_invariants(old)
    journal = state / "journal.sqlite3"
    if damage == "truncate":
        journal.write_bytes(b"")
    elif damage == "delete":
        journal.unlink()
    else:
        other = tmp_path / "other"
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "other.toml").write_text("")      # another installation
        d = Daemon(other, tmp_path / "other" / "other.toml")
        quit_(d)
        d.close()
        shutil.copy(other / "journal.sqlite3", journal)
    for _restart in range(2):                         # and it stays so across restarts
        d = Daemon(state, config)
        try:
            s = assert_locked_down_and_refusing(d)
            assert labels.alarm("journal_lost") in s
            d.send("unlock")
            d.expect("Refused (unlock)")
            quit_(d)
        finally:
            d.close()
    new = events_in(state)
    check_invariants(new)
    assert new[0].epoch != old[0].epoch
    started = [e for e in new if e.type == ev.CONTROLLER_STARTED]
    assert all(e.data["previous_stop"] != "none" for e in started[-2:])
    assert lockdowns_open(new)
    assert not any(e.type == ev.DOOR_UNLOCKED for e in new)
    # an admin accepts the new journal on the command line (controller stopped): journaled.
    # (simulate takes --state-dir; the command line reads it from the config)
    cfg2 = tmp_path / "with-state.toml"
    cfg2.write_text(config.read_text() + f'\n[storage]\nstate_dir = "{state}"\n')
    proc = subprocess.run([sys.executable, "-m", "entry_buzzer", "journal", "accept-new", "--config",
                           str(cfg2), "--actor", "Ada Admin"], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr
    d = Daemon(state, config)
    try:
        s = assert_locked_down_and_refusing(d)       # accepted, but the lockdown still holds
        assert "journal_lost" not in s
        d.send("lockdown end")
        d.expect("Lockdown ended")
        quit_(d)
    finally:
        d.close()
    final = events_in(state)
    check_invariants(final)
    assert any(e.type == ev.JOURNAL_ACCEPTED and e.actor == "Ada Admin" for e in final)
    assert not lockdowns_open(final)


# ---------------------------------------------------------------- crash during a pulse
def test_sigkill_during_a_pulse_closes_the_pulse_at_the_next_start(tmp_path, config):
    state = tmp_path / "state"
    d = Daemon(state, config)
    try:
        d.send("press")
        d.expect("pressed")
        d.send("approve")
        d.expect("Approved: the door is unlocked")
        assert "strike pin ON (unlocked)" in status(d)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(30)
    finally:
        d.close()
    d = Daemon(state, config)
    try:
        assert "strike pin off (locked)" in status(d)
        quit_(d)
    finally:
        d.close()
    events = events_in(state)
    check_invariants(events)
    locked = [e for e in events if e.type == ev.DOOR_LOCKED]
    assert locked and locked[0].data["reason"] == "startup"


def test_sigkill_right_after_a_lockdown_keeps_it(tmp_path, config):
    state = tmp_path / "state"
    d = Daemon(state, config)
    try:
        d.send("lockdown start")
        d.expect("Lockdown started")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(30)
    finally:
        d.close()
    (state / "journal.sqlite3").unlink()              # and the journal goes too
    for name in ("journal.sqlite3-wal", "journal.sqlite3-shm"):
        (state / name).unlink(missing_ok=True)
    d = Daemon(state, config)
    try:
        assert_locked_down_and_refusing(d)
        quit_(d)
    finally:
        d.close()
    check_invariants(events_in(state))


# ---------------------------------------------------------------- disk full


def fill(directory: Path, name: str) -> Path:
    from tests.test_disk_full import fill as fill_fs
    return fill_fs(directory).rename(directory / name)


def test_disk_full_lockdown_survives_and_the_gap_is_announced(small_disk, config):
    state = small_disk / "state"
    d = Daemon(state, config)
    try:
        assert (state / "reserve.ballast").is_file()
        fill(small_disk, "filler1")
        d.send("lockdown start")                      # the reserve is released for it
        d.expect("Lockdown started")
        fill(small_disk, "filler2")                   # and now it is gone too
        for _ in range(3):
            d.send("press")
            d.expect("pressed")
            time.sleep(0.1)
        d.send("approve")
        d.expect("Refused (approve)")
        d.send("deny")
        d.expect_any("Denied", "Refused (deny)")
        s = status(d)
        assert "strike pin off (locked)" in s and "LOCKDOWN active" in s and labels.alarm("journal_failure") in s
        (small_disk / "filler1").unlink()
        (small_disk / "filler2").unlink()
        # the core retries every 10 s: wait for the journal to take events again
        wait_for(lambda: labels.alarm("journal_failure") not in status(d), timeout=60, interval=1.0,
                 what="journal recovery")
        quit_(d)
    finally:
        d.close()
    d = Daemon(state, config)
    try:
        assert_locked_down_and_refusing(d)
        quit_(d)
    finally:
        d.close()
    events = events_in(state)
    check_invariants(events)
    assert lockdowns_open(events)
    recovered = [e for e in events if e.type == ev.JOURNAL_RECOVERED]
    assert recovered, "the gap is announced"
    r = recovered[0].data
    assert r["missed_events"] >= 1 and r["presses"] >= 1 and r["first_missed"] and r["last_missed"]


# ---------------------------------------------------------------- SIGKILL after each step
STEPS = [("press", "pressed"), ("approve", "Approved: the door is unlocked"), ("unlock", "Unlocked now"),
         ("lockdown start", "Lockdown started")]


@pytest.mark.parametrize("upto", range(1, len(STEPS) + 1), ids=[s[0] for s in STEPS])
def test_sigkill_after_each_step_of_ring_approve_unlock_lockdown(tmp_path, config, upto):
    state = tmp_path / "state"
    d = Daemon(state, config)
    try:
        for command, answer in STEPS[:upto]:
            d.send(command)
            d.expect(answer)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(30)
    finally:
        d.close()
    for _restart in range(2):
        d = Daemon(state, config)
        try:
            s = status(d)
            assert "strike pin off (locked)" in s
            assert ("LOCKDOWN active" in s) == (upto == len(STEPS))
            quit_(d)
        finally:
            d.close()
    events = events_in(state)
    check_invariants(events)
    assert lockdowns_open(events) == (upto == len(STEPS))
