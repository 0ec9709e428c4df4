"""Shared fixtures: settings in a temp state dir, gpiozero's MockFactory, a fake clock.

Area-specific fixtures (broker, browser, systemd) live in their own tests/support_*.py
modules and are imported by the tests that need them.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from gpiozero.pins.mock import MockFactory

from controller import config as cfg

SIM_GPIO = {"buzzer_pin": 27, "strike_pin": 17, "door_contact_pin": 22, "tamper_pin": 24, "exit_request_pin": 23,
            "led_ringing_pin": 19, "led_approved_pin": 26, "led_denied_pin": 13}


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.02) -> Any:
    """Poll until predicate() is truthy and return its value; fail after a generous timeout
    (shared, noisy machines). Never a timing assertion: the timeout only bounds a hang."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class FakeClock:
    """Injectable clock: monotonic seconds and UTC wall time move only when told."""

    def __init__(self, start: float = 1000.0):
        self._mono = start
        self._wall = datetime(2026, 11, 29, 8, 0, 0, tzinfo=timezone.utc)

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._wall

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pin_factory():
    factory = MockFactory()
    yield factory
    factory.reset()


@pytest.fixture
def settings(tmp_path: Path) -> cfg.Settings:
    """Simulated-campus settings in a private state dir, MQTT and web off."""
    return cfg.with_overrides(
        cfg.Settings(), gpio=SIM_GPIO,
        camera={"kind": "simulated", "width": 160, "height": 120, "capture_timeout_seconds": 2.0},
        storage={"state_dir": tmp_path / "state"},
        mqtt={"enabled": False}, web={"enabled": False})


@pytest.fixture
def small_disk(tmp_path):
    """A real 16 MB filesystem (tmpfs) to fill up: disk-full tests need root to mount it (CI runs
    as root); elsewhere they are skipped with the reason."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
