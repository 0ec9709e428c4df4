"""``entry-buzzer relock``: drive the strike locked, depending on nothing but the pin.

Why a module of its own: systemd runs this after every stop of the controller and at
boot (ExecStopPost=, entry-buzzer-relock.service). It is the backstop for the very
cases where something else is broken: a half-upgraded install, a missing library, a
typo in the config. So it imports only the standard library, gpiozero and the
(stdlib-only) config module: no Flask, no paho, no web panel, no daemon.

Which pin: the ``[gpio]`` section of the config, validated as strictly as ever; other
sections are not looked at. When the file does not parse (a typo anywhere), the ``[gpio]``
table alone is parsed and used if it is valid on its own. When even that fails (unreadable,
hostile, [gpio] invalid), it falls back to the last-known-good strike settings that the
daemon writes at every successful start (``strike.last-good.json`` in the state directory).
Either way it says so on stderr, still drives the pin, and exits 2 so the broken config
stays visible (2 also when there is no copy: then
nothing is driven, and stderr says so).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from . import config as cfg

LAST_GOOD_FILE = "strike.last-good.json"
DEFAULT_STATE_DIR = Path("/var/lib/entry-buzzer")


def save_last_good(gpio: cfg.GpioSettings, state_dir: Path, source: str = "") -> Path:
    """Atomically record the strike settings a successful start used (write, fsync, rename, fsync dir)."""
    state_dir = Path(state_dir)
    path = state_dir / LAST_GOOD_FILE
    tmp = path.with_suffix(".tmp")
    data = {"strike_pin": gpio.strike_pin, "strike_active_high": gpio.strike_active_high,
            "config": source}
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (json.dumps(data, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(state_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def _state_dirs(config_state_dir: Path | None) -> list[Path]:
    """Where a last-known-good copy may be: systemd's $STATE_DIRECTORY, the config's, the default."""
    dirs: list[Path] = []
    for candidate in (os.environ.get("STATE_DIRECTORY", "").split(":")[0] or None, config_state_dir,
                      DEFAULT_STATE_DIR):
        if candidate and Path(candidate) not in dirs:
            dirs.append(Path(candidate))
    return dirs


def load_last_good(dirs: list[Path]) -> tuple[cfg.GpioSettings, Path] | None:
    """The first valid last-known-good copy, or None. Its pin is checked like the config's."""
    for directory in dirs:
        path = directory / LAST_GOOD_FILE
        try:
            with open(path, "rb") as fh:
                data = json.loads(fh.read(4096))
            gpio = cfg.from_dict({"gpio": {"strike_pin": data["strike_pin"],
                                           "strike_active_high": data["strike_active_high"]}}).gpio
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return gpio, path
    return None


def _config_state_dir(path: str) -> Path | None:
    """The config's storage.state_dir when the file parses that far (else None)."""
    try:
        return cfg.load_sections(path, ("storage",)).storage.state_dir
    except cfg.ConfigError:
        return None


def gpio_section_alone(path: str) -> cfg.GpioSettings | None:
    """The file's own [gpio] table, parsed and validated on its own, when the whole file does
    not parse (a typo in [web] must not hide the strike pin). None when it cannot be trusted:
    no [gpio] header, gpio keys set elsewhere (dotted keys, sub-tables), or invalid itself."""
    try:
        text = cfg.read_text(path)
    except cfg.ConfigError:
        return None
    block: list[str] = []
    inside = found = False
    for line in text.splitlines():
        head = line.split("#", 1)[0].strip()
        if head.startswith("["):
            inside = head == "[gpio]"
            found = found or inside
            continue
        if inside:
            block.append(line)
    if not found or re.search(r"^\s*(\[\s*gpio\s*\.|gpio\s*\.)", text, re.M):
        return None
    try:
        return cfg.from_dict({"gpio": tomllib.loads("\n".join(block))}).gpio
    except (tomllib.TOMLDecodeError, cfg.ConfigError, RecursionError):
        return None


def drive_locked(pin: int, pin_factory: Any = None) -> bool:
    """Drive the strike output low (de-energized, locked); return the level read back (False = low)."""
    from gpiozero import DigitalOutputDevice  # the one hardware import, only when driving

    device = DigitalOutputDevice(pin, active_high=True, initial_value=False, pin_factory=pin_factory)
    try:
        device.off()
        return bool(device.pin.state)
    finally:
        device.close()


def main(config_path: str, pin_factory: Any = None) -> int:
    """Relock; returns the exit code: 0 locked, 2 config unusable (pin driven from the
    last-known-good copy when there is one), 1 the pin could not be driven."""
    code = 0
    try:
        gpio = cfg.load_sections(config_path, ("gpio",)).gpio
        origin = f"[gpio] of {config_path}"
    except cfg.ConfigError as exc:
        for line in exc.errors:
            print(f"error: {line}", file=sys.stderr)
        code = 2
        section = gpio_section_alone(config_path)
        fallback = None if section else load_last_good(_state_dirs(_config_state_dir(config_path)))
        if section is not None:
            gpio = section
            origin = f"[gpio] of {config_path} (the rest of the file is broken)"
            print(f"warning: the config does not load, but its [gpio] section does: using it "
                  f"(GPIO {gpio.strike_pin})", file=sys.stderr)
        elif fallback is not None:
            gpio, saved = fallback
            origin = f"last-known-good {saved}"
            print(f"warning: config unusable; using the last-known-good strike settings from {saved} "
                  f"(GPIO {gpio.strike_pin})", file=sys.stderr)
        else:
            print("error: no last-known-good strike settings either "
                  f"({LAST_GOOD_FILE} in {', '.join(map(str, _state_dirs(None)))}); strike NOT driven",
                  file=sys.stderr)
            return 2
    try:
        level_high = drive_locked(gpio.strike_pin, pin_factory)
    except Exception as exc:  # a failing backstop must be loud, never a traceback
        print(f"error: relock of GPIO {gpio.strike_pin} failed: {exc}", file=sys.stderr)
        return 1
    if level_high:
        print(f"error: GPIO {gpio.strike_pin} still reads high after driving it locked", file=sys.stderr)
        return 1
    print(f"strike on GPIO {gpio.strike_pin} driven locked (reads low; settings from {origin})")
    return code
