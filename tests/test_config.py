"""Configuration: typed settings, every error names the key, check-config exits 2 / 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from controller import config as cfg
from entry_buzzer.cli import main

GOOD = """
[site]
campus = "lincoln-elementary"
door = "main-entrance"
campus_name = "Lincoln Elementary"
door_name = "Main entrance"

[gpio]
buzzer_pin = 27
strike_pin = 17
door_contact_pin = 22

[door]
unlock_seconds = 5
ring_timeout_seconds = 60

[camera]
kind = "simulated"

[storage]
state_dir = "/tmp/entry-buzzer-test"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_good_config_loads_typed(tmp_path):
    s = cfg.load(write(tmp_path, GOOD))
    assert s.site.campus == "lincoln-elementary"
    assert s.gpio.strike_pin == 17 and s.gpio.door_contact_pin == 22 and s.gpio.tamper_pin is None
    assert isinstance(s.door.unlock_seconds, float) and s.door.unlock_seconds == 5.0
    assert isinstance(s.storage.state_dir, Path)


def test_defaults_are_documented_values():
    s = cfg.Settings()
    assert s.door.unlock_seconds == 5 and s.door.ring_timeout_seconds == 60
    assert cfg.UNLOCK_CAP_SECONDS == 30


@pytest.mark.parametrize("snippet, key, words", [
    ("[gpio]\nstrike_pin = 14", "gpio.strike_pin",
     "14 is pulled high or toggles at boot; use a pin in 9-27 other than 14/15"),
    ("[gpio]\nstrike_pin = 4", "gpio.strike_pin", "pulled high"),
    ("[gpio]\nstrike_pin = 40", "gpio.strike_pin", "9-27"),
    ("[gpio]\nstrike_active_high = false", "gpio.strike_active_high", "active-low"),
    ("[gpio]\nbuzzer_pin = 17", "gpio.strike_pin", "pin 17 is already used by gpio.buzzer_pin"),
    ("[gpio]\nbuzzer_pin = \"27\"", "gpio.buzzer_pin", "not an integer"),
    ("[gpio]\nled_ringing_pin = 1", "gpio.led_ringing_pin", "2-27"),
    ("[gpio]\ndoor_open_level = \"up\"", "gpio.door_open_level", "not one of"),
    ("[gpio]\nstrike = 17", "gpio.strike", "unknown key"),
    ("[door]\nunlock_seconds = 31", "door.unlock_seconds", "hard cap"),
    ("[door]\nunlock_seconds = 0", "door.unlock_seconds", "out of range"),
    ("[door]\nring_timeout_seconds = true", "door.ring_timeout_seconds", "not a number"),
    ("[door]\nheld_open_seconds = 1", "door.held_open_seconds", "out of range"),
    ("[camera]\nkind = \"webcam\"", "camera.kind", "not one of"),
    ("[camera]\njpeg_quality = 100", "camera.jpeg_quality", "out of range"),
    ("[storage]\nsnapshot_max_mb = 0", "storage.snapshot_max_mb", "out of range"),
    ("[site]\ncampus = \"Lincoln Elementary\"", "site.campus", "not a slug"),
    ("[site]\ndoor = \"\"", "site.door", "not a slug"),
    ("[mqtt]\npassword = \"hunter2\"", "mqtt.password", "never inline"),
    ("[mqtt]\nusername = \"door\"", "mqtt.password_file", "no password file"),
    ("[mqtt]\nport = 70000", "mqtt.port", "not a TCP port"),
    ("[web]\nsecret_key = \"abc\"", "web.secret_key", "never inline"),
    ("[web]\ntls_cert_file = \"/nonexistent/cert.pem\"", "web.tls_cert_file", "does not exist"),
    ("[alarms]\nx = 1", "alarms", "unknown section"),
    ("site = 3", "site", "must be a table"),
])
def test_each_invalid_input_names_key_and_exits_2(tmp_path, capsys, snippet, key, words):
    path = write(tmp_path, snippet + "\n")
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load(path)
    assert any(line.startswith(f"{key}:") and words in line for line in info.value.errors), info.value.errors
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {key}:" in err and "Traceback" not in err


def test_all_errors_reported_at_once(tmp_path):
    path = write(tmp_path, "[gpio]\nstrike_pin = 14\nbogus = 1\n[door]\nunlock_seconds = 99\n")
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load(path)
    keys = {line.split(":")[0] for line in info.value.errors}
    assert keys == {"gpio.strike_pin", "gpio.bogus", "door.unlock_seconds"}


def test_invalid_toml_and_missing_file(tmp_path, capsys):
    assert main(["check-config", str(write(tmp_path, "[site\n"))]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["check-config", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_check_config_prints_summary_and_exits_0(tmp_path, capsys):
    assert main(["check-config", str(write(tmp_path, GOOD))]) == 0
    out = capsys.readouterr().out
    assert "lincoln-elementary/main-entrance" in out and "strike=17" in out and "config OK" in out


def test_check_config_as_a_process(tmp_path):
    bad = write(tmp_path, "[gpio]\nstrike_pin = 15\n")
    proc = subprocess.run([sys.executable, "-m", "entry_buzzer", "check-config", str(bad)],
                          capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert proc.returncode == 2
    assert "gpio.strike_pin: 15 is pulled high or toggles at boot" in proc.stderr


def test_secrets_from_file_and_systemd_credential(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("s3cret\n")
    assert cfg.read_secret(str(tmp_path / "pw")) == "s3cret"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("from-credential")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert cfg.read_secret("credential:mqtt-password") == "from-credential"


def test_secret_values_never_appear_in_summary(tmp_path):
    (tmp_path / "pw").write_text("s3cret-value")
    (tmp_path / "pw").chmod(0o600)                 # a secret file must be private (finding 9)
    text = GOOD + f'\n[mqtt]\nenabled = true\nusername = "door"\npassword_file = "{tmp_path / "pw"}"\n'
    s = cfg.load(write(tmp_path, text))
    assert "s3cret-value" not in s.summary()
