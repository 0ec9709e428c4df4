"""History pages on their own read-only connection, one query per page (issue 12): a 10,000-row
export once ran 1,994 queries on the writer's connection and slowed concurrent appends."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from controller import events as ev
from controller.journal_reader import JournalReader


def rings(journal, n: int) -> dict[str, str]:
    """n rings with every outcome in turn; returns request_id -> expected outcome."""
    expected = {}
    for i in range(n):
        rid = f"ring-{i}"
        journal.append(ev.BUZZER_PRESSED, rid, presses=1)
        journal.append(ev.SNAPSHOT_CAPTURED, rid, size=1)
        kind = i % 4
        if kind == 0:
            journal.append(ev.ENTRY_APPROVED, rid, "Sam Staff")
            journal.append(ev.RING_EXPIRED, rid)        # a later event never overrides the first outcome
            expected[rid] = "approved"
        elif kind == 1:
            journal.append(ev.ENTRY_DENIED, rid, "Ada Admin")
            expected[rid] = "denied"
        elif kind == 2:
            journal.append(ev.RING_EXPIRED, rid)
            expected[rid] = "expired"
        else:
            expected[rid] = "pending"
    return expected


@pytest.fixture
def reader(journal):
    r = JournalReader(journal.path, journal.campus, journal.door, journal.epoch)
    yield r
    r.close()


def test_a_page_with_its_ring_outcomes_is_one_query(journal, reader):
    expected = rings(journal, 40)
    statements: list[str] = []
    reader._db().set_trace_callback(statements.append)
    page = reader.page(limit=1000)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1, statements
    assert [r.event.seq for r in page] == sorted((r.event.seq for r in page), reverse=True)
    presses = {r.event.request_id: r for r in page if r.event.type == ev.BUZZER_PRESSED}
    assert {rid: r.outcome for rid, r in presses.items()} == expected
    assert presses["ring-0"].outcome_by == "Sam Staff" and presses["ring-1"].outcome_by == "Ada Admin"
    assert presses["ring-2"].outcome_by is None
    assert all(r.outcome == "" for r in page if r.event.type != ev.BUZZER_PRESSED)


def test_filters_and_paging_match_the_writer_query(journal, reader):
    rings(journal, 12)
    for kw in ({}, {"types": [ev.BUZZER_PRESSED]}, {"before_seq": 20, "limit": 5},
               {"types": [ev.ENTRY_DENIED, ev.RING_EXPIRED], "limit": 3}):
        assert [r.event for r in reader.page(**kw)] == journal.query(**kw), kw


def test_the_reader_cannot_write(journal, reader):
    rings(journal, 1)
    with pytest.raises(sqlite3.OperationalError):
        reader._db().execute("DELETE FROM events")
    assert journal.last_event() is not None


def test_a_page_is_read_while_the_writer_holds_its_lock(journal, reader):
    """The panel's reads never wait for the writer's connection (nor hold it)."""
    rings(journal, 5)
    done = threading.Event()
    with journal._lock:                      # the writer's connection is busy
        threading.Thread(target=lambda: (reader.page(limit=100), done.set()), daemon=True).start()
        assert done.wait(30), "the history read waited for the writer's lock"
