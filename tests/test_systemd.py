"""The systemd side of deployment: unit files verify cleanly, the hardening score is
enforced, and the daemon speaks the notify protocol (READY=1 after a safe start-up,
WATCHDOG=1 from the core's own loop, silence when the core is stuck)."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from controller import daemon
from controller import events as ev
from controller.notify import Notifier, watchdog_interval
from tests.support_deploy import (
    REPO,
    SYSTEMD_DIR,
    UNITS,
    NotifySocket,
    exposure,
    stage_units,
    systemd_env,
    systemd_verify,
    unit_directives,
)

MAX_EXPOSURE = 2.0
MAIN_UNIT = "entry-buzzer.service"
RELOCK_UNIT = "entry-buzzer-relock.service"








# ------------------------------------------------------------------ unit files

def test_units_exist() -> None:
    assert MAIN_UNIT in UNITS and RELOCK_UNIT in UNITS

_env, _verify, _exposure = systemd_env, systemd_verify, exposure


def _directives(name: str) -> dict[str, list[str]]:
    return unit_directives(SYSTEMD_DIR / name)



def test_units_verify_without_warnings(tmp_path: Path) -> None:
    _fake, staged = stage_units(tmp_path / "units")
    result = _verify(staged, tmp_path / "units")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_verify_harness_catches_a_bad_unit(tmp_path: Path) -> None:
    """The clean result above means something: a typo'd directive is reported."""
    _fake, staged = stage_units(tmp_path / "units", [MAIN_UNIT])
    unit = staged[0]
    unit.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilegs=yes"))
    result = _verify(staged, tmp_path / "units")
    assert "NoNewPrivilegs" in result.stderr




@pytest.mark.parametrize("name", UNITS)
def test_security_exposure_is_at_most_2(name: str, tmp_path: Path) -> None:
    _fake, staged = stage_units(tmp_path / "units", [name])
    score = _exposure(staged[0])
    print(f"{name}: exposure {score}")
    assert score <= MAX_EXPOSURE, f"{name} exposure {score} > {MAX_EXPOSURE}"


def test_exposure_parser_sees_an_unhardened_unit(tmp_path: Path) -> None:
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/bin/true\n")
    assert _exposure(bare) > MAX_EXPOSURE


def test_main_unit_contract() -> None:
    d = _directives(MAIN_UNIT)
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert d["Restart"] == ["on-failure"]
    assert re.fullmatch(r"\d+s", d["WatchdogSec"][0])
    assert d["ExecStart"][0].split()[1:] == ["run", "--config", "/etc/entry-buzzer/config.toml"]
    assert d["ExecStopPost"][0].split()[1:] == ["relock", "--config", "/etc/entry-buzzer/config.toml"]
    assert d["User"] == ["entry-buzzer"]
    assert set(d["SupplementaryGroups"][0].split()) == {"gpio", "video"}
    assert d["StateDirectory"] and d["ConfigurationDirectory"]
    creds = {v.split(":", 1)[0] for v in d["LoadCredential"]}
    assert {"web-secret-key", "mqtt-password"} <= creds
    # Devices through an allow list, not PrivateDevices= (which would hide the GPIO and camera).
    assert d["DevicePolicy"] == ["closed"]
    allowed = {v.split()[0] for v in d["DeviceAllow"]}
    assert {"char-gpiochip", "char-video4linux", "char-media", "char-dma_heap"} <= allowed
    assert "PrivateDevices" not in d
    assert d["CapabilityBoundingSet"] == [""] and d["AmbientCapabilities"] == [""]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "MemoryDenyWriteExecute",
                "RestrictSUIDSGID", "LockPersonality", "ProtectKernelTunables"):
        assert d[key] == ["yes"], key
    assert d["ProtectSystem"] == ["strict"]
    assert "@system-service" in d["SystemCallFilter"]


@pytest.mark.parametrize("name", UNITS)
def test_units_keep_what_gpio_needs_on_a_pi(name: str) -> None:
    """Hardening that would silently break the GPIO on a real Pi is absent."""
    d = _directives(name)
    # gpiozero identifies the board from /proc/device-tree or /proc/cpuinfo.
    assert d.get("ProcSubset", ["all"]) != ["pid"]
    # lgpio creates FIFOs in its working directory ($LG_WD): it must be the writable state dir.
    assert d["WorkingDirectory"] == ["/var/lib/entry-buzzer"] and d["StateDirectory"] == ["entry-buzzer"]
    assert "LG_WD=/var/lib/entry-buzzer" in d["Environment"]
    assert "gpio" in d["SupplementaryGroups"][0].split()
    assert any(v.startswith("char-gpiochip") for v in d["DeviceAllow"])
    assert "PrivateUsers" not in d and "PrivateDevices" not in d


def test_relock_unit_runs_before_the_controller() -> None:
    d = _directives(RELOCK_UNIT)
    assert d["Type"] == ["oneshot"]
    assert MAIN_UNIT in d["Before"][0].split()
    assert d["ExecStart"][0].split()[1] == "relock"
    assert RELOCK_UNIT in _directives(MAIN_UNIT)["After"][0].split()


# ------------------------------------------------------------------ notify protocol

def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 5.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))   # meant for another process
    assert watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None


