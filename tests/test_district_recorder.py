"""The district recorder against a real Mosquitto and a real PostgreSQL: what the campuses
publish ends up in the database exactly once, gaps are raised and cleared, bad input is
counted and kept without stopping anything."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from district.recorder.service import Recorder
from tests.conftest import wait_for
from tests.support_recorder import count, doors, recorder_settings, rows

pytestmark = [pytest.mark.postgres, pytest.mark.broker]


def test_events_state_status_and_snapshots_are_recorded(recorder, pg, dbroker) -> None:
    (door,) = doors(dbroker, "lincoln")
    ring = door.ring(snapshot_bytes=5000)
    door.event("door_opened")
    door.publish_state(ringing=ring[0]["request_id"])
    door.flush()
    wait_for(lambda: count(pg, "SELECT count(*) FROM events") == 3, what="3 events recorded")
    wait_for(lambda: count(pg, "SELECT count(*) FROM snapshots") == 1, what="the snapshot recorded")
    (online, state, last_seen) = rows(pg, "SELECT online, state, last_seen FROM doors WHERE campus = 'lincoln'")[0]
    assert online is True and last_seen is not None
    wait_for(lambda: rows(pg, "SELECT state->>'ringing' FROM doors")[0][0] == ring[0]["request_id"],
             what="the newest state")
    size, sha = rows(pg, "SELECT size, sha256 FROM snapshots")[0]
    assert size == ring[1]["size"] and sha == ring[1]["sha256"]   # checkable against its event
    got = rows(pg, "SELECT seq, type, request_id, data->>'id' FROM events ORDER BY seq")
    assert [(g[0], g[1]) for g in got] == [(1, "buzzer_pressed"), (2, "snapshot_captured"), (3, "door_opened")]
    assert got[0][2] == ring[0]["request_id"] and got[0][3] == ring[0]["id"]
    door.vanish()                    # vanishes: the broker publishes the last will
    wait_for(lambda: rows(pg, "SELECT online FROM doors WHERE campus = 'lincoln'")[0][0] is False,
             what="offline from the last will")
    assert recorder.stats()["rejected"] == {}


def test_duplicates_and_resends_are_written_once(recorder, pg, dbroker) -> None:
    a, b = doors(dbroker, "lincoln", "washington")
    sent = [a.event("door_opened") for _ in range(50)] + [b.event("door_closed") for _ in range(30)]
    for e in sent[::3]:                        # at-least-once delivery: re-sends of the same events
        (a if e["campus"] == "lincoln" else b).send(e)
    for e in sent[:10]:
        a.send(e)
    a.flush(), b.flush()
    dupes = len(sent[::3]) + 10
    wait_for(lambda: recorder.stats()["received"] >= len(sent) + dupes + 4, what="every copy received")
    wait_for(lambda: recorder.stats()["duplicates"] == dupes, what="every duplicate counted")
    assert count(pg, "SELECT count(*) FROM events") == 80
    assert count(pg, "SELECT count(DISTINCT id) FROM events") == 80
    assert rows(pg, "SELECT campus, max(seq), count(*) FROM events GROUP BY campus ORDER BY campus") == \
        [("lincoln", 50, 50), ("washington", 30, 30)]
    # a different event claiming a seq already recorded (same door and epoch) is not a second row
    clash = dict(sent[0], id=str(uuid.uuid4()))
    a.send(clash)
    a.flush()
    wait_for(lambda: recorder.stats()["duplicates"] == dupes + 1, what="the seq clash refused")
    assert count(pg, "SELECT count(*) FROM events WHERE id = %s", clash["id"]) == 0
    for d in (a, b):
        d.close()


def test_gap_is_raised_after_the_delay_and_cleared_by_the_resend(recorder, pg, dbroker) -> None:
    (door,) = doors(dbroker, "jefferson")
    events = [door.make_event("door_opened") for _ in range(12)]
    for e in events[:2]:
        door.send(e)                            # 1, 2
    door.send(events[3])                        # 4 before 3: re-ordered, not a gap
    door.send(events[2])
    for e in events[4:]:                        # 5..12 without 7 and 8 (lost on the way)
        if e["seq"] not in (7, 8):
            door.send(e)
    door.flush()
    wait_for(lambda: count(pg, "SELECT count(*) FROM events") == 10, what="10 events recorded")
    wait_for(lambda: rows(pg, "SELECT from_seq, to_seq, missing, closed_at IS NULL FROM gaps") ==
             [(7, 8, 2, True)], what="the gap 7..8 raised")
    door.send(events[6])                        # the re-send fills half of it
    door.flush()
    wait_for(lambda: rows(pg, "SELECT missing FROM gaps") == [(1,)], what="one seq still missing")
    assert rows(pg, "SELECT closed_at IS NULL FROM gaps") == [(True,)]
    door.send(events[7])
    door.flush()
    wait_for(lambda: rows(pg, "SELECT missing, closed_at IS NOT NULL FROM gaps") == [(0, True)],
             what="the gap closed by the re-send")
    # the door's state names seq 13, which never arrives: a gap at the tail
    door.make_event("door_closed")
    door.publish_state()
    door.flush()
    wait_for(lambda: rows(pg, "SELECT from_seq, to_seq FROM gaps WHERE closed_at IS NULL") == [(13, 13)],
             what="the tail gap raised from the state's last_seq")
    door.send(door.sent[-1])
    door.flush()
    wait_for(lambda: count(pg, "SELECT count(*) FROM gaps WHERE closed_at IS NULL") == 0, what="tail gap closed")
    assert count(pg, "SELECT count(*) FROM gaps") == 2
    door.close()


def test_bad_input_is_counted_and_kept_never_fatal(recorder, pg, dbroker) -> None:
    (door,) = doors(dbroker, "lincoln")
    (stranger,) = doors(dbroker, "nowhere-high")
    good = door.make_event("door_opened")
    bad = [
        ("events", b"{not json"),
        ("events", json.dumps({"campus": "lincoln", "door": door.door, "seq": "one"}).encode()),
        ("events", json.dumps(dict(good, id=str(uuid.uuid4()), seq=99, door="other-door")).encode()),
        ("events", json.dumps(dict(good, id=str(uuid.uuid4()), seq=98, actor="a\u0000b")).encode()),
        ("events", b"\xff\xfe binary"),
        ("state", b"[]"),
        ("status", b"maybe"),
        ("snapshot/" + str(uuid.uuid4()), b"GIF89a not a jpeg"),
        ("snapshot/" + str(uuid.uuid4()), b"\xff\xd8" + b"x" * 2_100_000),   # over snapshot_max_bytes
    ]
    for suffix, payload in bad:
        door.publish_raw(suffix, payload)
    stranger.event("door_opened")
    door.send(good)
    door.flush(), stranger.flush()
    wait_for(lambda: count(pg, "SELECT count(*) FROM events") == 1, what="the good event recorded")
    wait_for(lambda: sum(dict(rows(pg, "SELECT reason, count FROM rejected_totals")).values()) >= 12,
             what="every bad payload counted")
    totals = dict(rows(pg, "SELECT reason, count FROM rejected_totals"))
    assert totals["invalid_json"] == 2 and totals["schema"] == 4 and totals["topic_mismatch"] == 1
    assert totals["not_jpeg"] == 1 and totals["oversized"] == 1
    assert totals["unknown_campus"] >= 3          # the stranger's status, state and event
    kept = rows(pg, "SELECT reason, size, length(payload) FROM rejected_payloads WHERE reason = 'oversized'")
    assert kept == [("oversized", 2_100_002, 2048)]   # counted at full size, kept capped
    assert count(pg, "SELECT count(*) FROM snapshots") == 0
    assert recorder.stats()["connected"] is True
    # still recording after all that
    door.event("door_closed")
    door.flush()
    wait_for(lambda: count(pg, "SELECT count(*) FROM events") == 2, what="recording goes on")
    door.close(), stranger.close()


def test_campus_registered_later_is_recorded(recorder, pg, dbroker) -> None:
    (door,) = doors(dbroker, "roosevelt")
    door.event("door_opened")
    door.flush()
    wait_for(lambda: count(pg, "SELECT coalesce(sum(count), 0) FROM rejected_totals WHERE reason = 'unknown_campus'")
             >= 1, what="the unknown campus refused")
    with pg.connect() as conn:
        conn.execute("INSERT INTO campuses (campus) VALUES ('roosevelt')")
    door.event("door_closed")
    door.flush()
    wait_for(lambda: count(pg, "SELECT count(*) FROM events WHERE campus = 'roosevelt'") == 1,
             what="the new campus recorded")
    door.close()


def test_retained_state_is_taken_once_at_a_fresh_start_then_only_shared(pg, dbroker) -> None:
    """Retained messages never travel on shared subscriptions: a recorder with a fresh session
    takes every door's retained state and status through a short plain subscription, then gets
    each live message once (through the shared one only)."""
    (door,) = doors(dbroker, "washington")
    door.publish_state(door="open", alarms=["held_open"])
    door.flush()
    r = Recorder(recorder_settings(pg, dbroker, client_id=f"rec-{uuid.uuid4().hex[:6]}"))
    try:
        r.start()
        wait_for(lambda: rows(pg, "SELECT online, state->>'door' FROM doors WHERE campus = 'washington'")
                 == [(True, "open")], what="the retained status and state recorded")
        wait_for(r.link.catchup_done.is_set, what="the catch-up to end")
        before = r.stats()["received"]
        door.publish_state(door="locked")
        door.flush()
        wait_for(lambda: rows(pg, "SELECT state->>'door' FROM doors WHERE campus = 'washington'") == [("locked",)],
                 what="the live state")
        time.sleep(0.5)
        assert r.stats()["received"] == before + 1          # once: the plain subscription is gone
        assert set(r.stats()["rejected"]) <= {"unknown_campus"}   # earlier tests' strangers' retained state
    finally:
        r.stop(retire=True)
        door.close()
