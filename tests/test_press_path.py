"""The press path does no avoidable work before its INSERT (issue 11's press -> MQTT figure):
the ring's request id and its event's id are drawn ahead (controller/ids.py), not between the
GPIO edge and the commit; the event's stored text is what it always was (timestamps and data),
now encoded without building an encoder or going through ``time.strftime`` on each press."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from controller import events as ev
from controller import ids as ids_module
from controller.core import EntryCore
from controller.door_settings import DoorSettings
from controller.ids import IDS, IdPool
from controller.journal import _DATA_JSON, _ts_text


def _is_uuid4(text: str) -> bool:
    return uuid.UUID(text).version == 4 and str(uuid.UUID(text)) == text


def test_a_press_takes_its_ids_drawn_before_the_press(journal, strike, clock, monkeypatch):
    core = EntryCore(journal, strike, DoorSettings(), clock=clock, has_door_contact=True)
    IDS.refill()
    drawn_before = set(IDS._ids)
    drawn_during: list[str] = []
    real_uuid4 = uuid.uuid4

    def counting_uuid4() -> uuid.UUID:
        value = real_uuid4()
        drawn_during.append(str(value))
        return value

    monkeypatch.setattr(ids_module.uuid, "uuid4", counting_uuid4)
    drawn_at_insert: list[int] = []
    journal.subscribe(lambda _e: drawn_at_insert.append(len(drawn_during)))
    decision = core.press()
    event = journal.last_event()
    assert decision.request_id in drawn_before and event.id in drawn_before
    assert decision.request_id != event.id
    assert drawn_at_insert == [0]          # nothing drawn between the edge and the commit
    assert len(IDS) == IDS.size            # topped up once the event was out


def test_the_pool_hands_each_id_out_once_across_threads():
    pool = IdPool(size=4)
    taken: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = []
        for _ in range(500):
            mine.append(pool.take())
            pool.refill()
        with lock:
            taken.extend(mine)

    with ThreadPoolExecutor(4) as pool_of_threads:
        for _ in range(4):
            pool_of_threads.submit(worker)
    assert len(taken) == 2000 and len(set(taken)) == 2000
    assert all(_is_uuid4(t) for t in taken[:50])
    assert len(pool) <= pool.size + 4     # concurrent refills overfill by at most a few


def test_an_empty_pool_still_answers_a_fresh_id():
    pool = IdPool(size=2)
    first, second = pool.take(), pool.take()
    assert first != second and _is_uuid4(first) and _is_uuid4(second)
    pool.refill()
    assert len(pool) == 2


@pytest.mark.parametrize("ts", [
    datetime(2026, 11, 30, 1, 2, 3, 0, tzinfo=timezone.utc),            # no microseconds: still fixed width
    datetime(2026, 1, 1, 0, 30, 0, 5, tzinfo=timezone(timedelta(hours=2))),   # another zone: converted
    datetime(2026, 6, 15, 23, 59, 59, 999999, tzinfo=timezone.utc),
])
def test_the_stored_timestamp_text_is_unchanged(ts):
    assert _ts_text(ts) == ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    assert len(_ts_text(ts)) == 32


def test_the_stored_data_text_is_unchanged():
    data = {"presses": 1, "expires_in": 60, "lockdown": False, "name": "Zoë", "z": [1, 2], "a": None}
    assert _DATA_JSON(data) == json.dumps(data, sort_keys=True)


def test_an_events_published_text_is_encoded_with_its_row(journal):
    """Before the commit, next to its data text (warm encoder), not between commit and publish."""
    seen: list[bool] = []
    journal.subscribe(lambda e: seen.append("_json" in e.__dict__))
    event = journal.append("buzzer_pressed", "r-1", None, presses=1)
    assert seen == [True]
    assert json.loads(event.to_json()) == event.to_dict()
    assert event.to_dict()["ts"] == event.ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize("microsecond", [0, 999, 1000, 123456, 999999])
def test_an_events_published_time_is_utc_iso_of_its_stored_time(journal, clock, microsecond):
    """The journal cuts the published millisecond text from the stored microsecond one."""
    clock.advance(microsecond / 1e6)
    event = journal.append("door_opened", None, None)
    assert event.ts.microsecond == microsecond
    assert event.to_dict()["ts"] == ev.utc_iso(event.ts)
    stored = journal.last_event()
    assert stored.to_dict()["ts"] == ev.utc_iso(event.ts)         # read back: computed, the same
