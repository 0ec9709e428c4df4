"""Issue 9 finding 5: approve what you saw. Every press on a pending ring takes a fresh photo;
an approval names the photo and press count it was looking at and is refused when newer exist."""

from __future__ import annotations

from controller import events as ev
from controller.core import EntryCore
from controller.door_settings import DoorSettings
from tests.support_core import RecordingStrike
from tests.support_web import ring, wait_for, wait_snapshot


def test_core_refuses_an_approval_of_an_older_press_or_photo(journal, clock):
    asked: list[tuple[str, int]] = []
    strike = RecordingStrike(clock)
    core = EntryCore(journal, strike, DoorSettings(), clock=clock, on_ring=lambda rid: asked.append((rid, 1)),
                     on_press_again=lambda rid, press: asked.append((rid, press)))
    rid = core.press().request_id
    core.photo_done(rid, 1, 1, clock.now())
    clock.advance(20)
    core.press()                                    # a second person presses 20 s later
    assert asked == [(rid, 1), (rid, 2)], "every press asks for a fresh photo"
    status = core.status()["ring"]
    assert len(status["press_times"]) == 2 and status["photo"]["n"] == 1 and status["photo_pending"]
    d = core.approve(rid, "Sam Staff", 1, 1)
    assert d.code == "stale" and d.reason == "a new press: look again" and not strike.on
    d = core.approve(rid, "Sam Staff", 1, 2)        # saw the press count, but its photo is coming
    assert d.code == "stale" and not strike.on
    core.photo_done(rid, 2, 2, clock.now())
    assert core.approve(rid, "Sam Staff", 1, 2).code == "stale"     # photo 2 exists
    d = core.approve(rid, "Sam Staff", 2, 2)
    assert d.ok and strike.on
    approved = journal.query(types=[ev.ENTRY_APPROVED], limit=1)[0]
    assert approved.data["snapshot"] == 2 and approved.data["presses"] == 2
    refused = journal.query(types=[ev.ACTION_REFUSED], limit=3)
    assert {e.data["code"] for e in refused} == {"stale"}


def test_failed_photo_for_a_new_press_does_not_block_forever(journal, clock):
    strike = RecordingStrike(clock)
    core = EntryCore(journal, strike, DoorSettings(), clock=clock, on_ring=lambda rid: None,
                     on_press_again=lambda rid, press: None)
    rid = core.press().request_id
    clock.advance(5)
    core.press()
    core.photo_done(rid, None, 2, None)             # camera failed for press 2
    assert core.approve(rid, "Sam Staff", 0, 2).ok


def test_panel_second_press_takes_a_new_photo_and_refuses_the_old_one(controller, staff):
    rid = ring(controller)
    wait_snapshot(controller, rid)
    wait_for(lambda: (controller.core.status()["ring"] or {}).get("photo"), what="photo 1 in status")
    first = staff.get(f"/snapshot/{rid}?n=1")
    assert first.status_code == 200 and first.data[:2] == b"\xff\xd8"
    import time
    time.sleep(0.1)                                  # past the debounce window
    controller.station.press()
    wait_for(lambda: controller.core.status()["ring"]["presses"] == 2, what="second press")
    resp = staff.post("/api/approve", {"request_id": rid, "snapshot": "1", "presses": "1"})
    assert resp.status_code == 409 and resp.get_json()["reason"] == "a new press: look again"
    assert not controller.station.strike_on
    photo = wait_for(lambda: (controller.core.status()["ring"] or {}).get("photo", {}).get("n") == 2
                     and controller.core.status()["ring"]["photo"], what="photo 2")
    assert photo["press"] == 2 and photo["at"]
    second = staff.get(f"/snapshot/{rid}?n=2")
    assert second.status_code == 200 and second.data[:2] == b"\xff\xd8"
    assert staff.get(f"/snapshot/{rid}").data == second.data, "the newest photo by default"
    shown = staff.get("/api/status").get_json()["status"]["ring"]
    assert len(shown["press_times"]) == 2 and shown["photo"]["n"] == 2
    assert staff.post("/api/approve", {"request_id": rid, "snapshot": "x"}).status_code == 400
    legacy = staff.post("/api/approve", {"request_id": rid})     # says nothing: saw the first press
    assert legacy.status_code == 409 and legacy.get_json()["code"] == "stale"
    resp = staff.post("/api/approve", {"request_id": rid, "snapshot": "2", "presses": "2"})
    assert resp.status_code == 200, resp.get_json()
    captured = [e for e in controller.journal.for_request(rid) if e.type == ev.SNAPSHOT_CAPTURED]
    assert [e.data["snapshot"] for e in captured] == [1, 2]


def test_repeat_press_photos_are_coalesced(journal, tmp_path):
    import threading
    import uuid

    from controller.camera import SimulatedCamera
    from controller.snapshots import SnapshotService

    gate = threading.Event()

    class SlowCamera(SimulatedCamera):
        calls = 0

        def capture_jpeg(self):
            SlowCamera.calls += 1
            gate.wait(10)
            return super().capture_jpeg()

    svc = SnapshotService(SlowCamera(160, 120), tmp_path / "snaps", journal, timeout=15)
    done: list[tuple] = []
    svc.on_done = lambda *a: done.append(a)
    rid = str(uuid.uuid4())
    first = svc.request(rid)
    wait_for(lambda: SlowCamera.calls == 1, what="first capture in the camera")
    for press in range(2, 12):                     # ten more presses while the first is in flight
        svc.request_again(rid, press)
    gate.set()
    first.result(20)
    wait_for(lambda: len(done) >= 3 and not svc._again_running, what="coalesced captures")
    assert SlowCamera.calls == 3, "one in flight, one running behind it, one queued (the newest press)"
    assert sorted((d[1], d[2]) for d in done) == [(1, 1), (2, 2), (3, 11)]
    assert svc.path_for(rid).name == f"{rid}.3.jpg" and svc.path_for(rid, 1).name == f"{rid}.jpg"
    svc.close()


def test_a_photo_that_cannot_be_saved_is_a_camera_failure_not_a_stuck_ring(journal, tmp_path):
    import uuid

    from controller.camera import SimulatedCamera
    from controller.snapshots import SnapshotService
    svc = SnapshotService(SimulatedCamera(160, 120), tmp_path / "snaps", journal, timeout=5)
    done: list[tuple] = []
    svc.on_done = lambda *a: done.append(a)
    (tmp_path / "snaps").chmod(0o500)               # as good as full: nothing can be written
    try:
        import os
        if os.geteuid() == 0:                        # root ignores modes: take the directory away
            (tmp_path / "snaps").chmod(0o700)
            svc.directory = tmp_path / "gone" / "snaps"
        event = svc.request(str(uuid.uuid4())).result(20)
    finally:
        (tmp_path / "snaps").chmod(0o700)
    assert event.type == ev.CAMERA_FAILED and "snapshot not saved" in event.data["reason"]
    assert done and done[0][1] is None
