"""install.sh --offline DIR: packages and wheels from a bundle (deploy/offline-bundle.sh), for doors
on locked-down school networks. The full path (apt and pip from the bundle on a fresh Debian 12)
runs in the VM test (scripts/vm-test.sh); here: the option's checks and its plumbing."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support_deploy import REPO

INSTALL = REPO / "deploy" / "install.sh"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INSTALL), *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def bundle(tmp_path: Path) -> Path:
    b = tmp_path / "bundle"
    (b / "debs").mkdir(parents=True)
    (b / "wheels").mkdir()
    (b / "debs" / "Packages").write_text("Package: python3-venv\nVersion: 3.11.2-1\n")
    return b


def test_offline_needs_an_existing_directory(tmp_path: Path) -> None:
    proc = run("--dry-run", "--offline", str(tmp_path / "missing"))
    assert proc.returncode == 2
    assert "--offline: no such directory" in proc.stderr


def test_offline_refuses_a_directory_that_is_not_a_bundle(tmp_path: Path) -> None:
    proc = run("--dry-run", "--offline", str(tmp_path))
    assert proc.returncode == 2
    assert "is not a bundle" in proc.stderr and "offline-bundle.sh" in proc.stderr


def test_offline_pip_installs_only_from_the_bundle_wheels(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    b = bundle(tmp_path)
    proc = run("--dry-run", "--root", str(root), "--offline", str(b))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pip_line = next(line for line in proc.stdout.splitlines() if "pip install" in line)
    assert f"--no-index --find-links {b}/wheels" in pip_line
    assert not any(root.iterdir())                     # a dry run changes nothing
