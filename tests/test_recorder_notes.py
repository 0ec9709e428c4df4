"""The recorder's NOTIFY to the board never exceeds PostgreSQL's payload limit.

A NOTIFY of 8000 bytes or more is refused and aborts its transaction. The board bench found the
gap scan failing on every pass once a few hundred doors had gaps at once (a broker outage does
that): it named every door in one NOTIFY. Long door names (63 + 63 characters are valid) reach
the limit with a few dozen doors.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import psycopg
import pytest

from district.board.live import doors_named
from district.recorder import gaps, notes
from district.recorder.messages import Event
from district.recorder.store import notify_board

LONG_CAMPUS = "c" + "x" * 62          # the longest valid names (docs/mqtt.md: 1 + 62 characters)


def _long_door(i: int) -> str:
    return f"{i:03d}" + "d" * 60


def test_a_short_note_names_the_doors_and_a_long_one_says_everything() -> None:
    short = notes.note("gaps", ["lincoln/main", "lincoln/side"])
    assert json.loads(short) == {"gaps": ["lincoln/main", "lincoln/side"]}
    assert doors_named(notes.CHANNEL, short) == {("lincoln", "main"), ("lincoln", "side")}
    long = notes.note("doors", [f"{LONG_CAMPUS}/{_long_door(i)}" for i in range(60)])
    assert len(long.encode()) < 8000 and json.loads(long) == {"doors": "*"}
    assert doors_named(notes.CHANNEL, long) is None           # the board rebuilds the whole grid


@pytest.mark.postgres
def test_a_gap_scan_with_hundreds_of_doors_behind_commits_and_tells_the_board(pg) -> None:
    doors = [_long_door(i) for i in range(300)]
    with pg.connect() as conn:
        conn.cursor().executemany(
            "INSERT INTO seq_watermarks (campus, door, epoch, max_seq, first_seen_at)"
            " VALUES (%s, %s, 'e1', 3, now() - interval '1 hour')", [(LONG_CAMPUS, d) for d in doors])
        conn.cursor().executemany(
            "INSERT INTO event_keys (id, campus, door, epoch, seq, ts, received_at)"
            " VALUES (%s, %s, %s, 'e1', %s, now(), now() - interval '1 hour')",
            [(uuid.uuid4(), LONG_CAMPUS, d, seq) for d in doors for seq in (1, 3)])   # seq 2 missing
        conn.commit()
    with psycopg.connect(pg.dsn, autocommit=True) as listener, psycopg.connect(pg.dsn, autocommit=True) as conn:
        listener.execute(f"LISTEN {notes.CHANNEL}")
        result = gaps.scan(conn, delay=0.0)
        assert result.ran and result.opened == 300 and result.open_now == 300
        received = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert received and doors_named(notes.CHANNEL, received[0]) is None


@pytest.mark.postgres
def test_a_batch_touching_dozens_of_long_named_doors_commits_and_tells_the_board(pg) -> None:
    """store.py named up to 199 doors: with long names that is far past 8000 bytes, and the
    refused NOTIFY rolled back the very batch it announced."""
    items = [Event(campus=LONG_CAMPUS, door=_long_door(i), id=str(uuid.uuid4()), epoch="e1", seq=1,
                   type="door_opened", ts=datetime.now(timezone.utc), request_id=None, actor=None, text="{}")
             for i in range(80)]
    with psycopg.connect(pg.dsn, autocommit=True) as listener, psycopg.connect(pg.dsn) as conn:
        listener.execute(f"LISTEN {notes.CHANNEL}")
        notify_board(conn, items)
        conn.commit()
        received = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert received and doors_named(notes.CHANNEL, received[0]) is None
