"""The district's systemd units (board, recorder, recorder template): they verify cleanly, their
hardening score is enforced like the campus units', and what they run matches the district's
own defaults (the board's socket directory, the unprivileged account, one client id per
recorder instance). Why a separate module: these units run other binaries
(entry-buzzer-board, entry-buzzer-district) from their own directory, systemd/district/."""

from __future__ import annotations

import re
import stat
from pathlib import Path, PurePosixPath

import pytest

from district.board.config import WebSettings
from tests.support_deploy import SYSTEMD_DIR, exposure, systemd_env, systemd_verify, unit_directives

DISTRICT_DIR = SYSTEMD_DIR / "district"
BOARD = "entry-buzzer-district-board.service"
RECORDER = "entry-buzzer-district-recorder.service"
RECORDER_TEMPLATE = "entry-buzzer-district-recorder@.service"
UNITS = sorted(p.name for p in DISTRICT_DIR.glob("*.service"))
BINARY = re.compile(r"/opt/entry-buzzer/venv/bin/(entry-buzzer-board|entry-buzzer-district)\b")
# Lower than the campus units' 2.0: these services need no GPIO, camera or /proc/device-tree,
# so they also get PrivateDevices=, ProcSubset=pid, PrivateMounts= and RemoveIPC=.
MAX_EXPOSURE = 1.2
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "PrivateDevices": "yes", "PrivateMounts": "yes", "ProcSubset": "pid", "ProtectProc": "invisible",
             "RemoveIPC": "yes", "CapabilityBoundingSet": "", "MemoryDenyWriteExecute": "yes",
             "RestrictSUIDSGID": "yes", "LockPersonality": "yes", "SystemCallArchitectures": "native"}





_env, _verify, _exposure = systemd_env, systemd_verify, exposure


def _directives(name: str) -> dict[str, list[str]]:
    return unit_directives(DISTRICT_DIR / name)



def _stage(dest: Path, names: list[str] | None = None) -> list[Path]:
    """The units with the installed binaries replaced by a real executable script in ``dest``, so
    `systemd-analyze verify` resolves every Exec line."""
    dest.mkdir(parents=True, exist_ok=True)
    staged = []
    for name in names or UNITS:
        text = (DISTRICT_DIR / name).read_text()
        assert BINARY.search(text), f"{name} does not run an installed district binary"
        for match in set(BINARY.findall(text)):
            fake = dest / match
            fake.write_text("#!/bin/sh\nexit 0\n")
            fake.chmod(fake.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        out = dest / name
        out.write_text(BINARY.sub(lambda m: str(dest / m.group(1)), text))
        staged.append(out)
    return staged






def test_district_units_exist() -> None:
    assert UNITS == sorted([BOARD, RECORDER, RECORDER_TEMPLATE])


def test_district_units_verify_without_warnings(tmp_path: Path) -> None:
    staged = _stage(tmp_path / "units")
    result = _verify(staged, tmp_path / "units")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_verify_catches_a_bad_district_unit(tmp_path: Path) -> None:
    """The clean result above means something: a typo'd directive is reported."""
    unit = _stage(tmp_path / "units", [BOARD])[0]
    unit.write_text(unit.read_text().replace("ProtectHome=yes", "ProtectHom=yes"))
    assert "ProtectHom" in _verify([unit], tmp_path / "units").stderr


@pytest.mark.parametrize("name", UNITS)
def test_district_exposure_is_at_most_1_2(name: str, tmp_path: Path) -> None:
    unit = _stage(tmp_path / "units", [name])[0]
    score = _exposure(unit)
    print(f"{name}: exposure {score}")
    assert score <= MAX_EXPOSURE, f"{name} exposure {score} > {MAX_EXPOSURE}"


def test_exposure_rises_when_a_district_unit_loses_its_hardening(tmp_path: Path) -> None:
    """The score tracks the file: the board without its sandbox directives scores far worse."""
    unit = _stage(tmp_path / "units", [BOARD])[0]
    kept = [line for line in unit.read_text().splitlines()
            if line.split("=", 1)[0] not in HARDENING and not line.startswith(("Protect", "Restrict", "SystemCall"))]
    unit.write_text("\n".join(kept) + "\n")
    assert _exposure(unit) > MAX_EXPOSURE + 3


@pytest.mark.parametrize("name", UNITS)
def test_district_units_are_sandboxed_and_unprivileged(name: str) -> None:
    d = _directives(name)
    assert d["User"] == ["entry-district"] and d["Group"] == ["entry-district"]
    for key, value in HARDENING.items():
        assert d.get(key) == [value], f"{name}: {key}={d.get(key)}, want {value!r}"
    assert d["Restart"] == ["always"]
    assert "ReadWritePaths" not in d     # state lives in PostgreSQL; nothing local is written


@pytest.mark.parametrize("name", UNITS)
def test_district_units_run_their_binary_on_the_district_config(name: str) -> None:
    (start,) = _directives(name)["ExecStart"]
    binary = "entry-buzzer-board" if name == BOARD else "entry-buzzer-district"
    command = "serve" if name == BOARD else "recorder"
    assert start.split()[0].endswith(f"/bin/{binary}")
    assert "--config /etc/entry-buzzer/district.toml" in start and command in start.split()


def test_recorder_instances_each_have_their_own_client_id() -> None:
    """Instances share the subscription; two with one client id would take each other's session."""
    assert "--client-id district-recorder-%i" in _directives(RECORDER_TEMPLATE)["ExecStart"][0]
    assert "--client-id" not in _directives(RECORDER)["ExecStart"][0]


def test_board_unit_gives_nginx_its_socket() -> None:
    """The board's default socket is in the unit's runtime directory, which nginx (in the group)
    can enter and nobody else can; the socket itself is group-writable (UMask 0007)."""
    d = _directives(BOARD)
    socket_dir = PurePosixPath(WebSettings().socket_path).parent
    assert d["RuntimeDirectory"] == [socket_dir.name] and socket_dir.parent == PurePosixPath("/run")
    assert d["RuntimeDirectoryMode"] == ["0750"]
    assert d["UMask"] == ["0007"]
    assert d["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]   # the socket; PostgreSQL and MQTT over TCP


def test_the_deploy_steps_create_the_environment_the_units_run_from() -> None:
    """The units' ExecStart binary must be what the documented deploy steps install: the
    units once pointed at /opt/entry-buzzer/.venv, which no step created (the campus
    installer makes /opt/entry-buzzer/venv), so a district server following the docs got a
    unit that could not start."""
    steps = (SYSTEMD_DIR.parent / "docs" / "district-recorder.md").read_text(encoding="utf-8")
    venvs = {m.group(0).rsplit("/bin/", 1)[0]
             for name in UNITS for m in BINARY.finditer((DISTRICT_DIR / name).read_text(encoding="utf-8"))}
    assert venvs == {"/opt/entry-buzzer/venv"}
    assert "python3 -m venv /opt/entry-buzzer/venv" in steps
    assert "/opt/entry-buzzer/venv/bin/pip install '.[district]'" in steps
