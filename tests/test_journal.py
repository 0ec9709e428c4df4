"""SQLite journal: durable append, seq, outbox cursor, queries, failure."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta

import pytest

from controller import events as ev
from controller.journal import Journal, JournalError


@pytest.fixture
def journal(tmp_path, clock):
    j = Journal(tmp_path / "j.sqlite3", "campus-a", "door-1", now=clock.now)
    yield j
    j.close()


def test_append_commits_with_uuid_seq_and_utc_ts(journal, tmp_path):
    e = journal.append(ev.BUZZER_PRESSED, "rid-1", None, presses=1)
    assert e.seq == 1 and len(e.id) == 36
    d = e.to_dict()
    assert d["ts"].endswith("Z") and d["campus"] == "campus-a" and d["door"] == "door-1"
    # visible to an independent connection: it is committed, not just buffered
    with sqlite3.connect(tmp_path / "j.sqlite3") as other:
        assert other.execute("SELECT type, request_id FROM events").fetchall() == [(ev.BUZZER_PRESSED, "rid-1")]
    other.close()


def test_wal_and_full_sync(journal):
    mode = journal._db.execute("PRAGMA journal_mode").fetchone()[0]
    sync = journal._db.execute("PRAGMA synchronous").fetchone()[0]
    assert mode == "wal" and sync == 2


def test_seq_continues_across_reopen(tmp_path, clock):
    j = Journal(tmp_path / "j.sqlite3", "c", "d", now=clock.now)
    for _ in range(3):
        j.append(ev.DOOR_OPENED)
    j.close()
    j = Journal(tmp_path / "j.sqlite3", "c", "d", now=clock.now)
    assert j.append(ev.DOOR_CLOSED).seq == 4
    j.close()


def test_concurrent_appends_get_unique_consecutive_seqs(journal):
    def work():
        for _ in range(25):
            journal.append(ev.BUZZER_REPEATED)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = sorted(e.seq for e in journal.query(limit=1000))
    assert seqs == list(range(1, 101))


def test_listeners_hear_only_committed_events_and_cannot_break_append(journal):
    heard = []
    journal.subscribe(lambda e: heard.append((e.seq, journal.get(e.seq) is not None)))
    journal.subscribe(lambda e: 1 / 0)
    e = journal.append(ev.DOOR_OPENED)
    assert heard == [(e.seq, True)]


def test_outbox_cursor_and_mark_delivered(journal):
    for _ in range(5):
        journal.append(ev.DOOR_OPENED)
    assert journal.outbox_depth() == 5
    batch = journal.undelivered(limit=3)
    assert [e.seq for e in batch] == [1, 2, 3]
    journal.mark_delivered([1, 2])
    assert [e.seq for e in journal.undelivered()] == [3, 4, 5]
    assert journal.outbox_depth() == 3


def test_query_filters_and_paging(journal, clock):
    journal.append(ev.BUZZER_PRESSED, "a")
    clock.advance(3600)
    journal.append(ev.ENTRY_APPROVED, "a", "Ms. Rivera")
    journal.append(ev.DOOR_UNLOCKED, "a", "Ms. Rivera")
    assert [e.type for e in journal.query(types=[ev.ENTRY_APPROVED])] == [ev.ENTRY_APPROVED]
    newest_first = journal.query(limit=2)
    assert [e.seq for e in newest_first] == [3, 2]
    assert [e.seq for e in journal.query(before_seq=2)] == [1]
    since = clock.now() - timedelta(minutes=1)
    assert [e.seq for e in journal.query(since=since)] == [3, 2]
    assert [e.seq for e in journal.query(until=since)] == [1]
    assert [e.seq for e in journal.for_request("a")] == [1, 2, 3]


def test_failed_write_raises_and_does_not_consume_seq(journal):
    journal.append(ev.DOOR_OPENED)
    with pytest.raises(JournalError):
        journal.append(ev.DOOR_CLOSED, bad=object())   # not JSON-serializable
    assert journal.append(ev.DOOR_CLOSED).seq == 2


def test_read_only_database_fails_loudly(tmp_path, clock):
    j = Journal(tmp_path / "j.sqlite3", "c", "d", now=clock.now)
    j.append(ev.DOOR_OPENED)
    j.close()
    ro = Journal.__new__(Journal)
    uri = f"file:{tmp_path / 'j.sqlite3'}?mode=ro"
    ro.__dict__.update(path=tmp_path / "j.sqlite3", campus="c", door="d", _now=clock.now,
                       _lock=threading.Lock(), _listeners=[], _last_seq=1, _closed=False,
                       _db=sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None))
    with pytest.raises(JournalError):
        ro.append(ev.DOOR_CLOSED)
    ro.close()


def test_close_is_idempotent_and_append_after_close_fails(journal):
    journal.close()
    journal.close()
    with pytest.raises(JournalError):
        journal.append(ev.DOOR_OPENED)


def test_outbox_depth_counter_matches_the_table(journal, tmp_path, clock):
    for _ in range(7):
        journal.append(ev.DOOR_OPENED)
    journal.mark_delivered([2, 3, 3, 99])        # duplicates and unknown seqs change nothing extra
    journal.mark_delivered([2])                  # an ack seen twice after a reconnect
    assert journal.outbox_depth() == 5
    count = journal._db.execute("SELECT COUNT(*) FROM events WHERE delivered = 0").fetchone()[0]
    assert count == 5
    journal.close()
    reopened = Journal(tmp_path / "j.sqlite3", "c", "d", now=clock.now)
    assert reopened.outbox_depth() == 5
    reopened.close()


def test_mark_delivered_is_one_transaction(journal):
    for _ in range(50):
        journal.append(ev.DOOR_OPENED)
    statements = []
    journal._db.set_trace_callback(statements.append)
    journal.mark_delivered(range(1, 51))
    journal._db.set_trace_callback(None)
    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == ["BEGIN IMMEDIATE", "COMMIT"]
    assert journal.outbox_depth() == 0
