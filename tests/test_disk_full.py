"""Issue 9 finding 3: on a full disk, sign-in and lockdown work and nothing answers HTTP 500.

A real small filesystem (tmpfs, so this needs root; skipped otherwise) holds the state
directory; the disk is filled to the last byte by a filler file, as a failing SD card or a
runaway log would.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller import config as cfg
from controller import daemon
from controller import events as ev
from tests.support_web import TEST_CONFIG, Signed, add_users, build_controller, login, stop_controller

pytestmark = pytest.mark.process


def fill(directory: Path) -> Path:
    """Fill the filesystem holding directory until ENOSPC, to the last page."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 512, 1):
            block = b"\xff" * size
            while True:
                try:
                    os.write(fd, block)
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


def test_sign_in_and_lockdown_on_a_full_disk(small_disk, settings, pin_factory):
    from web import close_app, create_app
    settings = cfg.with_overrides(settings, storage={"state_dir": small_disk / "state"})
    c = build_controller(settings, pin_factory)
    app = create_app(c, test_config=TEST_CONFIG, station=c.station)
    try:
        add_users(app.extensions["panel_store"])
        assert c.reserve.held, "a disk reserve is kept in the state directory"
        staff = Signed(app.test_client(), "sam")
        filler = fill(small_disk)
        # sign-in: it succeeds (the reserve is released for it) or says 503, never 500
        resp = login(app.test_client(), "admin")
        assert resp.status_code in (303, 503), resp.status_code
        if resp.status_code == 503:
            assert "disk is full" in resp.get_data(as_text=True)
        # every page a signed-in staff member opens answers without a 500
        for path in ("/", "/api/status", "/history", "/history.csv", "/admin", "/sim", "/sim/state"):
            code = staff.get(path).status_code
            assert code < 500 or code == 503, (path, code)
        # a lockdown can always be started, is durable and reaches the journal
        resp = staff.post("/api/lockdown/start", {"reason": "intruder"})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert c.core.in_lockdown and (small_disk / "state" / "lockdown.json").is_file()
        rid = c.press().request_id
        assert staff.post("/api/approve", {"request_id": rid}).status_code in (409, 503)
        assert not c.station.strike_on
        for _ in range(30):                    # keep writing: nothing may turn into a 500
            r = staff.post("/api/unlock", {"confirm": "yes"})
            assert r.status_code in (409, 503), r.status_code
        filler.unlink()
    finally:
        close_app(app)
        stop_controller(c)
    pin_factory.reset()
    c = daemon.build(settings, pin_factory=pin_factory)
    try:
        daemon.start(c)
        assert c.core.in_lockdown
        started = c.journal.query(types=[ev.LOCKDOWN_STARTED], limit=5)
        assert started and started[0].actor == "Sam Staff"
    finally:
        daemon.stop(c, "test done")


def test_storage_errors_become_503_not_500(app):
    """Any route: a full disk inside the account store is a clear 503 page or JSON."""
    import sqlite3
    store = app.extensions["panel_store"]
    client = app.test_client()
    page = client.get("/login")
    assert page.status_code == 200
    original = store.create_session

    def full(*a, **k):
        raise sqlite3.OperationalError("database or disk is full")
    store.create_session = full
    try:
        resp = login(client, "sam")
        assert resp.status_code == 503 and "disk is full" in resp.get_data(as_text=True)
    finally:
        store.create_session = original
    staff = Signed(app.test_client(), "sam")
    store.users = full
    resp = staff.get("/admin", headers={"Accept": "application/json"})
    assert resp.status_code in (403, 503)
    admin = Signed(app.test_client(), "admin")
    resp = admin.get("/admin")
    assert resp.status_code == 503 and "storage is full" in resp.get_data(as_text=True)
