"""`entry-buzzer relock` depends on nothing but the pin (issue 9, finding 6).

Relock runs as a real process (the installed console script) with Flask, paho, the
panel and the daemon made unimportable, on gpiozero's MockFactory. The strike pin is
driven HIGH by the harness before relock starts, so "driven locked" is observed, not
assumed: the harness prints the pin's final level and its history at exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller import config as cfg
from controller.relock import LAST_GOOD_FILE, save_last_good

ROOT = Path(__file__).parents[1]
ENTRY_BUZZER = Path(sys.executable).parent / "entry-buzzer"
pytestmark = pytest.mark.process

BLOCKED = ("flask", "werkzeug", "paho", "cheroot", "PIL", "web", "sqlite3", "controller.core",
           "controller.daemon", "controller.simulate", "controller.mqtt", "controller.camera", "controller.snapshots",
           "controller.gpio", "controller.journal", "controller.selftest")

HARNESS = '''
import atexit, importlib.abc, os, sys
BLOCK = tuple(os.environ["EB_BLOCK"].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCK):
            raise ImportError(f"{name} is unimportable in this test")
        return None
sys.meta_path.insert(0, Block())
if os.environ.get("EB_STRIKE_HIGH"):
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory
    Device.pin_factory = MockFactory()
    pin = Device.pin_factory.pin(int(os.environ["EB_STRIKE_HIGH"]))
    pin.drive_high()
    def report():
        print("MOCKPIN", int(pin.state), "".join(str(int(s.state)) for s in pin.states), flush=True)
    atexit.register(report)
'''


@pytest.fixture
def harness(tmp_path: Path) -> Path:
    d = tmp_path / "harness"
    d.mkdir()
    (d / "sitecustomize.py").write_text(HARNESS)
    return d


def relock(harness: Path, config: Path, state_dir: Path | None, pin: int) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(harness), EB_BLOCK=",".join(BLOCKED), EB_STRIKE_HIGH=str(pin),
               GPIOZERO_PIN_FACTORY="mock")
    env.pop("STATE_DIRECTORY", None)
    if state_dir is not None:
        env["STATE_DIRECTORY"] = str(state_dir)     # what systemd's StateDirectory= sets
    return subprocess.run([str(ENTRY_BUZZER), "relock", "--config", str(config)], env=env, cwd="/",
                          capture_output=True, text=True, timeout=60)


def assert_driven_locked(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    report = [line for line in proc.stdout.splitlines() if line.startswith("MOCKPIN")]
    # high before relock, low after: "10" at least (initial low, driven high by the harness, then locked)
    assert report and report[-1].split()[1] == "0" and report[-1].split()[2].endswith("10"), proc.stdout


def test_the_harness_really_blocks_flask_and_paho(harness: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(harness), EB_BLOCK=",".join(BLOCKED))
    proc = subprocess.run([sys.executable, "-c", "import flask"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "unimportable in this test" in proc.stderr


def test_relock_with_flask_and_paho_unimportable(harness: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[gpio]\nstrike_pin = 22\n")
    proc = relock(harness, config, None, 22)
    assert proc.returncode == 0, proc.stderr
    assert "strike on GPIO 22 driven locked" in proc.stdout
    assert_driven_locked(proc)


def test_relock_with_broken_web_section_uses_gpio(harness: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[gpio]\nstrike_pin = 22\n\n[web]\nport = "eighty"\nbogus = 1\n'
                      'secret_key_file = "/nonexistent"\n')
    proc = relock(harness, config, None, 22)
    assert proc.returncode == 0, proc.stderr
    assert "GPIO 22 driven locked" in proc.stdout
    assert_driven_locked(proc)


def test_relock_with_toml_syntax_error_falls_back_to_last_good(harness: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    save_last_good(cfg.GpioSettings(strike_pin=22), state, "test")
    config = tmp_path / "config.toml"
    config.write_text("[gpio]\nstrike_pin = = 22\n[web]\nport = 1\n")
    proc = relock(harness, config, state, 22)
    assert proc.returncode == 2                        # the broken config stays visible...
    assert "not valid TOML" in proc.stderr
    assert f"last-known-good strike settings from {state / LAST_GOOD_FILE}" in proc.stderr
    assert "GPIO 22 driven locked" in proc.stdout      # ...but the pin is driven locked
    assert_driven_locked(proc)


def test_relock_with_toml_error_elsewhere_uses_the_gpio_section(harness: Path, tmp_path: Path) -> None:
    """A typo in [web] makes the file unparseable; its [gpio] table still names the pin
    (no last-known-good copy here: the first boot after an install with a typo)."""
    config = tmp_path / "config.toml"
    config.write_text("[site]\ncampus = \"x\"\n\n[gpio]  # the door\nstrike_pin = 22\n\n"
                      "[web]\nport = 80 80\nhost = \"unterminated\n")
    proc = relock(harness, config, tmp_path / "empty-state", 22)
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr
    assert "its [gpio] section does" in proc.stderr and "GPIO 22 driven locked" in proc.stdout
    assert_driven_locked(proc)


def test_relock_does_not_trust_a_gpio_section_with_keys_elsewhere(harness: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    save_last_good(cfg.GpioSettings(strike_pin=22), state, "test")
    config = tmp_path / "config.toml"
    config.write_text("gpio.strike_pin = 22\n[gpio]\nbuzzer_pin = 27\n[web\n")
    proc = relock(harness, config, state, 22)
    assert proc.returncode == 2 and "last-known-good" in proc.stderr
    assert_driven_locked(proc)


@pytest.mark.parametrize("text", [
    "x = " + "[" * 5000 + "]" * 5000,
    "x = " + "{a=" * 5000 + "1" + "}" * 5000,
    "[gpio]\nstrike_pin = " + "[" * 900 + "]" * 900,
    "[gpio]\nstrike_pin = 3\n",                        # [gpio] itself invalid
], ids=["nested-arrays", "nested-tables", "nested-in-gpio", "unsafe-pin"])
def test_relock_with_hostile_config_falls_back_without_traceback(harness, tmp_path, text) -> None:
    state = tmp_path / "state"
    state.mkdir()
    save_last_good(cfg.GpioSettings(strike_pin=22), state, "test")
    config = tmp_path / "config.toml"
    config.write_text(text)
    proc = relock(harness, config, state, 22)
    assert proc.returncode == 2 and len([ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]) == 1
    assert_driven_locked(proc)


def test_relock_without_config_or_last_good_says_so(harness: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[gpio\n")
    proc = relock(harness, config, tmp_path / "empty-state", 17)
    assert proc.returncode == 2
    assert "strike NOT driven" in proc.stderr and "Traceback" not in proc.stderr


def test_daemon_start_writes_last_good_that_relock_uses(harness: Path, tmp_path: Path) -> None:
    """End to end: the daemon starts (it records its strike pin), then the config breaks."""
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text("[door]\nunlock_seconds = 3\n")
    run = subprocess.run([sys.executable, "-m", "entry_buzzer", "simulate", "--no-web", "--no-mqtt",
                          "--state-dir", str(state), "--config", str(config), "--duration", "0.5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stdout + run.stderr
    saved = json.loads((state / LAST_GOOD_FILE).read_text())
    assert saved["strike_pin"] == 17 and (state / LAST_GOOD_FILE).stat().st_mode & 0o077 == 0
    config.write_text("[door]\nunlock_seconds = = 3\n")
    proc = relock(harness, config, state, 17)
    assert proc.returncode == 2 and "GPIO 17 driven locked" in proc.stdout
    assert_driven_locked(proc)
