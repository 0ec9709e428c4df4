"""gpiozero adapter: buzzer, strike relay, door contact, tamper switch, visitor LEDs.

Hardware is reached only through a gpiozero pin factory: the one gpiozero
picks (``GPIOZERO_PIN_FACTORY``, lgpio on a Pi 5) or one passed explicitly
(MockFactory in tests and in the simulated campus).

Callbacks here never touch the strike: they forward edges to the entry core,
which owns door state. The strike output is created with
``initial_value=False`` so constructing it drives the door locked.

A software backstop timer forces the strike off UNLOCK_CAP + 1 s after any
unlock, in case the core's own loop ever hangs while the strike is on. It runs on a
long-lived thread of its own (``scheduler.Scheduler``), not a ``threading.Timer`` per unlock;
the ringing LED blinks from another long-lived thread instead of gpiozero's thread per blink.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from gpiozero import LED, DigitalInputDevice, DigitalOutputDevice

from .config import GpioSettings
from .scheduler import Scheduler, Timer
from .vocabulary import UNLOCK_CAP_SECONDS as UNLOCK_CAP

log = logging.getLogger(__name__)


class EdgeInput(DigitalInputDevice):
    """A gpiozero ``DigitalInputDevice`` whose edge callback runs first, then gpiozero's own
    bookkeeping.

    gpiozero's ``_fire_events`` updates two ``threading.Event``s (each a ``Condition``: lock,
    flag, notify) before it calls ``when_activated``. After seconds of idle that Python is cold:
    on the reference machine the mock pin's edge reached the callback in 85-110 us through the
    device against 45-50 us from the pin's own callback, all of it on the path from a buzzer
    press to its journal commit and MQTT publish (issue 11). Here the callback comes first and
    the same bookkeeping follows (``is_active``, ``wait_for_active``, ``active_time``), so
    anything waiting on the device wakes after the door has acted on the edge, not before.
    The first reading after start (no previous state) fires nothing, as in gpiozero."""

    def _fire_events(self, ticks: Any, new_active: bool) -> None:
        old_active: bool | None = self._last_active  # type: ignore[has-type]  # gpiozero's EventsMixin
        if old_active is None or old_active == new_active:
            super()._fire_events(ticks, new_active)
            return
        self._last_active, self._last_changed = new_active, ticks   # before: an edge within the callback sees it
        try:
            if new_active:
                self._fire_activated()
            else:
                self._fire_deactivated()
        finally:
            if self._last_active:            # the latest edge's state, if one came meanwhile
                self._inactive_event.clear()
                self._active_event.set()
            else:
                self._active_event.clear()
                self._inactive_event.set()


class StrikeRelay:
    """The door strike output. ``unlock()`` energizes, ``lock()`` de-energizes (fail-secure)."""

    def __init__(self, pin: int, pin_factory: Any = None, backstop_seconds: float = UNLOCK_CAP + 1):
        # Active-high only (config refuses otherwise); initial_value=False drives it locked now.
        self._device = DigitalOutputDevice(pin, active_high=True, initial_value=False,
                                           pin_factory=pin_factory)
        self._backstop_seconds = backstop_seconds
        self._timers = Scheduler("strike-backstop")    # this timer only: nothing can delay it
        self._timer: Timer | None = None
        self._lock = threading.Lock()

    @property
    def is_unlocked(self) -> bool:
        return bool(self._device.value)

    @property
    def pin(self) -> Any:
        return self._device.pin

    def unlock(self) -> None:
        with self._lock:
            self._cancel_backstop()
            self._timer = self._timers.call_later(self._backstop_seconds, self._backstop)
            self._device.on()

    def lock(self) -> None:
        with self._lock:
            self._cancel_backstop()
            if not self._device.closed:
                self._device.off()

    def _backstop(self) -> None:
        log.critical("strike backstop fired: the core did not relock within the cap; forcing locked")
        with self._lock:
            if not self._device.closed:
                self._device.off()

    def _cancel_backstop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Drive locked and release the pin. Safe to call twice."""
        self.lock()
        self._device.close()
        self._timers.close()


