"""Rings that outrun the camera wait in a bounded queue (the memory-growth finding: 10,000
scripted ring/approve cycles at ~770 a second queued ~1 KB per ring behind a camera that takes
~200 photos a second, +12 MB RSS per burst, never given back). Past the bound a new ring goes
without a photo and the journal says so (``camera_failed``), like a ring behind a hung capture."""

from __future__ import annotations

import threading
import time

from controller import events as ev
from controller.core import EntryCore
from controller.door_settings import DoorSettings
from controller.snapshots import SnapshotService
from tests.support_core import RecordingStrike

JPEG = b"\xff\xd8\xff\xe0" + b"fake-jpeg-body" + b"\xff\xd9"
CYCLES = 200


class HeldCamera:
    """A camera whose captures wait until the test lets them go (a camera slower than the rings)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def start(self) -> None:
        pass

    def capture_jpeg(self) -> bytes:
        self.release.wait(30)
        return JPEG

    def close(self) -> None:
        pass


def _requests_queued(svc: SnapshotService) -> int:
    return svc._requests._queue.qsize()          # the worker's own queue: what really holds memory


def test_ring_cycles_faster_than_the_camera_queue_a_bounded_number_of_photos(journal, clock, tmp_path):
    camera = HeldCamera()
    svc = SnapshotService(camera, tmp_path / "snaps", journal, timeout=30)
    core = EntryCore(journal, RecordingStrike(clock), DoorSettings(debounce_ms=0), clock=clock,
                     on_ring=svc.request)
    svc.on_done = core.photo_done
    rids = []
    try:
        for _ in range(CYCLES):
            rid = core.press().request_id
            rids.append(rid)
            assert core.deny(rid, "Sam Staff").ok
        queued = _requests_queued(svc)
        assert queued <= 16, f"{queued} ring photos queued behind one held capture"
        refused = {e.request_id: e for e in journal.query(types=[ev.CAMERA_FAILED], limit=CYCLES)}
        assert len(refused) >= CYCLES - 1 - 16 and set(refused) <= set(rids[1:])
        assert all("camera busy" in e.data["reason"] and e.data["press"] == 1 for e in refused.values())
        for rid in list(refused)[:5]:
            assert [e.type for e in journal.for_request(rid)] == [ev.BUZZER_PRESSED, ev.CAMERA_FAILED, ev.ENTRY_DENIED]
    finally:
        camera.release.set()
        svc.close(wait=10)
    # let go, the queued rings get their photos and the queue is empty again: new rings queue once more
    captured = journal.query(types=[ev.SNAPSHOT_CAPTURED], limit=CYCLES)
    assert {e.request_id for e in captured} == set(rids) - set(refused)
    assert svc.waiting == 0


def test_the_queue_takes_rings_again_once_the_camera_catches_up(journal, clock, tmp_path):
    camera = HeldCamera()
    svc = SnapshotService(camera, tmp_path / "snaps", journal, timeout=30)
    photos = []
    core = EntryCore(journal, RecordingStrike(clock), DoorSettings(debounce_ms=0), clock=clock,
                     on_ring=lambda rid: photos.append(svc.request(rid)))
    svc.on_done = core.photo_done
    try:
        for _ in range(40):
            core.deny(core.press().request_id, "Sam Staff")
        assert svc.waiting == svc.MAX_WAITING and len(photos) == 1 + svc.MAX_WAITING   # one capture held
        camera.release.set()
        deadline = time.monotonic() + 30
        while svc.waiting and time.monotonic() < deadline:
            time.sleep(0.01)
        asked = len(photos)
        rid = core.press().request_id
        assert len(photos) == asked + 1 and photos[-1].result(30).type == ev.SNAPSHOT_CAPTURED
        assert [e.type for e in journal.for_request(rid)] == [ev.BUZZER_PRESSED, ev.SNAPSHOT_CAPTURED]
    finally:
        camera.release.set()
        svc.close(wait=10)
