"""The recorder's cheaper per-message paths (issue 15) keep what the contract says: a payload
is decoded once and must be UTF-8 (JSON in UTF-16 is refused, not a crash of the classifier),
``json.loads``' scanner called directly accepts and refuses exactly what ``json.loads`` does,
and a snapshot's SHA-256 and size are computed by PostgreSQL as its row is inserted."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest

from district.recorder.messages import Event, Rejected, Snapshot, classify
from district.recorder.store import write_batch
from tests.conftest import wait_for
from tests.support_recorder import count, doors, rows

EPOCH = uuid.uuid4().hex
KNOWN = frozenset({"lincoln"})


def _event(**changes: object) -> dict[str, object]:
    return {"campus": "lincoln", "door": "main", "epoch": EPOCH, "id": str(uuid.uuid4()), "seq": 1,
            "ts": "2026-05-04T08:00:00.000Z", "type": "door_opened", **changes}


def _classify(payload: bytes, kind: str = "events") -> object:
    return classify(f"entry/lincoln/main/{kind}", payload, "entry", KNOWN, 1 << 20)


@pytest.mark.fast
def test_json_in_utf16_is_refused_as_invalid_json() -> None:
    # json.loads reads UTF-16 bytes; the stored text must be UTF-8: the old path parsed and
    # validated it, then raised UnicodeDecodeError decoding it for storage (the classifier died)
    item = _classify(json.dumps(_event()).encode("utf-16"))
    assert isinstance(item, Rejected) and item.reason == "invalid_json"


@pytest.mark.fast
@pytest.mark.parametrize("text, accepted", [
    (' \n{"x": 1}', True), ('{"x": 1} \t', True),                   # whitespace around: as json.loads
    ('{"x": 1} {}', False), ('{"x": 1', False), ("", False), ("   ", False),
])
def test_the_direct_scanner_accepts_and_refuses_as_json_loads(text: str, accepted: bool) -> None:
    payload = text.replace('{"x": 1}', json.dumps(_event())).encode()
    item = _classify(payload)
    assert isinstance(item, Event) is accepted, item
    if not accepted:
        assert isinstance(item, Rejected) and item.reason == "invalid_json"


@pytest.mark.postgres
def test_a_snapshots_digest_and_size_are_computed_by_postgresql(pg) -> None:
    jpeg = b"\xff\xd8" + bytes(range(256)) * 120
    with pg.connect() as conn:
        conn.execute("INSERT INTO campuses (campus) VALUES ('lincoln')")
        item = _classify(jpeg, "snapshot/r-1")
        assert isinstance(item, Snapshot)
        assert write_batch(conn, [item], 64, set()).snapshots == 1
        assert write_batch(conn, [item], 64, set()).snapshots == 0          # the same one again: kept once
    assert rows(pg, "SELECT request_id, sha256, size FROM snapshots") == [
        ("r-1", hashlib.sha256(jpeg).hexdigest(), len(jpeg))]


@pytest.mark.postgres
@pytest.mark.broker
def test_through_the_broker_utf16_is_counted_and_snapshots_match_their_events(recorder, pg, dbroker) -> None:
    (door,) = doors(dbroker, "lincoln")
    door.publish_raw("events", json.dumps(door.make_event("door_opened")).encode("utf-16"))
    rings = [door.ring(snapshot_bytes=30_000) for _ in range(3)]
    door.flush()
    wait_for(lambda: count(pg, "SELECT count(*) FROM snapshots") == 3, what="the snapshots recorded")
    wait_for(lambda: dict(rows(pg, "SELECT reason, count FROM rejected_totals")).get("invalid_json") == 1,
             what="the UTF-16 payload counted")
    got = {r[0]: (r[1], r[2]) for r in rows(pg, "SELECT request_id, sha256, size FROM snapshots")}
    assert got == {ring[1]["request_id"]: (ring[1]["sha256"], ring[1]["size"]) for ring in rings}
    assert recorder.healthy()
    door.event("door_closed")
    door.flush()
    wait_for(lambda: count(pg, "SELECT count(*) FROM events") == 7, what="recording goes on")
    door.close()