LOCKDOWN_BLINK = (0.15, 0.15)     # the denied LED flashing fast: entry refused, do not wait
RINGING_BLINK = (0.5, 0.5)


class VisitorLeds:
    """Outdoor indicator LEDs. Missing pins are simply not driven.

    During a lockdown (either level) the station shows its own pattern, never Ringing: the
    denied LED flashes fast (LOCKDOWN_BLINK) and the others stay dark, so a visitor sees at once
    that nobody will buzz them in, whether or not they press."""

    def __init__(self, ringing: int | None, approved: int | None, denied: int | None,
                 pin_factory: Any = None):
        self._leds = {name: LED(pin, pin_factory=pin_factory)
                      for name, pin in (("ringing", ringing), ("approved", approved), ("denied", denied))
                      if pin is not None}
        self.state = "idle"
        self._timers = Scheduler("led-blink")
        self._lock = threading.Lock()
        self._blinking: dict[str, list[Timer]] = {}

    def show(self, state: str) -> None:
        with self._lock:
            self.state = state
            for name, led in self._leds.items():
                if name == "ringing" and state == "ringing":
                    self._blink(name, led, RINGING_BLINK)
                elif name == "denied" and state == "lockdown":
                    self._blink(name, led, LOCKDOWN_BLINK)
                else:
                    self._stop_blink(name)
                    if name == state:
                        led.on()
                    else:
                        led.off()

    def _blink(self, name: str, led: LED, pattern: tuple[float, float]) -> None:
        """On now, then toggled on the blink thread until another state is shown (caller locks)."""
        if name in self._blinking:
            return                                  # already blinking this pattern
        led.on()
        chain: list[Timer] = []                     # this blink's pending toggle (its identity)
        self._blinking[name] = chain
        chain.append(self._timers.call_later(pattern[0], lambda: self._toggle(name, led, pattern, chain, False)))

    def _toggle(self, name: str, led: LED, pattern: tuple[float, float], chain: list[Timer], on: bool) -> None:
        with self._lock:
            if self._blinking.get(name) is not chain or led.closed:
                return                              # stopped (or replaced) meanwhile
            if on:
                led.on()
            else:
                led.off()
            chain[0] = self._timers.call_later(pattern[0] if on else pattern[1],
                                               lambda: self._toggle(name, led, pattern, chain, not on))

    def _stop_blink(self, name: str) -> None:
        chain = self._blinking.pop(name, None)
        if chain:
            chain[0].cancel()

    def led(self, name: str) -> LED | None:
        """The LED device for ``name`` (ringing/approved/denied), or None when not fitted."""
        return self._leds.get(name)

    def close(self) -> None:
        with self._lock:
            for name in list(self._blinking):
                self._stop_blink(name)
            self._timers.close()
            for led in self._leds.values():
                led.close()


