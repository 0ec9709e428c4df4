"""The core's one change feed: each change once, with its events and resulting status, after the
lock is released, in seq order (issue 11, finding 5)."""

from __future__ import annotations

import threading

import pytest

from controller import events as ev
from controller.core import EntryCore
from controller.door_settings import DoorSettings
from controller.journal import Journal


class Strike:
    def unlock(self) -> None: ...
    def lock(self) -> None: ...


@pytest.fixture
def core(tmp_path, clock):
    journal = Journal(tmp_path / "j.sqlite3", "campus", "door", now=clock.now)
    yield EntryCore(journal, Strike(), DoorSettings(debounce_ms=0), clock=clock)
    journal.close()


def test_each_change_carries_its_events_and_status_and_runs_outside_the_lock(core, clock):
    changes = []

    def listener(change):
        held = core._lock._is_owned()            # noqa: SLF001  (what this test is about)
        changes.append((change, held))

    core.add_listener(listener)
    rid = core.press().request_id
    assert core.approve(rid, "Ms Office").ok
    clock.advance(10)
    core.tick()                                  # the pulse ends: one change from a timer
    core.tick()                                  # nothing due: no change
    assert [held for _c, held in changes] == [False, False, False], "listeners run after the lock"
    (press, _), (approve, _), (relock, _) = changes
    assert [e.type for e in press.events] == [ev.BUZZER_PRESSED]
    assert press.status["ring"]["request_id"] == rid
    assert [e.type for e in approve.events] == [ev.ENTRY_APPROVED, ev.DOOR_UNLOCKED]
    assert approve.status["strike"] == "unlocked" and approve.status["ring"] is None
    assert [e.type for e in relock.events] == [ev.DOOR_LOCKED]
    assert relock.status["strike"] == "locked"


def test_concurrent_changes_arrive_once_each_in_seq_order(core):
    seen: list[int] = []
    core.add_listener(lambda change: seen.extend(e.seq for e in change.events))

    def worker():
        for _ in range(50):
            core.tamper_changed(True)
            core.tamper_changed(False)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == sorted(seen) and len(seen) == len(set(seen)), "once each, in seq order"
    assert seen and seen[-1] == core._recorder.last_seq          # noqa: SLF001
