"""The simulated campus's parts: mock pins that keep a bounded history, the simulated
settings, and the outdoor station that drives the mock pins like a person would.

Presses drive the mock buzzer pin, so the real GPIO path (edge -> adapter -> core -> journal)
runs, exactly as on a Pi. entry_buzzer/simulation.py runs the campus (daemon, panel, console).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin

from . import config as cfg

SIM_GPIO = {"buzzer_pin": 27, "strike_pin": 17, "door_contact_pin": 22, "tamper_pin": 24, "exit_request_pin": 23,
            "led_ringing_pin": 19, "led_approved_pin": 26, "led_denied_pin": 13, "panic_pin": 6}


class SimulatedPin(MockPin):
    """gpiozero's MockPin keeps every state change in ``states`` forever (right for tests); a
    simulated campus runs for days, so it keeps only the recent ones (the /sim page and the
    benchmarks' memory figures must not measure the simulator's own history)."""

    HISTORY = 256

    def clear_states(self) -> None:
        super().clear_states()
        self.states: deque[Any] = deque(self.states, maxlen=self.HISTORY)


def simulated_settings(base: cfg.Settings, state_dir: Path, web_port: int = 8080, mqtt: bool = False,
                       mqtt_port: int = 1883, web: bool = True) -> cfg.Settings:
    return cfg.with_overrides(
        base,
        gpio=SIM_GPIO,
        camera={"kind": "simulated", "width": 640, "height": 480},
        storage={"state_dir": Path(state_dir)},
        mqtt={"enabled": mqtt, "host": "127.0.0.1", "port": mqtt_port} if mqtt else {"enabled": False},
        web={"enabled": web, "host": "127.0.0.1", "port": web_port, "listen": "tcp"},  # no nginx here
        intercom={"audio_in": "synthetic", "audio_out": "meter"},   # a synthetic visitor; a metered speaker
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

    def press_panic(self) -> None:
        """The desk panic (duress) button under the office desk."""
        if self.gpio.panic_pin is not None:
            pin = self.factory.pin(self.gpio.panic_pin)
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
