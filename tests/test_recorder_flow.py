"""The recorder's flow against a real Mosquitto and PostgreSQL: the buffered paho client works
over TLS (as the district broker link runs in production), a batch is acknowledged only once
its rows are committed, a crash between commit and acknowledgement re-delivers the batch and
the database ignores the copies, and a stalled database holds at most ``receive_maximum``
messages in the recorder (the broker keeps the rest)."""

from __future__ import annotations

import json
import queue
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest

from district import config as dcfg
from district.recorder.link import Message, RecorderLink
from district.recorder.service import Recorder
from district.recorder.wire import BufferedSocket
from tests.conftest import wait_for
from tests.support_mqtt import Broker, make_certs
from tests.support_recorder import count, doors, recorder_settings, started_recorder

pytestmark = [pytest.mark.postgres, pytest.mark.broker]


def _tls_publisher(broker: Broker, certs: Any) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    c.username_pw_set("ctl", broker.accounts["ctl"])
    c.tls_set(ca_certs=str(certs.ca), certfile=str(certs.client_cert), keyfile=str(certs.client_key))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


def _drain(inbox: "queue.Queue[Message]", n: int, timeout: float = 60) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        try:
            got.append(inbox.get(timeout=0.5))
        except queue.Empty:
            pass
    return got


def test_buffered_link_over_tls_gets_every_message_in_order_and_acks_reach_the_broker(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    broker = Broker(tmp_path / "broker", tls=certs)
    broker.start()
    settings = dcfg.Broker(port=broker.port, username="district", tls=True, ca_file=str(certs.ca),
                           cert_file=str(certs.client_cert), key_file=str(certs.client_key),
                           client_id=f"rec-tls-{uuid.uuid4().hex[:6]}", session_expiry_seconds=600,
                           retained_catchup_seconds=0.2)
    inbox: queue.Queue[Message] = queue.Queue()
    link = RecorderLink(settings, broker.accounts["district"], inbox)
    publisher = None
    try:
        link.start()
        wait_for(link.subscribed.is_set, what="the recorder to subscribe over TLS")
        wait_for(link.catchup_done.is_set, what="the retained catch-up to end")
        sock = link.client._sock
        assert isinstance(sock, BufferedSocket) and isinstance(sock.sock, ssl.SSLSocket)
        publisher = _tls_publisher(broker, certs)
        sent = []
        for i in range(400):
            if i % 10 == 9:
                topic, payload = f"entry/lincoln/main/snapshot/r{i}", b"\xff\xd8" + bytes([i % 256]) * 30_000
            else:
                topic, payload = "entry/lincoln/main/events", json.dumps({"n": i}).encode()
            sent.append((topic, payload))
            publisher.publish(topic, payload, qos=1)
        got = _drain(inbox, len(sent))
        assert [(m.topic, m.payload) for m in got] == sent
        assert sock.reads > 0                   # the wrapper did the reading
        link.ack(got)
        time.sleep(0.5)
        link.stop()                             # the session stays; nothing unacknowledged in it
        again = RecorderLink(settings, broker.accounts["district"], inbox)
        again.start()
        wait_for(again.subscribed.is_set, what="the recorder to come back")
        time.sleep(1.0)
        assert inbox.qsize() == 0, "acknowledged messages were delivered again"
        again.stop(retire=True)
    finally:
        if publisher is not None:
            publisher.loop_stop()
            publisher.disconnect()
        broker.stop()


def test_acks_follow_the_commit_and_a_crash_between_them_redelivers_a_copy_the_db_ignores(pg, dbroker) -> None:
    client_id = f"rec-ack-{uuid.uuid4().hex[:6]}"
    first = Recorder(recorder_settings(pg, dbroker, client_id=client_id))
    seen_at_ack: list[tuple[int, int]] = []     # (event ids in the batch, of them committed, seen from outside)

    def check_then_crash(messages: list[Message]) -> None:
        ids = [json.loads(m.payload)["id"] for m in messages if m.topic.endswith("/events")]
        with psycopg.connect(pg.dsn) as conn:
            committed = conn.execute("SELECT count(*) FROM events WHERE id = ANY(%s::uuid[])", (ids,)).fetchone()
        seen_at_ack.append((len(ids), committed[0] if committed else 0))
        # ... and the recorder "dies" here: committed, never acknowledged

    first.link.ack = check_then_crash   # type: ignore[method-assign]
    (door,) = doors(dbroker, "lincoln")
    try:
        started_recorder(first, door, 120)
        # a batch's events commit before its door rows do (two connections): wait for the acks
        wait_for(lambda: sum(n for n, _ in seen_at_ack) == 120, what="120 events acknowledged")
        assert all(n == committed for n, committed in seen_at_ack), seen_at_ack
        assert count(pg, "SELECT count(*) FROM events") == 120
    finally:
        first.stop()                            # disconnects: the broker keeps the unacknowledged
    second = Recorder(recorder_settings(pg, dbroker, client_id=client_id))
    try:
        second.start()
        wait_for(lambda: second.stats()["duplicates"] >= 120, what="the batch delivered again")
        assert second.stats()["events"] == 0
        assert count(pg, "SELECT count(*) FROM events") == 120
        assert count(pg, "SELECT count(DISTINCT id) FROM events") == 120
    finally:
        second.stop(retire=True)
        door.close()


def test_a_stalled_database_holds_at_most_receive_maximum_messages_in_the_recorder(pg, dbroker) -> None:
    r = Recorder(recorder_settings(pg, dbroker, client_id=f"rec-bound-{uuid.uuid4().hex[:6]}", receive_maximum=20))
    release = threading.Event()
    held: list[int] = []
    commit = r._commit

    def stalled(batch: list[Message], items: list[Any]) -> Any:
        held.append(len(batch))
        release.wait(60)
        return commit(batch, items)

    r._commit = stalled    # type: ignore[method-assign]
    (door,) = doors(dbroker, "washington")
    try:
        started_recorder(r, door, 200, "door_closed")
        # nothing is acknowledged while the first commit stalls: every message taken in by the
        # classifier (the stalled batch, the one queued behind it, the one in its hands) plus
        # the inbox is the whole of what the recorder holds
        wait_for(lambda: held and r.received + r.inbox.qsize() == 20, what="20 messages in the recorder")
        time.sleep(1.0)
        assert len(held) == 1 and r.received + r.inbox.qsize() == 20, "more than receive_maximum taken in"
        release.set()
        wait_for(lambda: count(pg, "SELECT count(*) FROM events") == 200, what="the other 180 once the database moves")
    finally:
        release.set()
        r.stop(retire=True)
        door.close()


def test_the_next_batch_is_classified_while_a_commit_runs_and_acked_only_after_its_own_commit(pg, dbroker) -> None:
    r = Recorder(recorder_settings(pg, dbroker, client_id=f"rec-pipe-{uuid.uuid4().hex[:6]}"))
    release = threading.Event()
    commit = r._commit
    committing: list[int] = []
    acks: list[tuple[int, int]] = []          # (event messages in the acked batch, of them committed)

    def first_stalls(batch: list[Message], items: list[Any]) -> Any:
        committing.append(len(batch))
        if len(committing) == 1:
            release.wait(60)
        return commit(batch, items)

    def checked_ack(messages: list[Message]) -> None:
        ids = [json.loads(m.payload)["id"] for m in messages if m.topic.endswith("/events")]
        with psycopg.connect(pg.dsn) as conn:
            row = conn.execute("SELECT count(*) FROM events WHERE id = ANY(%s::uuid[])", (ids,)).fetchone()
        acks.append((len(ids), row[0] if row else 0))
        real_ack(messages)

    real_ack = r.link.ack
    r._commit = first_stalls                    # type: ignore[method-assign]
    r.link.ack = checked_ack                    # type: ignore[method-assign]
    (door,) = doors(dbroker, "lincoln")
    try:
        started_recorder(r, door, 1)
        wait_for(lambda: committing, what="a first commit to start (and stall)")
        for _ in range(50):
            door.event("door_closed")
        door.flush()
        # batch N+1 is classified and waiting while batch N's commit has not returned ...
        wait_for(lambda: r.classified.qsize() == 1, what="the next batch classified during the commit")
        # (the door's retained state and status, taken by the fast lane before the stalled event
        # arrived, may be acknowledged: they came first)
        assert len(committing) == 1 and not any(n for n, _ in acks), "the next batch went ahead of the stalled commit"
        release.set()
        wait_for(lambda: count(pg, "SELECT count(*) FROM events") == 51, what="all 51 events committed")
        wait_for(lambda: sum(n for n, _ in acks) == 51, what="all 51 acknowledged")
        # ... and every batch was acknowledged only once its own rows were committed
        assert all(n == done for n, done in acks), acks
    finally:
        release.set()
        r.stop(retire=True)
        door.close()
