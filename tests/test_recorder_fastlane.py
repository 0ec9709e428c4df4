"""The recorder's fast lane (issue 15, district/recorder/fastlane.py): a door's state is
committed and announced to the board while a backlog of events is still waiting for its
commit, and yet every PUBACK goes out after its own message's commit and in arrival order; an
older state arriving later never overwrites a newer one; a SIGKILL mid-load with states and
events mixed loses and duplicates nothing."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from district.recorder.link import Message
from district.recorder.service import Recorder
from tests.conftest import wait_for
from tests.support_recorder import (
    RecorderProcess,
    count,
    doors,
    kill_mid_load,
    recorder_settings,
    rows,
    started_recorder,
)

DOOR = ("lincoln", "main-entrance")
NAME = f"{DOOR[0]}/{DOOR[1]}"


def _msg(mid: int) -> Message:
    return Message(f"entry/lincoln/d{mid}/events", b"{}", mid, 1, 1)


def test_the_ack_order_sends_only_the_committed_prefix_in_arrival_order() -> None:
    from district.recorder.fastlane import AckOrder

    acked: list[list[int]] = []
    order = AckOrder(lambda ms: acked.append([m.mid for m in ms]))
    msgs = [_msg(i) for i in range(1, 7)]
    for m in msgs:
        order.arrived(m)
    order.done([msgs[3], msgs[4]])          # the fast lane commits 4 and 5 first: nothing may go yet
    assert acked == [] and order.waiting() == 6
    order.done([msgs[0], msgs[1]])          # 1 and 2 committed: they go, 3 still holds 4 and 5 back
    assert acked == [[1, 2]]
    order.done([msgs[2]])
    assert acked == [[1, 2], [3, 4, 5]] and order.waiting() == 1
    order.done([msgs[5]])
    assert acked == [[1, 2], [3, 4, 5], [6]] and order.waiting() == 0


def _door_state(pg: Any, door: tuple[str, str] = DOOR) -> Any:
    found = rows(pg, "SELECT state FROM doors WHERE campus = %s AND door = %s", *door)
    return found[0][0] if found else None


@pytest.mark.postgres
@pytest.mark.broker
def test_a_state_behind_a_stalled_backlog_is_committed_and_announced_first_yet_acked_in_order(pg, dbroker) -> None:
    r = Recorder(recorder_settings(pg, dbroker, client_id=f"rec-fast-{uuid.uuid4().hex[:6]}"))
    release = threading.Event()
    committing: list[int] = []
    commit = r._commit

    def first_stalls(batch: list[Message], items: list[Any]) -> Any:
        committing.append(len(batch))
        if len(committing) == 1:
            release.wait(60)
        return commit(batch, items)

    arrived: list[tuple[str, int]] = []
    inbox = r.link.inbox
    put = inbox.put

    def recording_put(m: Message, *args: Any, **kwargs: Any) -> None:
        arrived.append((m.topic, m.mid))
        put(m, *args, **kwargs)

    acks: list[list[tuple[str, int]]] = []
    wrong: list[str] = []                     # a message acknowledged before its row was committed

    def checked_ack(messages: list[Message]) -> None:
        ids = [json.loads(m.payload)["id"] for m in messages if m.topic.endswith("/events")]
        times = [json.loads(m.payload)["ts"] for m in messages if m.topic == f"entry/{NAME}/state"]
        with psycopg.connect(pg.dsn) as conn:
            done = conn.execute("SELECT count(*) FROM events WHERE id = ANY(%s::uuid[])", (ids,)).fetchone()
            for ts in times:    # the door's committed state is that one or a newer one
                ok = conn.execute("SELECT (state->>'ts')::timestamptz >= %s::timestamptz FROM doors"
                                  " WHERE campus = %s AND door = %s", (ts, *DOOR)).fetchone()
                if not (ok and ok[0]):
                    wrong.append(f"state of {ts} acked before it was committed")
        if done is None or done[0] != len(ids):
            wrong.append(f"{len(ids)} events acked, {done} committed")
        acks.append([(m.topic, m.mid) for m in messages])
        real_ack(messages)

    real_ack = r.link.ack
    r._commit = first_stalls                    # type: ignore[method-assign]
    r.link.ack = checked_ack                    # type: ignore[method-assign]
    inbox.put = recording_put                   # type: ignore[method-assign,assignment]
    (door,) = doors(dbroker, "lincoln")
    try:
        started_recorder(r, door, 1)
        wait_for(lambda: committing, what="the first events batch to start committing (and stall)")
        acked_before = sum(len(a) for a in acks)
        for _ in range(300):                    # a backlog behind the stalled commit
            door.event("door_closed")
        mark = f"fast lane {uuid.uuid4().hex[:6]}"
        with psycopg.connect(pg.dsn, autocommit=True) as listener:
            listener.execute("LISTEN district")
            door.publish_state(door="open", fault=mark)
            door.flush()
            # the state is committed and the board told, with the backlog still waiting ...
            wait_for(lambda: (_door_state(pg) or {}).get("fault") == mark, what="the state committed first")
            heard = [json.loads(n.payload) for n in listener.notifies(timeout=2)]
            assert any(NAME in h.get("doors", []) for h in heard), heard
        assert len(committing) == 1 and count(pg, "SELECT count(*) FROM events") == 0
        # ... but nothing after the stalled events is acknowledged: PUBACKs keep arrival order
        time.sleep(0.5)
        assert sum(len(a) for a in acks) == acked_before
        release.set()
        wait_for(lambda: count(pg, "SELECT count(*) FROM events") == 301, what="the backlog committed")
        wait_for(lambda: sum(len(a) for a in acks) == len(arrived), what="every message acknowledged")
        assert [m for a in acks for m in a] == arrived, "PUBACKs out of arrival order"
        assert not wrong, wrong
        assert (_door_state(pg) or {}).get("fault") == mark
    finally:
        release.set()
        r.stop(retire=True)
        door.close()


@pytest.mark.postgres
@pytest.mark.broker
def test_an_older_state_arriving_after_a_newer_one_does_not_overwrite_it(pg, dbroker, recorder) -> None:
    name = f"door-{uuid.uuid4().hex[:6]}"
    (door,) = doors(dbroker, "lincoln", door=name)
    try:
        door.publish_state(fault="newer", ts="2030-01-01T08:00:02.000Z")
        door.publish_state(fault="older", ts="2030-01-01T08:00:01.000Z")
        door.publish_state(fault="older still", ts="2030-01-01T08:00:00.500Z")
        door.flush()
        wait_for(lambda: recorder.stats()["states"] >= 4, what="the connect state and three more written")
        assert (_door_state(pg, ("lincoln", name)) or {}).get("fault") == "newer"
    finally:
        door.close()


def _mixed_load(sims: list[Any], per_door: int, done: threading.Event) -> None:
    for i in range(per_door):
        for d in sims:
            d.event("door_opened" if i % 2 else "door_closed")
            if i % 5 == 0:
                d.publish_state(fault=f"state {i}")
        if i % 50 == 0:
            time.sleep(0.01)
    for d in sims:
        d.publish_state(fault="last")
        d.flush(timeout=120)
    done.set()


@pytest.mark.postgres
@pytest.mark.broker
@pytest.mark.process
def test_sigkill_mid_load_with_states_and_events_loses_and_duplicates_nothing(pg, dbroker, tmp_path: Path) -> None:
    per_door = 1000                                   # both lanes' messages in flight at the kill
    proc, config, log, sims, done = kill_mid_load(pg, dbroker, tmp_path, "fastkill", _mixed_load, per_door,
                                                 under_way=400)
    time.sleep(1.0)
    proc.start()
    try:
        wait_for(done.is_set, timeout=180, what="everything published")
        total = 3 * per_door
        wait_for(lambda: count(pg, "SELECT count(*) FROM events") >= total, timeout=180, what="every event recorded")
        wait_for(lambda: count(pg, "SELECT count(*) FROM doors WHERE state->>'fault' = 'last'") == 3,
                 what="every door's last state recorded")
        time.sleep(1.0)
        assert count(pg, "SELECT count(*) FROM events") == total
        assert count(pg, "SELECT count(DISTINCT id) FROM events") == total
        assert rows(pg, "SELECT campus, min(seq), max(seq), count(*) FROM events GROUP BY 1 ORDER BY 1") == \
            [(c, 1, per_door, per_door) for c in ("jefferson", "lincoln", "washington")]
        assert count(pg, "SELECT count(*) FROM doors WHERE state->>'fault' = 'last'") == 3
    finally:
        assert proc.stop() == 0
        RecorderProcess(config, log).retire()
        for d in sims:
            d.close()
