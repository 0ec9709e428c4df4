"""The cycle's hot paths stay cheap without changing what they answer (issue 11's CPU figure):
a waiting ring's photo lookup does not scan the snapshot directory, an event is encoded to
JSON once for MQTT and every panel stream, the panel's health summary says what the full
health report says, and the simulated camera still stamps each photo with its own time."""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from controller.camera import SimulatedCamera
from controller.journal import Journal
from controller.snapshots import SnapshotService
from web.stream import StreamHub


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "j.sqlite3", "c", "d")
    yield j
    j.close()


def test_a_waiting_rings_photo_lookup_does_not_scan_the_directory(journal, tmp_path, monkeypatch):
    cam = SimulatedCamera(64, 48)
    cam.delay_seconds = 0.5                   # the photo is still being taken
    svc = SnapshotService(cam, tmp_path / "snaps", journal)
    old = str(uuid.uuid4())                   # a ring of an earlier run: only on disk
    (tmp_path / "snaps" / f"{old}.jpg").write_bytes(b"\xff\xd8old")
    (tmp_path / "snaps" / f"{old}.2.jpg").write_bytes(b"\xff\xd8old2")
    rid = str(uuid.uuid4())
    done = svc.request(rid)
    real_glob = Path.glob

    def no_scan(self, pattern):
        raise AssertionError(f"directory scanned for {pattern}")

    monkeypatch.setattr(Path, "glob", no_scan)
    assert svc.path_for(rid) is None          # answered without a scan
    monkeypatch.setattr(Path, "glob", real_glob)
    done.result(10)
    assert svc.path_for(rid).name == f"{rid}.jpg"
    assert svc.path_for(old).name == f"{old}.2.jpg"    # older rings are still found on disk
    svc.close()


def test_an_event_is_encoded_once_and_streams_send_the_mqtt_text(journal):
    listeners = []
    fake = SimpleNamespace(subscribe_events=journal.subscribe, unsubscribe_events=journal.unsubscribe,
                           subscribe_changes=listeners.append)
    hub = StreamHub(fake, session_check=lambda _t: {})
    client = hub.open("token")
    event = journal.append("buzzer_pressed", str(uuid.uuid4()), presses=1)
    kind, frame = client.queue.get_nowait()
    text = event.to_json()
    assert event.to_json() is text           # encoded once
    head, data = frame.decode().rstrip("\n").split("\n", 1)
    assert head == "event: journal" and data.startswith("data: " + text[:-1] + ",")
    sent = json.loads(data[len("data: "):])
    assert sent.pop("label") == "Buzzer pressed"        # the words table's sentence, spliced in
    assert sent == json.loads(text)                    # otherwise exactly the MQTT text
    hub.close()


def test_panel_health_summary_matches_the_full_health_report(controller):
    full = controller.health()
    summary = controller.panel_health()
    assert summary["camera"] == full["camera"]
    assert summary["fault"] == full["fault"] and summary["outbox_depth"] == full["outbox_depth"]
    assert summary["mqtt"] == {"enabled": bool(controller.settings.mqtt.enabled),
                               "connected": bool((full.get("mqtt") or {}).get("connected"))}
    assert summary["disk"]["total_bytes"] == full["disk"]["total_bytes"]
    assert summary["disk"]["free_bytes"] > 0


def test_the_simulated_camera_stamps_each_photo_with_its_capture_time():
    from PIL import Image

    cam = SimulatedCamera(320, 240)
    first = cam.capture_jpeg()
    time.sleep(0.01)
    second = cam.capture_jpeg()
    assert first != second                    # a new time on every photo
    img = Image.open(io.BytesIO(second))
    assert img.format == "JPEG" and img.size == (320, 240)
    band = img.crop((200, 8, 320, 20)).convert("L")     # the time, right of the label
    assert band.getextrema()[1] > 200          # white text was drawn there


def test_stream_reads_missed_rings_only_when_they_can_have_changed(journal):
    """Every state frame re-read the missed rings (a journal page and the panel store's acks):
    a third of the stream's work per ring. They change only when a ring expires or one is
    acknowledged (``refresh``)."""
    reads: list[int] = []
    acked: set[str] = set()

    def history(types=None, limit=50, **_kw):
        reads.append(1)
        return [e for e in journal.query(limit=1000) if not types or e.type in types][:limit]

    fake = SimpleNamespace(subscribe_events=journal.subscribe, unsubscribe_events=journal.unsubscribe,
                           subscribe_changes=lambda _cb: None, history=history,
                           snapshot_path=lambda _rid: None)
    hub = StreamHub(fake, session_check=lambda _t: {}, missed_acked=lambda: set(acked))
    hub.open("token")
    try:
        assert hub.missed() == [] and len(reads) == 1
        journal.append("buzzer_pressed", str(uuid.uuid4()), presses=1)
        for _ in range(5):                                   # state frames of other changes
            assert hub.missed() == []
        assert len(reads) == 1
        rid = str(uuid.uuid4())
        journal.append("ring_expired", rid, presses=1)       # a missed ring: read again
        assert [m["request_id"] for m in hub.missed()] == [rid] and len(reads) == 2
        assert [m["request_id"] for m in hub.missed()] == [rid] and len(reads) == 2
        acked.add(rid)
        hub.refresh()                                        # staff saw it: read again
        assert hub.missed() == [] and len(reads) == 3
    finally:
        hub.close()
