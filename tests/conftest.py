"""Shared fixtures: settings in a temp state dir, gpiozero's MockFactory, a fake clock.

Area-specific fixtures (broker, browser, systemd) live in their own tests/support_*.py modules;
every one of them is registered here through ``pytest_plugins``, so a test names a fixture as an
argument and never imports it.

Markers: every test that starts a broker, a subprocess, a browser, nginx, PostgreSQL or a media
engine is marked automatically (``pytest_collection_modifyitems`` below: by the fixtures it uses
and by the names its code and its fixtures' code reach); module-level ``pytestmark`` adds to
that. Every other test gets the ``fast`` marker: ``pytest -m fast`` is the fast lane.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import time
import types
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest
from gpiozero.pins.mock import MockFactory

from controller import config as cfg

pytest_plugins = sorted(f"tests.{p.stem}" for p in Path(__file__).parent.glob("support_*.py"))
pytest.register_assert_rewrite(*pytest_plugins)   # they import each other: rewrite whichever comes first

SLOW_MARKERS = ("browser", "broker", "process", "systemd", "nginx", "postgres", "media", "vm")
FIXTURE_MARKERS = {"broker": "broker", "linked": "broker", "subscriber": "broker", "browser": "browser"}
"""Fixtures that start something outside the test process, by the marker they imply."""
NAME_MARKERS = {"subprocess": "process", "Popen": "process", "start_broker": "broker", "Broker": "broker",
                "launch_chromium": "browser", "sync_playwright": "browser", "NginxFront": "nginx",
                "FrontDaemon": "process", "SYSTEMD_ANALYZE": "systemd", "initdb": "postgres", "aiortc": "media"}
"""Names that, reached from a test's code or its fixtures' code (within tests/), imply a marker."""


def _reached_names(objs: Iterable[Any]) -> set[str]:
    """Global names used by these functions and, transitively, by the tests/ helpers they call."""
    seen: set[int] = set()
    names: set[str] = set()
    todo = list(objs)
    while todo:
        obj = todo.pop()
        obj = inspect.unwrap(obj) if inspect.isfunction(obj) else obj
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if inspect.isclass(obj):
            todo.extend(v for v in vars(obj).values() if inspect.isfunction(v))
            continue
        code = getattr(obj, "__code__", None)
        if code is None:
            continue
        module_globals = getattr(obj, "__globals__", {})
        codes = [code]
        while codes:
            c = codes.pop()
            codes.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
            for name in c.co_names:
                names.add(name)
                target = module_globals.get(name)
                if (inspect.isfunction(target) or inspect.isclass(target)) and \
                        str(getattr(target, "__module__", "")).startswith("tests."):
                    todo.append(target)
    return names


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark slow tests by what they reach; mark the rest ``fast``."""
    for item in items:
        wanted = {FIXTURE_MARKERS[f] for f in getattr(item, "fixturenames", ()) if f in FIXTURE_MARKERS}
        info = getattr(item, "_fixtureinfo", None)
        funcs: list[Any] = [getattr(item, "function", None)]
        if info is not None:
            funcs.extend(defs[-1].func for defs in info.name2fixturedefs.values() if defs)
        reached = _reached_names(f for f in funcs if f is not None)
        wanted |= {marker for name, marker in NAME_MARKERS.items() if name in reached}
        have = {m.name for m in item.iter_markers()}
        for marker in sorted(wanted - have):
            item.add_marker(marker)
        if not (wanted | have) & set(SLOW_MARKERS):
            item.add_marker("fast")


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

    def __init__(self, start: float = 1000.0, wall: datetime | None = None):
        self._mono = start
        self._wall = wall or datetime(2026, 11, 29, 8, 0, 0, tzinfo=timezone.utc)

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


def sim_settings(state_dir: Path) -> cfg.Settings:
    """Simulated-campus settings in the given state dir, MQTT and web off."""
    return cfg.with_overrides(
        cfg.Settings(), gpio=SIM_GPIO,
        camera={"kind": "simulated", "width": 160, "height": 120, "capture_timeout_seconds": 2.0},
        storage={"state_dir": state_dir},
        mqtt={"enabled": False}, web={"enabled": False})


@pytest.fixture
def settings(tmp_path: Path) -> cfg.Settings:
    """Simulated-campus settings in a private state dir, MQTT and web off."""
    return sim_settings(tmp_path / "state")


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
