"""The writer's two connections (issue 15): a batch's events (ledger, events, watermarks) and
the rest of it (door rows, states, snapshots) are written in two transactions at once, on
tables disjoint from each other, so neither waits for the other; the batch is acknowledged,
and the board notified, only once both have committed."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from district import db
from district.recorder.link import Message
from district.recorder.messages import Event, State, classify
from district.recorder.service import Recorder
from tests.conftest import wait_for
from tests.support_recorder import count, recorder_settings, rows

pytestmark = [pytest.mark.postgres, pytest.mark.broker]

EPOCH = uuid.uuid4().hex


def _event(seq: int) -> Message:
    payload = {"campus": "lincoln", "door": "main", "epoch": EPOCH, "id": str(uuid.uuid4()), "seq": seq,
               "ts": "2026-05-04T08:00:00.000Z", "type": "door_opened"}
    return Message("entry/lincoln/main/events", json.dumps(payload).encode(), seq, 1, 0)


def _state() -> Message:
    payload = {"alarms": [], "camera_ok": True, "campus": "lincoln", "door": "locked", "door_id": "main",
               "epoch": EPOCH, "fault": None, "last_seq": 3, "lockdown": None, "outbox_depth": 0,
               "ringing": None, "ts": "2026-05-04T08:00:01.000Z", "version": "0.1.0"}
    return Message("entry/lincoln/main/state", json.dumps(payload).encode(), 99, 1, 0)


def _recorder(pg: Any, dbroker: Any) -> Recorder:
    """A recorder (not started) on a fresh schema that knows campus lincoln."""
    r = Recorder(recorder_settings(pg, dbroker, client_id=f"rec-split-{uuid.uuid4().hex[:6]}"))
    db.apply_schema(pg.dsn)
    db.add_campuses(pg.dsn, ("lincoln",))
    r._refresh_campuses()
    return r


def _classified(r: Recorder, batch: list[Message]) -> list[Any]:
    return [classify(m.topic, m.payload, "entry", r.known, 1 << 20) for m in batch]


def test_events_commit_while_the_door_rows_wait_and_the_batch_ends_only_once_both_committed(pg, dbroker) -> None:
    r = _recorder(pg, dbroker)
    first = [_event(1)]
    assert r._commit(first, _classified(r, first))
    batch = [_event(2), _event(3), _state()]
    items = _classified(r, batch)
    done: list[Any] = []
    with psycopg.connect(pg.dsn, autocommit=True) as listener, psycopg.connect(pg.dsn) as blocker:
        listener.execute("LISTEN district")
        blocker.execute("SELECT 1 FROM doors WHERE campus = 'lincoln' AND door = 'main' FOR UPDATE")
        writer = threading.Thread(target=lambda: done.append(r._commit(batch, items)))
        writer.start()
        try:
            # the door row is locked by someone else: the events are committed all the same ...
            wait_for(lambda: count(pg, "SELECT count(*) FROM events") == 3, what="the events committed")
            writer.join(0.5)
            # ... but the batch is not done (so not acknowledged) and the board not woken
            assert not done and writer.is_alive()
            assert not list(listener.notifies(timeout=0.2))
            assert count(pg, "SELECT count(*) FROM doors WHERE state IS NOT NULL") == 0
        finally:
            blocker.rollback()
            writer.join(30)
        outcome = done[0]
        assert outcome.events == 2 and outcome.states == 1
        assert count(pg, "SELECT count(*) FROM doors WHERE state IS NOT NULL") == 1
        note = next(iter(listener.notifies(timeout=5)))
        assert json.loads(note.payload) == {"doors": ["lincoln/main"]}
    again = r._commit(batch, items)            # a re-delivery changes nothing
    assert again is not None and again.events == 0 and again.duplicates == 2
    assert count(pg, "SELECT count(*) FROM events") == 3
    r._drop_connection()
    r._side_worker.shutdown()


def test_a_refused_events_part_is_written_one_by_one_without_writing_the_committed_rest_again(pg, dbroker) -> None:
    r = _recorder(pg, dbroker)
    batch = [_event(1), _event(2), _state(), Message("entry/lincoln/main/events", b"{", 7, 1, 0)]
    items = _classified(r, batch)
    good = items[1]
    assert isinstance(good, Event)
    items[1] = replace(good, text='{"not": json')        # valid to the classifier, refused by PostgreSQL
    try:
        outcome = r._commit(batch, items)
        assert outcome is not None and outcome.events == 1 and outcome.states == 1
        assert outcome.rejected == {"invalid_json": 1, "db_refused": 1}
        assert rows(pg, "SELECT reason, count FROM rejected_totals ORDER BY reason") == [("db_refused", 1),
                                                                                          ("invalid_json", 1)]
        assert count(pg, "SELECT count(*) FROM events") == 1
    finally:
        r._drop_connection()
        r._side_worker.shutdown()


def test_a_refused_door_part_is_written_one_by_one_without_writing_the_committed_events_again(pg, dbroker) -> None:
    r = _recorder(pg, dbroker)
    batch = [_event(1), _event(2), _state()]
    items = _classified(r, batch)
    state = items[2]
    assert isinstance(state, State)
    items[2] = replace(state, text='{"not": json')       # refused by PostgreSQL (pipelined transaction)
    try:
        outcome = r._commit(batch, items)
        assert outcome is not None and outcome.events == 2 and outcome.duplicates == 0
        assert outcome.rejected == {"db_refused": 1}
        assert count(pg, "SELECT count(*) FROM events") == 2
        assert count(pg, "SELECT count(*) FROM doors WHERE last_seen IS NOT NULL") == 1
    finally:
        r._drop_connection()
        r._side_worker.shutdown()
