"""The installed path works verbatim (issue 9, finding 10).

On an installed system every README command runs as written: ``entry-buzzer`` is on
PATH, ``--config`` defaults to /etc/entry-buzzer/config.toml, the ``user`` commands work
as root without systemd's credentials and leave the panel database owned by the service
user, and ``install.sh --admin NAME`` succeeds. The service-user test is real: a throwaway
system user owns the state directory, the credentials are root-only, and the service user
then opens and writes the database itself (``runuser``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from controller import config as cfg
from controller import secret_files
from tests.support_deploy import REPO

INSTALL = REPO / "deploy" / "install.sh"
ENTRY_BUZZER = Path(sys.executable).parent / "entry-buzzer"
INSTALLED = Path(cfg.DEFAULT_CONFIG)


def run(*args: str, env_extra: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ENTRY_BUZZER_BIN=str(ENTRY_BUZZER), GPIOZERO_PIN_FACTORY="mock")
    env.pop("CREDENTIALS_DIRECTORY", None)
    env.update(env_extra or {})
    return subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=300, cwd="/",
                          stdin=subprocess.DEVNULL, **kwargs)


def test_install_puts_entry_buzzer_on_path(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    proc = run("bash", str(INSTALL), "--root", str(root), "--no-venv")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    link = root / "usr/local/bin/entry-buzzer"
    assert link.is_symlink() and os.readlink(link) == "/opt/entry-buzzer/venv/bin/entry-buzzer"
    again = run("bash", str(INSTALL), "--root", str(root), "--no-venv")
    assert "done, 0 changes" in again.stdout
    gone = run("bash", str(INSTALL), "--uninstall", "--root", str(root))
    assert gone.returncode == 0 and not link.is_symlink()


@pytest.mark.skipif(INSTALLED.exists(), reason="this machine has an installed config")
@pytest.mark.parametrize("command", [["check-config"], ["run"], ["relock"], ["selftest", "--no-strike"],
                                     ["user", "list"]])
def test_config_defaults_to_the_installed_config(command: list[str]) -> None:
    proc = run(str(ENTRY_BUZZER), *command)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert str(INSTALLED) in proc.stderr and "Traceback" not in proc.stderr
    assert "required" not in proc.stderr


def test_credentials_default_to_the_installed_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("ENTRY_BUZZER_CREDENTIALS_DIR", raising=False)
    assert cfg.secret_path("credential:web-secret-key") == Path("/etc/entry-buzzer/credentials/web-secret-key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/entry-buzzer.service")
    assert secret_files.secret_path("credential:x") == Path("/run/credentials/entry-buzzer.service/x")


@pytest.fixture
def service_user():
    """A throwaway system user standing in for 'entry-buzzer' (removed afterwards)."""
    if os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("runuser") is None:
        pytest.skip("needs root, useradd and runuser")
    name = f"ebt{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)


@pytest.fixture
def open_root():
    """An install root the service user can traverse (pytest's tmp dirs are root-only)."""
    root = Path(tempfile.mkdtemp(prefix="eb-root-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_admin_and_user_commands_as_root_leave_files_to_the_service_user(service_user, open_root,
                                                                          tmp_path: Path) -> None:
    root = open_root
    proc = run("bash", str(INSTALL), "--root", str(root), "--no-venv")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the installed layout, with the state dir inside the root and owned by the service user
    config = root / "etc/entry-buzzer/config.toml"
    state = root / "var/lib/entry-buzzer"
    config.write_text(config.read_text().replace('state_dir = "/var/lib/entry-buzzer"', f'state_dir = "{state}"'))
    assert f'state_dir = "{state}"' in config.read_text()
    os.chown(state, service_user.pw_uid, service_user.pw_gid)
    creds = root / "etc/entry-buzzer/credentials"
    assert creds.stat().st_mode & 0o777 == 0o700 and creds.stat().st_uid == 0      # root only
    password = tmp_path / "admin-password"
    password.write_text("correct horse battery staple\n")
    password.chmod(0o600)

    proc = run("bash", str(INSTALL), "--root", str(root), "--no-venv", "--admin", "alice",
               "--admin-password-file", str(password))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "added alice (admin" in proc.stdout
    assert (state / ".first-admin").read_text().strip() == "alice"

    # the README's command, as root, with no systemd credentials in the environment
    env = {"ENTRY_BUZZER_CREDENTIALS_DIR": str(creds)}
    proc = run(str(ENTRY_BUZZER), "user", "add", "sam", "--name", "Sam Staff", "--config", str(config),
               "--password-file", str(password), env_extra=env)
    assert proc.returncode == 0, proc.stderr
    proc = run(str(ENTRY_BUZZER), "user", "list", "--config", str(config), env_extra=env)
    assert proc.returncode == 0 and "alice\tadmin" in proc.stdout and "sam\tstaff" in proc.stdout

    db_files = sorted(state.glob("panel.sqlite3*"))
    assert db_files
    for path in db_files + [state / ".first-admin"]:
        assert path.stat().st_uid == service_user.pw_uid, path
    # the service user itself can open and write the database (what the panel does)
    sql = "PRAGMA journal_mode=WAL; UPDATE users SET display_name='Sam S.' WHERE username='sam'; " \
          "SELECT display_name FROM users WHERE username='sam';"
    proc = subprocess.run(["runuser", "-u", service_user.pw_name, "--", "sqlite3", str(state / "panel.sqlite3"),
                           sql], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Sam S." in proc.stdout, proc.stderr


def test_root_owned_database_left_by_an_old_run_is_handed_back(service_user, open_root, tmp_path) -> None:
    state = open_root / "state"
    state.mkdir(mode=0o700)
    os.chown(state, service_user.pw_uid, service_user.pw_gid)
    config = open_root / "config.toml"
    config.write_text(f'[storage]\nstate_dir = "{state}"\n[web]\nenabled = false\n')
    password = tmp_path / "pw"
    password.write_text("correct horse battery staple\n")
    password.chmod(0o600)
    (state / "panel.sqlite3").touch()            # as an older version, run as root, left it
    proc = run(str(ENTRY_BUZZER), "user", "add", "alice", "--config", str(config), "--password-file", str(password))
    assert proc.returncode == 0, proc.stderr
    assert (state / "panel.sqlite3").stat().st_uid == service_user.pw_uid
