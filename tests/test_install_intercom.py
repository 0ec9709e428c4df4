"""install.sh installs the intercom's media engine (the Python extra "intercom") by default,
and not with --without-intercom; the choice is part of the install fingerprint, so adding the
intercom to a door installed without it reinstalls. Run against a temporary root with a stand-in
venv python that records its pip command (the real pip install runs in scripts/vm-test.sh)."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.test_install import install

RECORDER = """#!/bin/sh
echo "$*" >> "{log}"
"""


def fake_venv(root: Path) -> Path:
    bin_dir = root / "opt" / "entry-buzzer" / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = root.parent / "pip.log"
    for name in ("python", "entry-buzzer"):
        exe = bin_dir / name
        exe.write_text(RECORDER.format(log=log))
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return log


def pip_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "pip install" in line] if log.exists() else []


def test_the_intercom_extra_is_installed_by_default_and_left_out_on_request(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    log = fake_venv(root)
    out = install("--root", str(root)).stdout
    assert "with the intercom's media engine" in out
    [line] = pip_lines(log)
    assert line.endswith(f"{Path(__file__).resolve().parents[1]}[intercom]")

    install("--root", str(root))                                     # nothing changed: no reinstall
    assert len(pip_lines(log)) == 1

    out = install("--root", str(root), "--without-intercom").stdout  # the choice changed: reinstall
    assert "--without-intercom" in out and "503" in out
    assert not pip_lines(log)[-1].endswith("[intercom]") and len(pip_lines(log)) == 2

    install("--root", str(root), "--with-intercom")                  # and added back
    assert pip_lines(log)[-1].endswith("[intercom]") and len(pip_lines(log)) == 3


def test_help_documents_the_intercom_options() -> None:
    out = install("--help").stdout
    assert "--with-intercom" in out and "--without-intercom" in out and "The default" in out
