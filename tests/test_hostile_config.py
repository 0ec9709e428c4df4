"""Hostile configs (issue 9, finding 9): no stack trace from any TOML, and secret files must
be private regular files owned by root or the service user.

Every command that reads the config (check-config, run, relock) runs as a real process:
a hostile file gives exactly one clean ``error:`` line and exit 2 (relock still drives
the strike from its last-known-good copy).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from controller import config as cfg
from controller.relock import save_last_good

ENTRY_BUZZER = Path(sys.executable).parent / "entry-buzzer"

HOSTILE = {
    "nested-arrays": ("x = " + "[" * 5000 + "]" * 5000).encode(),
    "nested-inline-tables": ("x = " + "{a=" * 5000 + "1" + "}" * 5000).encode(),
    "nested-in-a-value": ("[gpio]\nstrike_pin = " + "[" * 900 + "]" * 900).encode(),
    "huge": b"# padding\n" * 200_000,
    "latin-1": "[site]\ncampus_name = \"\u00c9cole\"\n".encode("latin-1"),
    "nul-bytes": b"[gpio]\nstrike_pin = 17\x00\n",
    "utf-16": "[gpio]\nstrike_pin = 17\n".encode("utf-16"),
}
REASONS = {"nested-arrays": "nested too deeply", "nested-inline-tables": "nested too deeply",
           "nested-in-a-value": "nested too deeply", "huge": "too large", "latin-1": "not UTF-8",
           "nul-bytes": "NUL bytes", "utf-16": "NUL bytes"}


def entry_buzzer(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    env.pop("CREDENTIALS_DIRECTORY", None)
    env.update(env_extra or {})
    return subprocess.run([str(ENTRY_BUZZER), *args], env=env, cwd="/", capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def one_clean_error(proc: subprocess.CompletedProcess[str], reason: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and reason in errors[0] and len(errors[0]) < 300, proc.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_toml_gives_one_line_and_exit_2(tmp_path: Path, name: str) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(HOSTILE[name])
    for command in (["check-config", str(config)], ["run", "--config", str(config)]):
        proc = entry_buzzer(*command)
        assert proc.returncode == 2, (command, proc.stderr[-2000:])
        one_clean_error(proc, REASONS[name])
    state = tmp_path / "state"
    state.mkdir()
    save_last_good(cfg.GpioSettings(strike_pin=22), state)
    proc = entry_buzzer("relock", "--config", str(config), env_extra={"STATE_DIRECTORY": str(state)})
    assert proc.returncode == 2
    one_clean_error(proc, REASONS[name])
    assert "strike on GPIO 22 driven locked" in proc.stdout


def test_a_fifo_as_config_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    proc = entry_buzzer("check-config", str(fifo))
    assert proc.returncode == 2
    one_clean_error(proc, "not a regular file")


# ------------------------------------------------------------------ secret files

def _config(tmp_path: Path, mqtt: dict[str, str] | None = None, web: dict[str, str] | None = None) -> Path:
    lines = ["[web]", "enabled = true"] + [f'{k} = "{v}"' for k, v in (web or {}).items()]
    if mqtt is not None:
        lines += ["[mqtt]", "enabled = true"] + [f'{k} = "{v}"' for k, v in mqtt.items()]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _secret(path: Path, text: str = "s3cret\n", mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _refused(config: Path, key: str, why: str, **env: str) -> None:
    proc = entry_buzzer("check-config", str(config), env_extra=env)
    assert proc.returncode == 2, proc.stdout
    assert "config OK" not in proc.stdout and "Traceback" not in proc.stderr
    assert any(line.startswith(f"error: {key}:") and why in line for line in proc.stderr.splitlines()), \
        proc.stderr


def test_private_secret_files_pass_when_private(tmp_path: Path) -> None:
    key = _secret(tmp_path / "panel-key.pem")
    cert = _secret(tmp_path / "panel-cert.pem", "CERT\n", 0o644)        # public: 0644 is fine
    secret = _secret(tmp_path / "secret")
    pw = _secret(tmp_path / "pw")
    config = _config(tmp_path, mqtt={"username": "door", "password_file": str(pw)},
                     web={"secret_key_file": str(secret), "tls_cert_file": str(cert), "tls_key_file": str(key)})
    proc = entry_buzzer("check-config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "config OK" in proc.stdout


@pytest.mark.parametrize("target", ["/etc/shadow", "/proc/self/environ"])
def test_symlink_to_a_system_file_is_refused(tmp_path: Path, target: str) -> None:
    link = tmp_path / "pw"
    link.symlink_to(target)
    config = _config(tmp_path, mqtt={"username": "door", "password_file": str(link)})
    _refused(config, "mqtt.password_file", "symbolic link")


def test_proc_file_named_directly_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path, web={"secret_key_file": f"/proc/{os.getpid()}/environ"})
    _refused(config, "web.secret_key_file", "not a regular file")


def test_file_reached_through_a_linked_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    _secret(real / "secret")
    (tmp_path / "linked").symlink_to(real)
    config = _config(tmp_path, web={"secret_key_file": str(tmp_path / "linked" / "secret")})
    _refused(config, "web.secret_key_file", "through a symbolic link")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_group_or_world_readable_private_key_is_refused(tmp_path: Path, mode: int) -> None:
    key = _secret(tmp_path / "panel-key.pem", mode=mode)
    cert = _secret(tmp_path / "panel-cert.pem", "CERT\n", 0o644)
    config = _config(tmp_path, web={"tls_cert_file": str(cert), "tls_key_file": str(key)})
    _refused(config, "web.tls_key_file", f"mode {mode:04o}")


def test_world_writable_certificate_is_refused(tmp_path: Path) -> None:
    key = _secret(tmp_path / "panel-key.pem")
    cert = _secret(tmp_path / "panel-cert.pem", "CERT\n", 0o666)
    config = _config(tmp_path, web={"tls_cert_file": str(cert), "tls_key_file": str(key)})
    _refused(config, "web.tls_cert_file", "writable by group or others")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_secret_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    pw = _secret(tmp_path / "pw")
    os.chown(pw, 65534, 65534)
    config = _config(tmp_path, mqtt={"username": "door", "password_file": str(pw)})
    _refused(config, "mqtt.password_file", "owned by uid 65534")


def test_a_directory_is_not_a_secret_file(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir(mode=0o700)
    config = _config(tmp_path, web={"secret_key_file": str(tmp_path / "dir")})
    _refused(config, "web.secret_key_file", "not a regular file")


def test_credential_name_cannot_leave_the_credentials_directory(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    _secret(tmp_path / "outside")
    config = _config(tmp_path, web={"secret_key_file": "credential:../outside"})
    _refused(config, "web.secret_key_file", "plain file name", CREDENTIALS_DIRECTORY=str(creds))


def _acl(*entries: tuple[int, int, int]) -> bytes:
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, ident) for tag, perm, ident in entries)


USER_OBJ, USER, GROUP_OBJ, MASK, OTHER, UNDEFINED = 0x01, 0x02, 0x04, 0x10, 0x20, 0xFFFFFFFF


def test_systemd_style_acl_credential_is_judged_by_its_entries(tmp_path: Path) -> None:
    """systemd hands credentials over as root-owned files with an ACL for the service user;
    the mode then shows the ACL mask in the group bits. Only root and us may be named."""
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    secret = _secret(creds / "web-secret-key", mode=0o400)
    ours = _acl((USER_OBJ, 4, UNDEFINED), (USER, 4, os.geteuid()), (GROUP_OBJ, 0, UNDEFINED),
                (MASK, 4, UNDEFINED), (OTHER, 0, UNDEFINED))
    try:
        os.setxattr(secret, "system.posix_acl_access", ours)
    except OSError as exc:
        pytest.skip(f"no POSIX ACLs on this filesystem ({exc})")
    assert secret.stat().st_mode & 0o777 == 0o440          # the mask shows up as group read
    config = _config(tmp_path, web={"secret_key_file": "credential:web-secret-key"})
    proc = entry_buzzer("check-config", str(config), env_extra={"CREDENTIALS_DIRECTORY": str(creds)})
    assert proc.returncode == 0, proc.stderr
    theirs = _acl((USER_OBJ, 4, UNDEFINED), (USER, 4, 65534), (GROUP_OBJ, 0, UNDEFINED),
                  (MASK, 4, UNDEFINED), (OTHER, 0, UNDEFINED))
    os.setxattr(secret, "system.posix_acl_access", theirs)
    _refused(config, "web.secret_key_file", "uid 65534", CREDENTIALS_DIRECTORY=str(creds))