@pytest.mark.process
def test_daemon_process_sends_ready_then_watchdog_pings(tmp_path: Path) -> None:
    """The real daemon (simulated campus) as a subprocess, supervised like systemd would."""
    state = tmp_path / "state"
    with NotifySocket() as notify:
        env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="200000", PYTHONUNBUFFERED="1")
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "entry_buzzer", "simulate", "--no-web", "--no-mqtt",
             "--state-dir", str(state), "--duration", "5"],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            before_ready = notify.wait_for("READY=1", timeout=60)
            # READY=1 comes after the start was journaled (journal open, strike driven locked first).
            with sqlite3.connect(f"file:{state / daemon.JOURNAL_FILE}?mode=ro", uri=True) as db:
                types = [row[0] for row in db.execute("SELECT type FROM events ORDER BY seq")]
            db.close()
            assert ev.CONTROLLER_STARTED in types
            pings = 0
            while pings < 3:
                pings += notify.wait_for("WATCHDOG=1", timeout=30).count("WATCHDOG=1")
            notify.wait_for("STOPPING=1", timeout=60)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        assert "READY=1" not in before_ready[:-1]


def _probe_factory(pin_factory: MockFactory, seen: dict):
    class Probe(daemon.Service):
        name = "probe"

        def __init__(self, controller: daemon.Controller):
            self.controller = controller

        def start(self) -> None:
            c = self.controller
            seen["strike_pin_high"] = pin_factory.pin(c.settings.gpio.strike_pin).state
            seen["started_journaled"] = bool(c.journal.query(types=[ev.CONTROLLER_STARTED]))
            if seen.get("fail"):
                raise RuntimeError("panel could not bind")

    return Probe


def _run_in_thread(settings, pin_factory, factories, stop: threading.Event):
    result: dict = {}

    def target() -> None:
        result["rc"] = daemon.run(settings, pin_factory=pin_factory, service_factories=factories,
                                  simulated=True, stop_event=stop)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def test_ready_only_after_strike_locked_journal_open_and_services_started(
        settings, pin_factory: MockFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}
    stop = threading.Event()
    with NotifySocket() as notify:
        monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        thread, result = _run_in_thread(settings, pin_factory, [_probe_factory(pin_factory, seen)], stop)
        notify.wait_for("READY=1", timeout=60)
        assert seen == {"strike_pin_high": False, "started_journaled": True}
        stop.set()
        thread.join(timeout=60)
        notify.wait_for("STOPPING=1", timeout=30)
    assert result["rc"] == 0


def test_no_ready_when_a_service_fails_to_start(
        settings, pin_factory: MockFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {"fail": True}
    with NotifySocket() as notify:
        monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        thread, result = _run_in_thread(settings, pin_factory, [_probe_factory(pin_factory, seen)],
                                        threading.Event())
        thread.join(timeout=60)
        lines = notify.wait_for("STOPPING=1", timeout=30)
    assert result["rc"] == 1
    assert "READY=1" not in lines
    assert pin_factory.pin(settings.gpio.strike_pin).state is False


def test_watchdog_pings_stop_while_the_core_is_stuck(settings, pin_factory: MockFactory) -> None:
    """A core stuck inside a transition (its lock held) must silence the watchdog."""
    controller = daemon.build(settings, pin_factory=pin_factory, simulated=True)
    with NotifySocket() as notify:
        loop = daemon.CoreLoop(controller.core, Notifier(notify.path), watchdog_seconds=0.05)
        loop.start()
        try:
            for _ in range(3):
                notify.wait_for("WATCHDOG=1", timeout=30)
            with controller.core._lock:          # simulate a hung transition
                # A ping already past tick() may still land; let it, then expect silence.
                threading.Event().wait(1.0)
                notify.drain()
                threading.Event().wait(1.5)       # 30 watchdog intervals
                stalled = notify.drain()
            assert "WATCHDOG=1" not in stalled
            notify.wait_for("WATCHDOG=1", timeout=30)     # pings resume once the core is free
        finally:
            loop.stop()
            loop.join(timeout=10)
            daemon.stop(controller, "test")


MDWE_WRAPPER = r'''
import ctypes, mmap, runpy, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:          # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    print("MDWE-UNSUPPORTED", ctypes.get_errno()); sys.exit(3)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("WX-ALLOWED"); sys.exit(4)
except OSError:
    pass
from controller.camera import SimulatedCamera
assert SimulatedCamera(160, 120).capture_jpeg().startswith(b"\xff\xd8")
sys.argv = ["entry-buzzer"] + sys.argv[1:]
runpy.run_module("entry_buzzer", run_name="__main__")
'''


@pytest.mark.process
def test_daemon_runs_without_writable_executable_memory(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes is safe for this daemon: the same rule, applied with the
    kernel's PR_SET_MDWE, leaves the simulated campus working through a ring and an approval."""
    state = tmp_path / "state"
    proc = subprocess.run(
        [sys.executable, "-c", MDWE_WRAPPER, "simulate", "--no-web", "--no-mqtt", "--console",
         "--state-dir", str(state)],
        cwd=REPO, input="press\napprove\nquit\n", capture_output=True, text=True, timeout=120)
    if proc.returncode == 3:
        pytest.skip(f"kernel without PR_SET_MDWE: {proc.stdout.strip()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with sqlite3.connect(f"file:{state / daemon.JOURNAL_FILE}?mode=ro", uri=True) as db:
        types = [row[0] for row in db.execute("SELECT type FROM events ORDER BY seq")]
    db.close()
    assert ev.BUZZER_PRESSED in types and ev.DOOR_UNLOCKED in types
