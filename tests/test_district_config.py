"""District settings and console script: strict keys named in errors, the shipped example
loads, the recorder's systemd unit verifies cleanly; message classification (pure)."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from district import config
from district.cli import main
from district.recorder.messages import Bridge, Event, Rejected, Snapshot, State, Status, classify

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "district" / "district.example.toml"
UNIT = REPO / "systemd" / "district" / "entry-buzzer-district-recorder.service"


def test_example_config_loads_and_names_real_values() -> None:
    s = config.load(EXAMPLE)
    assert s.broker.tls and s.broker.share_group == "recorders"
    assert s.recorder.campuses == ("lincoln-elementary", "washington-middle")
    assert s.retention.events_months == 24


@pytest.mark.parametrize("text, named", [
    ("[recorder]\ngap_dealy_seconds = 3\n", "recorder.gap_dealy_seconds"),
    ("[brokr]\nhost = 'x'\n", "brokr"),
    ("[broker]\nport = '1883'\n", "broker.port"),
    ("[broker]\nport = 0\n", "broker.port"),
    ("[broker]\ntls = 1\n", "broker.tls"),
    ("[recorder]\ncampuses = ['Lincoln High']\n", "recorder.campuses"),
    ("[recorder]\ncampuses = ['all']\n", "recorder.campuses"),
    ("[retention]\nevents_months = -1\n", "retention.events_months"),
    ("[database]\ndsn = 5\n", "database.dsn"),
])
def test_bad_keys_are_named(tmp_path: Path, text: str, named: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=named.replace(".", r"\.")):
        config.load(path)
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_board_section_is_left_to_the_board(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text("[board]\nanything = 1\n")
    assert config.load(path).extra == {"board": {"anything": 1}}


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[recorder\n")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(tmp_path / "bad.toml")


def test_console_script_is_registered() -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert 'entry-buzzer-district = "district.cli:main"' in text


@pytest.mark.systemd
def test_recorder_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    fake = tmp_path / "entry-buzzer-district"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    text = UNIT.read_text()
    binary = "/opt/entry-buzzer/venv/bin/entry-buzzer-district"
    assert binary in text
    staged = tmp_path / UNIT.name
    staged.write_text(text.replace(binary, str(fake)))
    out = subprocess.run([analyze, "verify", "--man=no", str(staged)], capture_output=True, text=True, timeout=120,
                         env={"SYSTEMD_LOG_COLOR": "0", "LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"})
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                if UNIT.name in line or "Unknown" in line or "Failed" in line]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


# ---------------------------------------------------------------- classification (pure)

KNOWN = {"lincoln"}
ROOT = "entry/lincoln/main"


def _event(**kw: object) -> bytes:
    e = {"campus": "lincoln", "door": "main", "epoch": "a" * 32, "id": str(uuid.uuid4()), "seq": 1,
         "type": "door_opened", "ts": "2026-11-30T07:00:00.000Z"}
    e.update(kw)
    return json.dumps(e).encode()


def test_classify_valid_messages() -> None:
    assert isinstance(classify(f"{ROOT}/events", _event(), "entry", KNOWN, 100), Event)
    assert classify(f"{ROOT}/status", b"online", "entry", KNOWN, 100) == Status("lincoln", "main", True)
    assert isinstance(classify(f"{ROOT}/snapshot/r1", b"\xff\xd8xx", "entry", KNOWN, 100), Snapshot)
    assert classify("entry/bridges/lincoln/state", b"0", "entry", KNOWN, 100) == Bridge("lincoln", False)
    state = {"alarms": [], "camera_ok": True, "campus": "lincoln", "door": "locked", "door_id": "main",
             "fault": None, "last_seq": 0, "lockdown": None, "outbox_depth": 0, "ringing": None,
             "ts": "2026-11-30T07:00:00.000Z", "version": "0.1.0"}
    assert isinstance(classify(f"{ROOT}/state", json.dumps(state).encode(), "entry", KNOWN, 100), State)


def test_classify_accepts_event_types_it_does_not_know() -> None:
    """The contract: new types may be added; consumers keep what they do not know."""
    item = classify(f"{ROOT}/events", _event(type="panic_pressed"), "entry", KNOWN, 100)
    assert isinstance(item, Event) and item.type == "panic_pressed"


@pytest.mark.parametrize("topic, payload, reason", [
    (f"{ROOT}/events", b"{", "invalid_json"),
    (f"{ROOT}/events", _event(seq=0), "schema"),
    (f"{ROOT}/events", _event(type=7), "schema"),
    (f"{ROOT}/events", _event(door="other"), "topic_mismatch"),
    (f"{ROOT}/events", _event(ts="yesterday"), "schema"),
    ("entry/elsewhere/main/events", _event(campus="elsewhere"), "unknown_campus"),
    (f"{ROOT}/status", b"", "schema"),
    (f"{ROOT}/snapshot/r1", b"\xff\xd8" + bytes(200), "oversized"),
    (f"{ROOT}/snapshot/r1", b"PNG", "not_jpeg"),
    (f"{ROOT}/whatever", b"x", "bad_topic"),
    ("other/lincoln/main/events", b"x", "bad_topic"),
])
def test_classify_refusals(topic: str, payload: bytes, reason: str) -> None:
    item = classify(topic, payload, "entry", KNOWN, 100)
    assert isinstance(item, Rejected) and item.reason == reason, item


def test_client_id_override_keeps_everything_else(tmp_path: Path) -> None:
    from district.config import from_dict, to_dict

    s = config.load(EXAMPLE)
    assert from_dict(to_dict(s)) == s
    path = tmp_path / "d.toml"
    path.write_text("[broker]\nclient_id = 'x'\n")
    assert main(["check-config", "--config", str(path), "--client-id", "district-recorder-2"]) == 0


@pytest.mark.systemd
def test_recorder_template_unit_verifies(tmp_path: Path) -> None:
    template = UNIT.with_name("entry-buzzer-district-recorder@.service")
    assert "--client-id district-recorder-%i" in template.read_text()
    analyze = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    fake = tmp_path / "entry-buzzer-district"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    staged = tmp_path / "entry-buzzer-district-recorder@2.service"
    staged.write_text(template.read_text().replace("/opt/entry-buzzer/venv/bin/entry-buzzer-district", str(fake)))
    out = subprocess.run([analyze, "verify", "--man=no", str(staged)], capture_output=True, text=True, timeout=120,
                         env={"SYSTEMD_LOG_COLOR": "0", "LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr


def test_retire_with_no_broker_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:            # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "d.toml"
    path.write_text(f"[broker]\nport = {port}\n")
    assert main(["retire-recorder", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "did not accept" in err and "Traceback" not in err
