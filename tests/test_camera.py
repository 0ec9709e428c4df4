"""Camera: the real Picamera2 adapter against a fake picamera2 module (libcamera cannot run
here), the simulated camera, and the snapshot service (timeouts, failures, pruning)."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
import types
import uuid

import pytest

from controller import events as ev
from controller.camera import CameraError, Picamera2Camera, SimulatedCamera
from controller.journal import Journal
from controller.snapshots import SnapshotService

JPEG = b"\xff\xd8\xff\xe0" + b"fake-jpeg-body" + b"\xff\xd9"


class FakePicamera2:
    """Records the calls the adapter makes; behaves like picamera2.Picamera2 for them."""

    instances: list["FakePicamera2"] = []

    def __init__(self):
        self.calls: list[tuple] = []
        self.options: dict = {}
        self.fail_capture: Exception | None = None
        self.hang: threading.Event | None = None
        FakePicamera2.instances.append(self)

    def create_still_configuration(self, main=None, **kw):
        self.calls.append(("create_still_configuration", main, kw))
        return {"main": main, **kw}

    def configure(self, config):
        self.calls.append(("configure", config))

    def start(self):
        self.calls.append(("start",))

    def capture_file(self, file_output, name="main", format=None, **kw):
        self.calls.append(("capture_file", format))
        if self.hang is not None:
            self.hang.wait(10)
        if self.fail_capture:
            raise self.fail_capture
        file_output.write(JPEG)

    def stop(self):
        self.calls.append(("stop",))

    def close(self):
        self.calls.append(("close",))


@pytest.fixture
def fake_picamera2(mocker):
    FakePicamera2.instances.clear()
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2
    mocker.patch.dict(sys.modules, {"picamera2": module})
    return module


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "j.sqlite3", "c", "d")
    yield j
    j.close()


def test_picamera2_configured_and_started_once_then_captures_from_stream(fake_picamera2):
    cam = Picamera2Camera(1280, 720, 80)
    cam.start()
    for _ in range(3):
        assert cam.capture_jpeg() == JPEG
    [pc] = FakePicamera2.instances
    names = [c[0] for c in pc.calls]
    assert names.count("configure") == 1 and names.count("start") == 1
    assert [c for c in pc.calls if c[0] == "capture_file"] == [("capture_file", "jpeg")] * 3
    assert pc.calls[0][1] == {"size": (1280, 720)}
    assert pc.options["quality"] == 80
    cam.close()
    assert [c[0] for c in pc.calls][-2:] == ["stop", "close"]


def test_picamera2_imported_lazily(mocker):
    mocker.patch.dict(sys.modules, {"picamera2": None})   # import fails like on a non-Pi machine
    cam = Picamera2Camera(640, 480, 80)                   # constructing does not import
    with pytest.raises(CameraError, match="python3-picamera2"):
        cam.start()


def test_picamera2_capture_error_becomes_camera_error(fake_picamera2):
    cam = Picamera2Camera(640, 480, 80)
    cam.start()
    FakePicamera2.instances[0].fail_capture = RuntimeError("sensor timeout")
    with pytest.raises(CameraError, match="sensor timeout"):
        cam.capture_jpeg()


def test_snapshot_service_with_picamera2_journals_size_and_sha256(fake_picamera2, journal, tmp_path):
    svc = SnapshotService(Picamera2Camera(640, 480, 80), tmp_path / "snaps", journal, timeout=5)
    svc.start()
    rid = str(uuid.uuid4())
    event = svc.request(rid).result(10)
    assert event.type == ev.SNAPSHOT_CAPTURED and event.request_id == rid
    assert event.data["size"] == len(JPEG) and event.data["sha256"] == hashlib.sha256(JPEG).hexdigest()
    assert svc.path_for(rid).read_bytes() == JPEG
    svc.close()


def test_hung_camera_times_out_and_ring_proceeds(fake_picamera2, journal, tmp_path):
    cam = Picamera2Camera(640, 480, 80)
    svc = SnapshotService(cam, tmp_path / "snaps", journal, timeout=0.2)
    svc.start()
    release = threading.Event()
    FakePicamera2.instances[0].hang = release
    event = svc.request(str(uuid.uuid4())).result(10)
    assert event.type == ev.CAMERA_FAILED and "timed out" in event.data["reason"]
    assert not svc.ok
    # while the capture is still stuck, the next ring fails at once instead of piling up
    busy = svc.request(str(uuid.uuid4())).result(10)
    assert busy.type == ev.CAMERA_FAILED and "busy" in busy.data["reason"]
    release.set()
    FakePicamera2.instances[0].hang = None
    deadline = time.monotonic() + 10
    while svc._busy.locked() and time.monotonic() < deadline:
        time.sleep(0.01)
    ok = svc.request(str(uuid.uuid4())).result(10)
    assert ok.type == ev.SNAPSHOT_CAPTURED and svc.ok


def test_failed_camera_start_is_reported_not_raised(mocker, journal, tmp_path):
    mocker.patch.dict(sys.modules, {"picamera2": None})
    svc = SnapshotService(Picamera2Camera(640, 480, 80), tmp_path / "snaps", journal)
    svc.start()
    assert not svc.ok and "picamera2" in svc.last_error
    event = svc.request(str(uuid.uuid4())).result(10)
    assert event.type == ev.CAMERA_FAILED


def test_simulated_camera_makes_a_real_jpeg():
    import io

    from PIL import Image

    data = SimulatedCamera(320, 240, 70).capture_jpeg()
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG" and img.size == (320, 240)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "x.jpg", "", None, "AAAAAAAA-0000-0000-0000-000000000000"])
def test_path_for_refuses_anything_but_a_request_uuid(journal, tmp_path, bad):
    svc = SnapshotService(SimulatedCamera(), tmp_path / "snaps", journal)
    assert svc.path_for(bad) is None


def test_prune_by_age_then_size(journal, tmp_path):
    snaps = tmp_path / "snaps"
    svc = SnapshotService(SimulatedCamera(), snaps, journal, retention_days=1, max_bytes=2500)
    now = time.time()
    for age_days in [3, 0.5, 0.4, 0.3, 0.2]:
        p = snaps / f"{uuid.uuid4()}.jpg"
        p.write_bytes(b"x" * 1000)
        os.utime(p, (now - age_days * 86400, now - age_days * 86400))
    removed = svc.prune(now)
    left = sorted(snaps.glob("*.jpg"), key=lambda p: p.stat().st_mtime)
    assert removed == 3 and len(left) == 2
    assert all(now - p.stat().st_mtime < 0.35 * 86400 for p in left)   # the newest two kept


def test_captures_prune_at_most_once_per_interval(journal, tmp_path, mocker):
    svc = SnapshotService(SimulatedCamera(64, 48), tmp_path / "snaps", journal)
    prune = mocker.spy(svc, "prune")
    for _ in range(3):
        assert svc.request(str(uuid.uuid4())).result(10).type == ev.SNAPSHOT_CAPTURED
    assert prune.call_count == 1