class DoorHardware:
    """All door GPIO devices built from config. Safe to close twice; a context manager."""

    def __init__(self, settings: GpioSettings, pin_factory: Any = None):
        self.settings = settings
        self.pin_factory = pin_factory
        # Strike first: nothing else happens before the door is driven locked.
        self.strike = StrikeRelay(settings.strike_pin, pin_factory=pin_factory)
        try:
            # Plain inputs, not gpiozero's Button: a Button owns a hold thread that wakes every
            # 0.1 s for ever (three buttons: 30 wake-ups a second on an idle door, each taking
            # the GIL), for ``when_held``, which the door never uses.
            self.buzzer = EdgeInput(settings.buzzer_pin, pull_up=settings.buzzer_active_low,
                                    pin_factory=pin_factory)
            # Door contact and tamper loop are wired to ground with the internal pull on the
            # other side, so the device is *active* in the normal state (door closed, enclosure
            # shut) and a cut wire reads as open/tampered: the fail-safe direction for alarms.
            self.door_contact: DigitalInputDevice | None = None
            if settings.door_contact_pin is not None:
                self.door_contact = EdgeInput(
                    settings.door_contact_pin, pull_up=settings.door_open_level == "high",
                    pin_factory=pin_factory)
            self.tamper: DigitalInputDevice | None = None
            if settings.tamper_pin is not None:
                self.tamper = EdgeInput(
                    settings.tamper_pin, pull_up=settings.tamper_active_level == "high",
                    pin_factory=pin_factory)
            self.exit_request: DigitalInputDevice | None = None
            if settings.exit_request_pin is not None:
                self.exit_request = EdgeInput(settings.exit_request_pin, pull_up=True,
                                              pin_factory=pin_factory)
            self.panic: DigitalInputDevice | None = None
            if settings.panic_pin is not None:
                # a button under the desk to ground; debounced in controller/panic.py like the buzzer
                self.panic = EdgeInput(settings.panic_pin, pull_up=True, pin_factory=pin_factory)
            self.leds = VisitorLeds(settings.led_ringing_pin, settings.led_approved_pin,
                                    settings.led_denied_pin, pin_factory=pin_factory)
        except Exception:
            self.strike.close()
            raise
        self._closed = False

    def connect(self, on_press: Callable[[], Any], on_door: Callable[[bool], Any],
                on_tamper: Callable[[bool], Any], on_exit_request: Callable[[], Any] | None = None,
                on_panic: Callable[[], Any] | None = None) -> None:
        """Wire edges to core commands. Exceptions are logged, never raised into gpiozero."""
        self.buzzer.when_activated = _guard(on_press)
        if self.door_contact is not None:
            self.door_contact.when_deactivated = _guard(lambda: on_door(True))
            self.door_contact.when_activated = _guard(lambda: on_door(False))
        if self.exit_request is not None and on_exit_request is not None:
            self.exit_request.when_activated = _guard(on_exit_request)
        if self.panic is not None and on_panic is not None:
            self.panic.when_activated = _guard(on_panic)
        if self.tamper is not None:
            self.tamper.when_deactivated = _guard(lambda: on_tamper(True))
            self.tamper.when_activated = _guard(lambda: on_tamper(False))

    @property
    def door_is_open(self) -> bool | None:
        return None if self.door_contact is None else not self.door_contact.is_active

    @property
    def tamper_active(self) -> bool | None:
        return None if self.tamper is None else not self.tamper.is_active

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.strike.close()
        for device in (self.buzzer, self.door_contact, self.tamper, self.exit_request, self.panic):
            if device is not None:
                device.close()
        self.leds.close()

    def __enter__(self) -> "DoorHardware":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def factory_name(pin_factory: Any = None) -> str:
    """Which pin factory is in use (for selftest and the log)."""
    if pin_factory is not None:
        return type(pin_factory).__name__
    from gpiozero import Device
    return type(Device.pin_factory).__name__ if Device.pin_factory is not None else "default"


def uses_mock_pins(pin_factory: Any = None) -> bool:
    """True only for gpiozero's MockFactory (given, or the default one GPIOZERO_PIN_FACTORY=mock made).

    The visitor-station page (/sim) drives pins from a browser; it may exist only where no real
    pin does, so this is the one test for it: never true for lgpio or any other real factory.
    """
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory
    return isinstance(pin_factory if pin_factory is not None else Device.pin_factory, MockFactory)


def _guard(fn: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception:
            log.exception("GPIO callback failed")
    return run


def relock(settings: GpioSettings, pin_factory: Any = None) -> None:
    """Drive the strike locked and exit, without starting the daemon (systemd's backstop)."""
    relay = StrikeRelay(settings.strike_pin, pin_factory=pin_factory)
    relay.close()
