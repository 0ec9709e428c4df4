"""Issue 9 finding 2: a missing, emptied or foreign journal is a fault, never a first boot.

The real controller (daemon.build/start on MockFactory) and the real command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller import config as cfg
from controller import daemon
from controller import events as ev
from controller.journal import Journal

ROOT = Path(__file__).parents[1]


@pytest.fixture
def conf(tmp_path, settings):
    """Settings loaded from a real config file (so the identity copy beside it is used)."""
    path = tmp_path / "etc" / "door.toml"
    path.parent.mkdir()
    path.write_text(f'[storage]\nstate_dir = "{settings.storage.state_dir}"\n')
    return cfg.with_overrides(settings, storage={"state_dir": settings.storage.state_dir}), path


def run_once(settings, pin_factory, lockdown: bool = False):
    c = daemon.build(settings, pin_factory=pin_factory)
    daemon.start(c)
    if lockdown:
        c.start_lockdown("Sam Staff", "drill", "panel")
    epoch = c.journal.epoch
    daemon.stop(c, "test done")
    pin_factory.reset()
    return epoch


def journal_path(settings) -> Path:
    return Path(settings.storage.state_dir) / "journal.sqlite3"


def check_lost(settings, pin_factory, old_epoch):
    c = daemon.build(settings, pin_factory=pin_factory)
    try:
        daemon.start(c)
        status = c.status()
        assert "journal_lost" in status["alarms"] and "journal lost" in status["fault"]
        assert status["epoch"] != old_epoch
        started = c.journal.query(types=[ev.CONTROLLER_STARTED], limit=1)[0]
        assert started.data["previous_stop"] == "unknown" and started.data["journal_lost"] is True
        raised = [e for e in c.journal.query(types=[ev.ALARM_RAISED]) if e.data["alarm"] == "journal_lost"]
        assert raised and raised[0].data["previous_epochs"] == [old_epoch]
        rid = c.press().request_id
        assert c.approve(rid, "Sam Staff").code == "fault"
        assert c.unlock_now("Sam Staff").code in ("fault", "lockdown")
        assert not c.core.strike_energized
        assert c.core.acknowledge_alarm("journal_lost", "Sam Staff").code == "unknown"
        return c
    except BaseException:
        daemon.stop(c, "test failed")
        raise


@pytest.mark.parametrize("damage", ["truncate", "delete", "foreign"])
def test_lost_journal_starts_locked_with_an_alarm_until_accepted(settings, pin_factory, tmp_path, damage):
    old = run_once(settings, pin_factory, lockdown=True)
    path = journal_path(settings)
    if damage == "truncate":
        path.write_bytes(b"")
    elif damage == "delete":
        path.unlink()
    else:
        other = cfg.with_overrides(settings, storage={"state_dir": tmp_path / "other"})
        run_once(other, pin_factory)
        shutil.copy(journal_path(other), path)
    c = check_lost(settings, pin_factory, old)
    try:
        assert c.core.in_lockdown, "the lockdown in the lockdown file stays in force"
        d = c.accept_new_journal("Ada Admin", "panel")
        assert d.ok, d
        accepted = c.journal.query(types=[ev.JOURNAL_ACCEPTED], limit=1)[0]
        assert accepted.actor == "Ada Admin" and accepted.data["previous_epochs"] == [old]
        assert "journal_lost" not in c.status()["alarms"] and c.status()["fault"] is None
        assert c.core.in_lockdown
        assert c.end_lockdown("Ada Admin", "clear").ok
        # The ring pressed during the lockdown closed with it and is never approvable (issue 13);
        # a press now (past the debounce window) is a new ring that is.
        assert c.core.status()["ring"] is None
        time.sleep(settings.door.debounce_ms / 1000 + 0.05)
        rid = c.press().request_id
        assert c.approve(rid, "Sam Staff").ok
    finally:
        daemon.stop(c, "test done")
    pin_factory.reset()
    c = daemon.build(settings, pin_factory=pin_factory)
    try:
        daemon.start(c)
        assert "journal_lost" not in c.status()["alarms"]
        assert c.journal.query(types=[ev.CONTROLLER_STARTED], limit=1)[0].data["previous_stop"] == "clean"
    finally:
        daemon.stop(c, "test done")


def test_state_dir_wiped_is_caught_by_the_copy_beside_the_config(conf, pin_factory):
    settings, path = conf
    settings = cfg.load(path)
    settings = cfg.with_overrides(settings, gpio=__import__("tests.conftest").conftest.SIM_GPIO,
                                  camera={"kind": "simulated"}, mqtt={"enabled": False},
                                  web={"enabled": False})
    old = run_once(settings, pin_factory)
    assert (path.parent / "journal.id").read_text().strip() == old
    shutil.rmtree(settings.storage.state_dir)
    c = check_lost(settings, pin_factory, old)
    daemon.stop(c, "test done")


def test_every_event_carries_the_journal_epoch(settings, pin_factory):
    c = daemon.build(settings, pin_factory=pin_factory)
    try:
        daemon.start(c)
        c.press()
        epochs = {e.to_dict().get("epoch") for e in c.journal.query(limit=100)}
        assert epochs == {c.journal.epoch} and len(c.journal.epoch) == 32
        ident = (Path(settings.storage.state_dir) / "journal.id").read_text().strip()
        assert ident == c.journal.epoch
    finally:
        daemon.stop(c, "test done")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "entry_buzzer", "journal", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env={**os.environ})


def test_cli_accept_new_journal(tmp_path, pin_factory):
    state = tmp_path / "state"
    config = tmp_path / "door.toml"
    config.write_text(f'[storage]\nstate_dir = "{state}"\n[camera]\nkind = "simulated"\n')
    from tests.conftest import SIM_GPIO
    settings = cfg.with_overrides(cfg.load(config), gpio=SIM_GPIO)
    old = run_once(settings, pin_factory)
    journal_path(settings).write_bytes(b"")
    c = check_lost(settings, pin_factory, old)
    try:
        busy = cli("accept-new", "--config", str(config))
        assert busy.returncode == 1 and "running" in busy.stderr and "Traceback" not in busy.stderr
    finally:
        daemon.stop(c, "test done")
    pin_factory.reset()
    if os.geteuid() == 0:                # as on a Pi: root runs it, the service user owns the state
        os.chown(state, 65534, 65534)
    done = cli("accept-new", "--config", str(config), "--actor", "Ada Admin")
    assert done.returncode == 0, done.stderr
    assert "accepted" in done.stdout
    if os.geteuid() == 0:
        for name in ("journal.id", "journal.sqlite3"):
            assert (state / name).stat().st_uid == 65534, name
    j = Journal(journal_path(settings), "x", "y")
    try:
        accepted = j.query(types=[ev.JOURNAL_ACCEPTED], limit=1)[0]
        assert accepted.actor == "Ada Admin" and accepted.data["source"] == "cli"
    finally:
        j.close()
    c = daemon.build(settings, pin_factory=pin_factory)
    try:
        daemon.start(c)
        assert "journal_lost" not in c.status()["alarms"]
    finally:
        daemon.stop(c, "test done")
    again = cli("accept-new", "--config", str(config))
    assert again.returncode == 0 and "nothing to accept" in again.stdout


def test_admin_accepts_the_new_journal_on_the_panel(settings, pin_factory):
    from tests.support_web import TEST_CONFIG, Signed, add_users, build_controller, stop_controller
    from web import close_app, create_app
    old = run_once(settings, pin_factory)
    journal_path(settings).unlink()
    c = build_controller(settings, pin_factory)
    app = create_app(c, test_config=TEST_CONFIG)
    try:
        add_users(app.extensions["panel_store"])
        staff, admin = Signed(app.test_client(), "sam"), Signed(app.test_client(), "admin")
        assert "journal_lost" in staff.get("/api/status").get_json()["status"]["alarms"]
        assert staff.post("/admin/journal/accept", {"confirm": "yes"}).status_code == 403
        page = admin.get("/admin").get_data(as_text=True)
        assert "Journal lost" in page and old in page
        assert admin.post("/admin/journal/accept", {}).status_code == 400
        resp = admin.post("/admin/journal/accept", {"confirm": "yes"})
        assert resp.status_code == 200 and "New journal accepted" in resp.get_data(as_text=True)
        assert c.journal.query(types=[ev.JOURNAL_ACCEPTED], limit=1)[0].actor == "Ada Admin"
        assert "journal_lost" not in staff.get("/api/status").get_json()["status"]["alarms"]
        assert "Journal lost" not in admin.get("/admin").get_data(as_text=True)
    finally:
        close_app(app)
        stop_controller(c)


def test_corrupt_journal_is_moved_aside_and_raises_journal_lost(settings, pin_factory):
    old = run_once(settings, pin_factory, lockdown=True)
    journal_path(settings).write_bytes(b"this is not a database" * 100)
    c = check_lost(settings, pin_factory, old)
    try:
        assert c.core.in_lockdown
        aside = list(Path(settings.storage.state_dir).glob("journal.sqlite3.corrupt-*"))
        assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    finally:
        daemon.stop(c, "test done")


def test_installed_identity_folder_keeps_the_copy_when_etc_is_read_only(conf, pin_factory):
    """On an installed Pi /etc/entry-buzzer is read-only to the service except its identity/
    folder (install.sh + ReadWritePaths=): the copy goes there, and a wiped state dir is lost."""
    settings, path = conf
    (path.parent / "identity").mkdir()
    settings = cfg.load(path)
    settings = cfg.with_overrides(settings, gpio=__import__("tests.conftest").conftest.SIM_GPIO,
                                  camera={"kind": "simulated"}, mqtt={"enabled": False},
                                  web={"enabled": False})
    old = run_once(settings, pin_factory)
    assert (path.parent / "identity" / "journal.id").read_text().strip() == old
    assert not (path.parent / "journal.id").exists()   # the folder, not /etc/entry-buzzer itself
    shutil.rmtree(settings.storage.state_dir)
    c = check_lost(settings, pin_factory, old)
    daemon.stop(c, "test done")
