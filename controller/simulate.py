"""The simulated campus: the real daemon on gpiozero's MockFactory and the simulated camera.

Presses drive the mock buzzer pin, so the real GPIO path (edge -> adapter ->
core -> journal) runs, exactly as on a Pi. A small console lets a person
press, approve, deny, open and close the door and watch the journal.
"""

from __future__ import annotations

import shlex
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from collections import deque

from gpiozero.pins.mock import MockFactory, MockPin

from . import config as cfg
from .daemon import Controller, run

SIM_GPIO = {"buzzer_pin": 27, "strike_pin": 17, "door_contact_pin": 22, "tamper_pin": 24, "exit_request_pin": 23,
            "led_ringing_pin": 19, "led_approved_pin": 26, "led_denied_pin": 13}


class SimulatedPin(MockPin):
    """gpiozero's MockPin keeps every state change in ``states`` forever (right for tests); a
    simulated campus runs for days, so it keeps only the recent ones (the /sim page and the
    benchmarks' memory figures must not measure the simulator's own history)."""

    HISTORY = 256

    def clear_states(self) -> None:
        super().clear_states()
        self.states = deque(self.states, maxlen=self.HISTORY)   # type: ignore[assignment]


def simulated_settings(base: cfg.Settings, state_dir: Path, web_port: int = 8080, mqtt: bool = False,
                       mqtt_port: int = 1883, web: bool = True) -> cfg.Settings:
    return cfg.with_overrides(
        base,
        gpio=SIM_GPIO,
        camera={"kind": "simulated", "width": 640, "height": 480},
        storage={"state_dir": Path(state_dir)},
        mqtt={"enabled": mqtt, "host": "127.0.0.1", "port": mqtt_port} if mqtt else {"enabled": False},
        web={"enabled": web, "host": "127.0.0.1", "port": web_port, "listen": "tcp"},  # no nginx here
    )


class SimulatedStation:
    """The outdoor station of the simulated campus, driving the mock pins like a person would."""

    def __init__(self, factory: MockFactory, gpio: cfg.GpioSettings):
        self.factory, self.gpio = factory, gpio

    def settle(self) -> None:
        """Close the door and the enclosure (pulled-up inputs idle high) before the daemon reads them."""
        for pin in (self.gpio.door_contact_pin, self.gpio.tamper_pin):
            if pin is not None:
                self.factory.pin(pin).drive_low()

    def press(self) -> None:
        pin = self.factory.pin(self.gpio.buzzer_pin)
        pin.drive_low()
        pin.drive_high()

    def set_door(self, is_open: bool) -> None:
        if self.gpio.door_contact_pin is None:
            return
        pin = self.factory.pin(self.gpio.door_contact_pin)
        pin.drive_high() if is_open else pin.drive_low()

    def request_exit(self) -> None:
        """Someone inside walks up to the door (request-to-exit sensor)."""
        if self.gpio.exit_request_pin is not None:
            pin = self.factory.pin(self.gpio.exit_request_pin)
            pin.drive_low()
            pin.drive_high()

    def set_tamper(self, active: bool) -> None:
        if self.gpio.tamper_pin is not None:
            pin = self.factory.pin(self.gpio.tamper_pin)
            pin.drive_high() if active else pin.drive_low()

    @property
    def strike_on(self) -> bool:
        return bool(self.factory.pin(self.gpio.strike_pin).state)

    def leds(self) -> dict[str, bool]:
        out = {}
        for name in ("ringing", "approved", "denied"):
            pin = getattr(self.gpio, f"led_{name}_pin")
            if pin is not None:
                out[name] = bool(self.factory.pin(pin).state)
        return out


HELP = """commands:
  press                     press the buzzer (drives the mock GPIO pin)
  approve [ID] [NAME]       approve the pending ring (default: the current one)
  deny [ID] [NAME]          deny the pending ring
  unlock [NAME]             staff 'unlock now'
  lockdown start|end        start or end a lockdown
  open | close              open or close the door (door contact)
  exit                      someone inside walks up to leave (request-to-exit sensor)
  camera hang|fail|ok       the next capture never returns | fails | the camera works again
  status                    door, ring, strike and LED state
  events [N]                the last N journal events (default 10)
  quit                      stop the simulated campus"""


def console(controller: Controller, station: SimulatedStation, stop: threading.Event,
            stream: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
    print(HELP, file=out, flush=True)
    for line in stream:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            print(f"? {exc}", file=out, flush=True)
            continue
        if not words:
            continue
        verb, rest = words[0].lower(), words[1:]
        pending = (controller.core.status()["ring"] or {}).get("request_id")
        result: Any = None
        if verb in ("quit", "exit"):
            break
        elif verb == "press":
            station.press()
            result = "pressed"
        elif verb in ("approve", "deny"):
            rid = rest[0] if rest else pending
            name = rest[1] if len(rest) > 1 else "Console Staff"
            result = getattr(controller, verb)(rid, name)
        elif verb == "unlock":
            result = controller.unlock_now(rest[0] if rest else "Console Staff", "console")
        elif verb == "lockdown" and rest and rest[0] in ("start", "end"):
            fn = controller.start_lockdown if rest[0] == "start" else controller.end_lockdown
            result = fn("Console Staff", "console", "panel")
        elif verb == "exit":
            station.request_exit()
            result = "exit requested"
        elif verb in ("open", "close"):
            station.set_door(verb == "open")
            result = f"door {verb}"
        elif verb == "camera" and rest and rest[0] in ("hang", "fail", "ok"):
            camera = controller.snapshots.camera
            camera.delay_seconds = 10 ** 9 if rest[0] == "hang" else 0.0
            camera.fail_next = "simulated camera failure" if rest[0] == "fail" else None
            result = f"camera {rest[0]}"
        elif verb == "status":
            result = {**controller.status(), "strike_pin": station.strike_on, "leds": station.leds()}
        elif verb == "events":
            n = int(rest[0]) if rest and rest[0].isdigit() else 10
            for event in reversed(controller.journal.query(limit=n)):
                print(event.to_json(), file=out)
            result = ""
        else:
            result = "unknown command; type 'help'" if verb != "help" else HELP
        print(result, file=out, flush=True)
    stop.set()


def run_simulation(settings: cfg.Settings, console_enabled: bool = False, duration: float | None = None,
                   **kwargs: Any) -> int:
    factory = MockFactory(pin_class=SimulatedPin)
    station = SimulatedStation(factory, settings.gpio)
    stop = threading.Event()

    def ready(controller: Controller) -> None:
        controller.station = station    # the /sim page drives it
        print(f"simulated campus ready: {settings.site.campus}/{settings.site.door}", flush=True)
        print(f"state dir: {settings.storage.state_dir}", flush=True)
        if settings.web.enabled:
            from web.cli import ensure_sim_admin
            print(f"panel sign-in: admin / {ensure_sim_admin(settings)}  (generated for this run)", flush=True)
            print(f"panel: http://{settings.web.host}:{settings.web.port}/  "
                  f"visitor station: http://{settings.web.host}:{settings.web.port}/sim", flush=True)
        if settings.mqtt.enabled:
            print(f"mqtt: mosquitto_sub -h {settings.mqtt.host} -p {settings.mqtt.port} -v -t "
                  f"'{settings.mqtt.prefix}/#'", flush=True)
        if duration:
            threading.Timer(duration, stop.set).start()
        if console_enabled:
            threading.Thread(target=console, args=(controller, station, stop), daemon=True).start()

    return run(settings, pin_factory=factory, simulated=True, on_ready=ready,
               on_built=lambda _c: station.settle(), stop_event=stop, **kwargs)
