"""`entry-buzzer selftest` on gpiozero's MockFactory and the simulated camera."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from controller import config as cfg
from controller import events as ev
from controller.daemon import JOURNAL_FILE
from controller.journal import Journal
from controller.selftest import FAIL, PASS, SKIP, SelfTest
from tests.support_deploy import REPO


@pytest.fixture
def door(settings: cfg.Settings) -> cfg.Settings:
    settings.storage.state_dir.mkdir(parents=True, exist_ok=True)
    return cfg.with_overrides(settings, door={"unlock_seconds": 0.5})


def _press_on_prompt(factory: MockFactory, settings: cfg.Settings, lines: list[str]):
    """A 'say' that records output and presses (holds) the buzzer when asked to."""
    def say(line: str) -> None:
        lines.append(line)
        if line.startswith("Press the buzzer"):
            factory.pin(settings.gpio.buzzer_pin).drive_low()
    return say


def _strike_states(factory: MockFactory, settings: cfg.Settings) -> list[bool]:
    return [s.state for s in factory.pin(settings.gpio.strike_pin).states]


def _journal_types(settings: cfg.Settings) -> list[str]:
    path = settings.storage.state_dir / JOURNAL_FILE
    if not path.exists():
        return []
    journal = Journal(path, settings.site.campus, settings.site.door)
    try:
        return [e.type for e in reversed(journal.query(limit=100))]
    finally:
        journal.close()


def test_full_pass_with_confirmed_strike_pulse(door, pin_factory: MockFactory) -> None:
    lines: list[str] = []
    asked: list[str] = []
    test = SelfTest(door, pin_factory=pin_factory, say=_press_on_prompt(pin_factory, door, lines),
                    ask=lambda q: asked.append(q) or "yes", buzzer_wait=10, blink_seconds=0.01,
                    actor="selftest:tech")
    results = {r.name: r for r in test.run()}
    assert test.passed, test.summary()
    assert results["gpio factory"].detail == "MockFactory"
    assert results["buzzer"].status == PASS
    assert results["strike"].status == PASS
    assert results["camera"].status == PASS and "ms" in results["camera"].detail
    assert results["door contact"].detail and results["tamper"].detail
    for name in ("ringing", "approved", "denied"):
        assert results[f"led {name}"].status == PASS
        pin = getattr(door.gpio, f"led_{name}_pin")
        assert [s.state for s in pin_factory.pin(pin).states].count(True) == 3
    # exactly one pulse, and it ends locked
    states = _strike_states(pin_factory, door)
    assert states.count(True) == 1 and states[-1] is False
    assert len(asked) == 1 and "Type 'yes'" in asked[0]
    # the pulse is audited in the door's journal, unlock before lock
    types = _journal_types(door)
    assert types.index(ev.DOOR_UNLOCKED) < types.index(ev.DOOR_LOCKED)
    assert "RESULT: PASS" in test.summary()


@pytest.mark.parametrize("answer", ["no", "", "y", "YES please", EOFError])
def test_refused_confirmation_never_energizes_the_strike(door, pin_factory: MockFactory, answer) -> None:
    def ask(_q: str) -> str:
        if answer is EOFError:
            raise EOFError
        return answer

    test = SelfTest(door, pin_factory=pin_factory, say=_press_on_prompt(pin_factory, door, []),
                    ask=ask, buzzer_wait=10, blink_seconds=0.01)
    results = {r.name: r for r in test.run()}
    assert results["strike"].status == SKIP
    assert True not in _strike_states(pin_factory, door)
    assert not test.strike_energized
    assert ev.DOOR_UNLOCKED not in _journal_types(door)


def test_no_strike_never_asks(door, pin_factory: MockFactory) -> None:
    def ask(_q: str) -> str:
        raise AssertionError("must not ask")

    test = SelfTest(door, pin_factory=pin_factory, say=_press_on_prompt(pin_factory, door, []),
                    ask=ask, strike=False, buzzer_wait=10, blink_seconds=0.01)
    results = {r.name: r for r in test.run()}
    assert results["strike"].status == SKIP and "--no-strike" in results["strike"].detail
    assert True not in _strike_states(pin_factory, door)


def test_pulse_refused_when_it_cannot_be_journaled(settings, pin_factory: MockFactory) -> None:
    """No state dir: the pulse cannot be audited, so it does not happen."""
    assert not settings.storage.state_dir.exists()
    test = SelfTest(settings, pin_factory=pin_factory, say=_press_on_prompt(pin_factory, settings, []),
                    ask=lambda _q: "yes", buzzer_wait=10, blink_seconds=0.01)
    results = {r.name: r for r in test.run()}
    assert results["strike"].status == FAIL and "refused" in results["strike"].detail
    assert True not in _strike_states(pin_factory, settings)
    assert not test.passed


def test_missing_press_fails(door, pin_factory: MockFactory) -> None:
    test = SelfTest(door, pin_factory=pin_factory, say=lambda _l: None, ask=lambda _q: "no",
                    buzzer_wait=0.2, blink_seconds=0.01)
    results = {r.name: r for r in test.run()}
    assert results["buzzer"].status == FAIL and "GPIO 27" in results["buzzer"].detail
    assert not test.passed and "RESULT: FAIL" in test.summary()


def test_camera_failure_is_reported(door, pin_factory: MockFactory) -> None:
    from controller.camera import SimulatedCamera
    camera = SimulatedCamera(160, 120)
    camera.fail_next = "sensor not detected"
    test = SelfTest(door, pin_factory=pin_factory, camera=camera,
                    say=_press_on_prompt(pin_factory, door, []), ask=lambda _q: "no",
                    buzzer_wait=10, blink_seconds=0.01)
    results = {r.name: r for r in test.run()}
    assert results["camera"].status == FAIL and "sensor not detected" in results["camera"].detail
    assert not test.passed


def test_gpio_busy_is_a_clear_failure(door, pin_factory: MockFactory) -> None:
    from gpiozero import DigitalOutputDevice
    held = DigitalOutputDevice(door.gpio.strike_pin, pin_factory=pin_factory)  # e.g. the running daemon
    try:
        test = SelfTest(door, pin_factory=pin_factory, say=lambda _l: None, ask=lambda _q: "yes")
        results = {r.name: r for r in test.run()}
    finally:
        held.close()
    assert results["gpio"].status == FAIL and "still running" in results["gpio"].detail
    assert "strike" not in results


def _write_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        "[gpio]\nbuzzer_pin = 27\nstrike_pin = 17\nled_ringing_pin = 19\n"
        "[door]\nunlock_seconds = 0.5\n"
        f"[storage]\nstate_dir = \"{tmp_path / 'state'}\"\n"
        "[camera]\nkind = \"simulated\"\nwidth = 160\nheight = 120\n"
        # the panel's secret is not readable here: selftest must not need it
        "[web]\nenabled = true\nsecret_key_file = \"credential:web-secret-key\"\n")
    return path


def test_cli_selftest_with_mock_pins(tmp_path: Path) -> None:
    config = _write_config(tmp_path)
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    env.pop("CREDENTIALS_DIRECTORY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "entry_buzzer", "selftest", "--config", str(config), "--buzzer-wait", "0.2"],
        cwd=REPO, env=env, input="no\n", capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert "gpio factory" in out and "MockFactory" in out, out + proc.stderr
    assert "not confirmed; the strike was not energized" in out
    assert "simulated: capture" in out
    assert "RESULT: FAIL" in out          # nobody pressed the buzzer
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr


def test_cli_selftest_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[gpio]\nstrike_pin = 4\n")
    proc = subprocess.run([sys.executable, "-m", "entry_buzzer", "selftest", "--config", str(config)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "gpio.strike_pin" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_relock_reads_only_gpio(tmp_path: Path) -> None:
    """ExecStopPost's relock must work where the panel's secrets are unreadable."""
    config = _write_config(tmp_path)
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    env.pop("CREDENTIALS_DIRECTORY", None)
    check = subprocess.run([sys.executable, "-m", "entry_buzzer", "check-config", str(config)],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 2        # the full config needs the credential...
    proc = subprocess.run([sys.executable, "-m", "entry_buzzer", "relock", "--config", str(config)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr    # ...the relock does not
    assert "GPIO 17 driven locked" in proc.stdout
