"""``entry-buzzer selftest``: check a door installation from the door, step by step.

For the installer standing at the door with the controller stopped: it reports
the GPIO pin factory in use, reads the door contact and tamper loop, waits for a
buzzer press, blinks each LED, pulses the strike once (only after the installer
types 'yes'), and times a camera capture. It ends with a pass/fail summary.

Why the strike pulse is journaled: the safety rule is that every unlock is an
audited staff action. The pulse is recorded in the door's journal (``door_unlocked``
reason ``selftest``) before the strike is energized, and refused if the journal
cannot be written; ``door_locked`` follows. Nothing else here can energize it.
"""

from __future__ import annotations

import getpass
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import events as ev
from .camera import Camera, build_camera
from .config import Settings
from .gpio import DoorHardware, factory_name

PASS, FAIL, SKIP, INFO = "PASS", "FAIL", "SKIP", "INFO"
LED_NAMES = ("ringing", "approved", "denied")


@dataclass(frozen=True)
class Result:
    name: str
    status: str        # PASS | FAIL | SKIP | INFO
    detail: str


class SelfTest:
    """One selftest run. ``ask`` reads an answer (input()), ``say`` prints a line.

    ``pause`` is how long the test waits between LED blinks and holds the strike
    pulse; tests pass a small value.
    """

    def __init__(self, settings: Settings, pin_factory: Any = None, camera: Camera | None = None,
                 ask: Callable[[str], str] = input, say: Callable[[str], None] = print,
                 buzzer_wait: float = 20.0, strike: bool = True, actor: str | None = None,
                 blink_seconds: float = 0.4):
        self.settings = settings
        self.pin_factory = pin_factory
        self.camera = camera
        self.ask = ask
        self.say = say
        self.buzzer_wait = buzzer_wait
        self.strike = strike
        self.actor = actor or _installer_name()
        self.blink_seconds = blink_seconds
        self.results: list[Result] = []
        self.strike_energized = False          # for tests and the summary: did we ever pulse?

    # ------------------------------------------------------------- steps
    def run(self) -> list[Result]:
        s = self.settings
        self.say(f"entry-buzzer selftest: {s.site.campus}/{s.site.door} ({s.site.door_name})")
        self.say("The controller service must be stopped: sudo systemctl stop entry-buzzer")
        try:
            hardware = DoorHardware(s.gpio, pin_factory=self.pin_factory)   # strike driven locked here
        except Exception as exc:
            self._record("gpio", FAIL, f"cannot open the GPIO pins ({exc}); is the controller still "
                                       "running, and is this user in the 'gpio' group?")
            self._record("camera", *self._camera_check())
            return self.results
        try:
            self._record("gpio factory", INFO, factory_name(self.pin_factory))
            self._inputs(hardware)
            self._record("buzzer", *self._buzzer(hardware))
            self._leds(hardware)
            self._record("strike", *self._strike(hardware))
        finally:
            hardware.close()            # drives the strike locked again
        self._record("camera", *self._camera_check())
        return self.results

    def _inputs(self, hw: DoorHardware) -> None:
        if hw.door_contact is None:
            self._record("door contact", SKIP, "no gpio.door_contact_pin configured")
        else:
            self._record("door contact", INFO, "reads OPEN (or the wire is cut)" if hw.door_is_open
                         else "reads closed")
        if hw.tamper is None:
            self._record("tamper", SKIP, "no gpio.tamper_pin configured")
        else:
            self._record("tamper", INFO, "reads OPEN/TAMPERED (or the wire is cut)" if hw.tamper_active
                         else "reads enclosure closed")

    def _buzzer(self, hw: DoorHardware) -> tuple[str, str]:
        self.say(f"Press the buzzer button now (waiting up to {self.buzzer_wait:g} s) ...")
        started = time.monotonic()
        if hw.buzzer.wait_for_active(timeout=self.buzzer_wait):
            return PASS, f"press read on GPIO {self.settings.gpio.buzzer_pin} after " \
                         f"{time.monotonic() - started:.1f} s"
        return FAIL, f"no press on GPIO {self.settings.gpio.buzzer_pin} within {self.buzzer_wait:g} s; " \
                     "check the button wiring (button to ground)"

    def _leds(self, hw: DoorHardware) -> None:
        for name in LED_NAMES:
            led = hw.leds.led(name)
            pin = getattr(self.settings.gpio, f"led_{name}_pin")
            if led is None:
                self._record(f"led {name}", SKIP, f"no gpio.led_{name}_pin configured")
                continue
            self.say(f"Blinking the {name} LED (GPIO {pin}) three times: watch it")
            for _ in range(3):
                led.on()
                threading.Event().wait(self.blink_seconds)
                led.off()
                threading.Event().wait(self.blink_seconds)
            self._record(f"led {name}", PASS, f"GPIO {pin} blinked 3 times (confirm you saw it)")

    def _strike(self, hw: DoorHardware) -> tuple[str, str]:
        pin, seconds = self.settings.gpio.strike_pin, self.settings.door.unlock_seconds
        if not self.strike:
            return SKIP, "skipped (--no-strike)"
        try:
            answer = self.ask(f"Pulse the door strike (GPIO {pin}) once for {seconds:g} s? "
                              "The door will UNLOCK. Type 'yes' to pulse: ")
        except EOFError:
            answer = ""
        if answer.strip().lower() != "yes":
            return SKIP, "not confirmed; the strike was not energized"
        try:
            journal = self._journal()
        except Exception as exc:
            return FAIL, f"refused: the pulse cannot be journaled ({exc}); run as the service user " \
                         "(sudo -u entry-buzzer ...)"
        try:
            try:
                journal.append(ev.DOOR_UNLOCKED, actor=self.actor, reason="selftest", seconds=seconds)
            except Exception as exc:
                return FAIL, f"refused: the pulse cannot be journaled ({exc})"
            try:
                self.strike_energized = True
                hw.strike.unlock()
                threading.Event().wait(seconds)
            finally:
                hw.strike.lock()
                try:
                    journal.append(ev.DOOR_LOCKED, actor=self.actor, reason="selftest")
                except Exception:
                    pass   # the strike is locked; the missing relock event is visible in the journal
        finally:
            journal.close()
        return PASS, f"pulsed GPIO {pin} for {seconds:g} s and relocked (confirm the door released)"

    def _journal(self) -> Any:
        from .daemon import JOURNAL_FILE
        from .journal import Journal
        state = Path(self.settings.storage.state_dir)
        if not state.is_dir():
            raise FileNotFoundError(f"state directory {state} does not exist")
        return Journal(state / JOURNAL_FILE, self.settings.site.campus, self.settings.site.door)

    def _camera_check(self) -> tuple[str, str]:
        c = self.settings.camera
        camera = self.camera or build_camera(c.kind, c.width, c.height, c.jpeg_quality, self.settings.site.door_name)
        try:
            started = time.monotonic()
            camera.start()
            warm = time.monotonic()
            data = camera.capture_jpeg()
            done = time.monotonic()
        except Exception as exc:
            return FAIL, f"{camera.name}: {exc}"
        finally:
            try:
                camera.close()
            except Exception:
                pass
        return PASS, (f"{camera.name}: capture {1000 * (done - warm):.0f} ms "
                      f"(start {1000 * (warm - started):.0f} ms), {len(data)} bytes JPEG")

    def _record(self, name: str, status: str, detail: str) -> None:
        result = Result(name, status, detail)
        self.results.append(result)
        self.say(f"  {status:<4}  {name:<14} {detail}")

    # ------------------------------------------------------------- summary
    @property
    def passed(self) -> bool:
        return not any(r.status == FAIL for r in self.results)

    def summary(self) -> str:
        counts = {k: sum(r.status == k for r in self.results) for k in (PASS, FAIL, SKIP)}
        lines = ["", "selftest summary:"]
        lines += [f"  {r.status:<4}  {r.name:<14} {r.detail}" for r in self.results]
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(f"RESULT: {verdict} ({counts[PASS]} passed, {counts[FAIL]} failed, "
                     f"{counts[SKIP]} skipped)")
        return "\n".join(lines)


def _installer_name() -> str:
    name = os.environ.get("SUDO_USER") or ""
    try:
        name = name or getpass.getuser()
    except Exception:
        name = name or "installer"
    return f"selftest:{name}"
