"""deploy/install.sh, run for real against a temporary root directory (no apt, users or
systemctl there), plus its dry run, idempotence and uninstall."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from controller.daemon import JOURNAL_FILE
from controller.journal import Journal
from tests.support_deploy import REPO, UNITS

INSTALL = REPO / "deploy" / "install.sh"
EXAMPLE = REPO / "deploy" / "config.example.toml"
ENTRY_BUZZER = Path(sys.executable).parent / "entry-buzzer"
STEPS = ("apt packages", "system user", "directories", "program: venv", "documentation",
         "config /etc/entry-buzzer/config.toml", "secrets", "self-signed certificate",
         "check the config", "systemd units", "first admin account", "enable and start")


def install(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ENTRY_BUZZER_BIN=str(ENTRY_BUZZER))
    env.pop("CREDENTIALS_DIRECTORY", None)
    proc = subprocess.run(["bash", str(INSTALL), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its mode, content hash and modification time."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[str(path.relative_to(root))] = (st.st_mode, digest, st.st_mtime_ns)
    return out


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def changes(output: str) -> int:
    match = re.search(r"done, (\d+) changes", output)
    assert match, output
    return int(match.group(1))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


@pytest.fixture
def installed(root: Path) -> Path:
    install("--root", str(root), "--no-venv", "--campus", "lincoln-high", "--door", "north-door")
    return root


def test_dry_run_in_temp_root_prints_every_step_and_changes_nothing(root: Path) -> None:
    out = install("--dry-run", "--root", str(root)).stdout
    assert list(root.iterdir()) == []
    for step in STEPS:
        assert f"==> {step}" in out, step
    for command in ("apt-get install", "useradd --system", "python3 -m venv --system-site-packages",
                    "pip install", "install -m 0640 deploy/config.example.toml", "openssl rand",
                    "openssl req -x509", "check-config", "user add", "systemctl enable --now"):
        assert command in out, command
    assert "\n    + " not in out                 # nothing executed
    assert "changes would be made" in out


def test_dry_run_on_this_machine_changes_nothing() -> None:
    """Without --root the dry run inspects the real system read-only and only prints."""
    paths = [Path("/opt/entry-buzzer"), Path("/etc/entry-buzzer"), Path("/var/lib/entry-buzzer"),
             Path("/etc/systemd/system/entry-buzzer.service")]
    before = {p: p.exists() for p in paths}
    out = install("--dry-run").stdout
    assert {p: p.exists() for p in paths} == before
    assert "\n    + " not in out
    for step in STEPS:
        assert f"==> {step}" in out, step


def test_temp_root_install_creates_the_tree(installed: Path) -> None:
    root = installed
    for unit in UNITS:
        assert (root / "etc/systemd/system" / unit).read_text() == (REPO / "systemd" / unit).read_text()
        assert mode(root / "etc/systemd/system" / unit) == 0o644
    config = root / "etc/entry-buzzer/config.toml"
    assert mode(config) == 0o640
    site = tomllib.loads(config.read_text())["site"]
    assert (site["campus"], site["door"]) == ("lincoln-high", "north-door")
    creds = root / "etc/entry-buzzer/credentials"
    assert mode(creds) == 0o700
    secret = creds / "web-secret-key"
    assert mode(secret) == 0o600 and re.fullmatch(r"[0-9a-f]{64}", secret.read_text().strip())
    assert mode(creds / "mqtt-password") == 0o600
    for name in ("web-tls.crt", "web-tls.key"):
        assert mode(creds / name) == 0o600
    cert = subprocess.run(["openssl", "x509", "-in", str(creds / "web-tls.crt"), "-noout", "-subject", "-ext",
                           "subjectAltName"], capture_output=True, text=True, check=True).stdout
    assert "localhost" in cert
    key_check = subprocess.run(["openssl", "pkey", "-in", str(creds / "web-tls.key"), "-noout"],
                               capture_output=True, text=True)
    assert key_check.returncode == 0
    assert mode(root / "var/lib/entry-buzzer") == 0o700
    assert os.access(root / "opt/entry-buzzer/bin/selftest", os.X_OK)
    assert (root / "opt/entry-buzzer/share/hardware.md").read_text() == (REPO / "hardware.md").read_text()
    # the installed config passes check-config with the installed credentials
    env = dict(os.environ, CREDENTIALS_DIRECTORY=str(creds))
    check = subprocess.run([str(ENTRY_BUZZER), "check-config", str(config)], env=env,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "config OK" in check.stdout


def test_second_run_changes_nothing(installed: Path) -> None:
    before = snapshot(installed)
    out = install("--root", str(installed), "--no-venv").stdout
    assert changes(out) == 0, out
    assert "\n    + " not in out
    assert snapshot(installed) == before


def test_existing_config_and_secrets_are_kept(installed: Path) -> None:
    config = installed / "etc/entry-buzzer/config.toml"
    secret = installed / "etc/entry-buzzer/credentials/web-secret-key"
    edited = config.read_text().replace('door_name = "Main entrance"', 'door_name = "North door"')
    config.write_text(edited)
    key = secret.read_text()
    out = install("--root", str(installed), "--no-venv").stdout
    assert "kept existing" in out
    assert config.read_text() == edited and secret.read_text() == key


def test_a_changed_unit_file_is_reinstalled(installed: Path) -> None:
    unit = installed / "etc/systemd/system/entry-buzzer.service"
    unit.write_text("[Service]\nExecStart=/bin/false\n")
    out = install("--root", str(installed), "--no-venv").stdout
    assert changes(out) == 1
    assert unit.read_text() == (REPO / "systemd/entry-buzzer.service").read_text()


def test_a_broken_config_stops_the_install(installed: Path) -> None:
    config = installed / "etc/entry-buzzer/config.toml"
    config.write_text(config.read_text().replace("strike_pin = 17", "strike_pin = 4"))
    proc = install("--root", str(installed), "--no-venv", check=False)
    assert proc.returncode != 0
    assert "gpio.strike_pin" in proc.stderr
    assert "==> systemd units" not in proc.stdout


def _journal_with_events(root: Path) -> Path:
    path = root / "var/lib/entry-buzzer" / JOURNAL_FILE
    journal = Journal(path, "lincoln-high", "north-door")
    journal.append("controller_started", version="test", previous_stop="none")
    journal.close()
    return path


def test_uninstall_keeps_config_and_journal(installed: Path) -> None:
    journal = _journal_with_events(installed)
    out = install("--uninstall", "--root", str(installed)).stdout
    assert not (installed / "opt/entry-buzzer").exists()
    for unit in UNITS:
        assert not (installed / "etc/systemd/system" / unit).exists()
    assert journal.is_file() and (installed / "etc/entry-buzzer/config.toml").is_file()
    assert "kept:" in out
    again = install("--uninstall", "--root", str(installed)).stdout
    assert changes(again) == 0


def test_uninstall_purge_removes_journal_config_and_secrets(installed: Path) -> None:
    _journal_with_events(installed)
    install("--uninstall", "--purge", "--root", str(installed))
    for gone in ("opt/entry-buzzer", "etc/entry-buzzer", "var/lib/entry-buzzer"):
        assert not (installed / gone).exists(), gone


def test_uninstall_dry_run_removes_nothing(installed: Path) -> None:
    before = snapshot(installed)
    out = install("--uninstall", "--purge", "--dry-run", "--root", str(installed)).stdout
    assert "rm -rf" in out and "userdel" in out
    assert snapshot(installed) == before


@pytest.mark.parametrize("args, message", [
    (["--purge"], "--purge only goes with --uninstall"),
    (["--campus", "Lincoln High"], "is not a slug"),
    (["--bogus"], "unknown option"),
])
def test_bad_arguments_are_refused(root: Path, args: list[str], message: str) -> None:
    proc = install("--root", str(root), *args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert list(root.iterdir()) == []


def test_example_config_shows_every_key() -> None:
    """The shipped example documents ALL keys: a new setting must be added to it."""
    import dataclasses

    from controller import config as cfg
    data = tomllib.loads(EXAMPLE.read_text())
    assert set(data) == set(cfg.SECTION_CLASSES)
    for name, cls in cfg.SECTION_CLASSES.items():
        assert set(data[name]) == {f.name for f in dataclasses.fields(cls)}, name


def test_example_config_passes_check_config(tmp_path: Path) -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    creds = tmp_path / "credentials"
    creds.mkdir()
    for section in data.values():
        for value in section.values():
            if isinstance(value, str) and value.startswith("credential:"):
                (creds / value.split(":", 1)[1]).write_text("placeholder\n")
                (creds / value.split(":", 1)[1]).chmod(0o600)
    env = dict(os.environ, CREDENTIALS_DIRECTORY=str(creds))
    proc = subprocess.run([str(ENTRY_BUZZER), "check-config", str(EXAMPLE)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # and without the credentials the same file is refused, naming the key
    env.pop("CREDENTIALS_DIRECTORY")
    env["ENTRY_BUZZER_CREDENTIALS_DIR"] = str(tmp_path / "no-credentials")
    proc = subprocess.run([str(ENTRY_BUZZER), "check-config", str(EXAMPLE)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "web.secret_key_file" in proc.stderr
