"""Manual-ack crash safety: a recorder process SIGKILLed in the middle of a load and started
again loses nothing and duplicates nothing; two instances sharing the subscription record
every event exactly once between them."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from district.cli import main
from district.recorder.service import Recorder
from tests.conftest import wait_for
from tests.support_recorder import count, doors, kill_mid_load, recorder_settings, rows

pytestmark = [pytest.mark.postgres, pytest.mark.broker, pytest.mark.process]


def _publish(sim_doors, per_door: int, done: threading.Event) -> None:
    for i in range(per_door):
        for d in sim_doors:
            d.event("door_opened" if i % 2 else "door_closed")
        if i % 50 == 0:
            time.sleep(0.01)
    for d in sim_doors:
        d.flush(timeout=120)
    done.set()


def test_sigkill_mid_load_loses_and_duplicates_nothing(pg, dbroker, tmp_path: Path) -> None:
    per_door = 1500
    proc, config, log, sims, done = kill_mid_load(pg, dbroker, tmp_path, "crash", _publish, per_door, under_way=600)
    time.sleep(1.0)                                   # the publishers go on; the broker queues
    proc.start()
    wait_for(done.is_set, timeout=180, what="every event published")
    total = 3 * per_door
    wait_for(lambda: count(pg, "SELECT count(*) FROM events") >= total, timeout=180, what="every event recorded")
    time.sleep(1.0)
    assert count(pg, "SELECT count(*) FROM events") == total
    assert count(pg, "SELECT count(DISTINCT id) FROM events") == total
    assert rows(pg, "SELECT campus, min(seq), max(seq), count(*) FROM events GROUP BY 1 ORDER BY 1") == \
        [(c, 1, per_door, per_door) for c in ("jefferson", "lincoln", "washington")]
    assert proc.stop() == 0
    assert "stopped: received" in log.read_text()
    assert main(["retire-recorder", "--config", str(config)]) == 0
    for d in sims:
        d.close()


def test_two_instances_share_the_feed_exactly_once(pg, dbroker) -> None:
    a = Recorder(recorder_settings(pg, dbroker, client_id=f"rec-a-{uuid.uuid4().hex[:6]}"))
    b = Recorder(recorder_settings(pg, dbroker, client_id=f"rec-b-{uuid.uuid4().hex[:6]}"))
    try:
        for r in (a, b):
            r.start()
            wait_for(r.link.subscribed.is_set, what="both recorders to subscribe")
        sims = doors(dbroker, "lincoln", "washington")
        done = threading.Event()
        _publish(sims, 600, done)
        wait_for(lambda: count(pg, "SELECT count(*) FROM events") >= 1200, timeout=120, what="every event recorded")
        assert count(pg, "SELECT count(DISTINCT id) FROM events") == 1200
        assert a.stats()["events"] > 0 and b.stats()["events"] > 0       # both did part of the work
        assert a.stats()["events"] + b.stats()["events"] == 1200
        wait_for(lambda: count(pg, "SELECT count(*) FROM seq_watermarks WHERE contiguous_seq = max_seq") == 2,
                 what="the gap scan through every seq")
        assert count(pg, "SELECT count(*) FROM gaps") == 0
        for d in sims:
            d.close()
    finally:
        for r in (a, b):
            r.stop(retire=True)


def test_database_outage_mid_load_loses_nothing(pg, dbroker) -> None:
    """PostgreSQL stopped under load: nothing is acknowledged meanwhile, the recorder retries,
    and once the server is back every event is there exactly once."""
    r = Recorder(recorder_settings(pg, dbroker, client_id=f"rec-db-{uuid.uuid4().hex[:6]}"))
    try:
        r.start()
        wait_for(r.link.subscribed.is_set, what="the recorder to subscribe")
        sims = doors(dbroker, "lincoln", "jefferson")
        for _i in range(100):
            for d in sims:
                d.event("door_opened")
        wait_for(lambda: count(pg, "SELECT count(*) FROM events") == 200, what="the first events")
        pg.stop()                                  # the database goes away
        for _i in range(300):
            for d in sims:
                d.event("door_closed")
        for d in sims:
            d.flush()
        time.sleep(1.0)
        assert r.stats()["events"] == 200          # nothing more written (nor acknowledged)
        pg.start()
        wait_for(lambda: count(pg, "SELECT count(*) FROM events") >= 800, timeout=120, what="the rest after the outage")
        time.sleep(0.5)
        assert count(pg, "SELECT count(*) FROM events") == 800
        assert count(pg, "SELECT count(DISTINCT id) FROM events") == 800
        assert r.healthy()
        for d in sims:
            d.close()
    finally:
        if pg.proc is None:
            pg.start()
        r.stop(retire=True)
