"""The simulated visitor station (/sim): registered if and only if the pins are gpiozero's
mock pins (the simulated campus, or a test system with GPIOZERO_PIN_FACTORY=mock); never
with real pins.

The Press button drives the mock GPIO buzzer pin through the simulated station, so
a press from the browser takes the real path (edge -> GPIO adapter -> core ->
journal). The strike state shown is read from the mock strike pin itself.
"""

from __future__ import annotations

from functools import wraps
from typing import Any, Callable

from flask import Blueprint, current_app, jsonify, render_template, request

from controller.api import DoorApi

from . import security as sec

bp = Blueprint("sim", __name__)


def _station() -> Any:
    return current_app.extensions["sim_station"]


def _needs_station(view: Callable[[], Any]) -> Callable[[], Any]:
    """503 until the daemon has attached the station (it does so once it is ready)."""
    @wraps(view)
    def wrapper() -> Any:
        if _station() is None:
            return sec.error(503, "the simulated station is not ready yet")
        return view()
    return wrapper


def _state() -> Any:
    c: DoorApi = current_app.extensions["entry_controller"]
    station = _station()
    status = c.status()
    intercom = current_app.extensions.get("intercom_station")
    # pattern: what the station shows as a whole (idle, ringing, approved, denied, lockdown); the
    # LEDs themselves blink, so a poll of the pins alone could miss a pattern.
    return jsonify(strike_on=station.strike_on, leds=station.leds(), door_open=bool(status["door_open"]),
                   door=status["door"], ringing=status["ring"] is not None,
                   lockdown=status["lockdown"] is not None, pattern=c.indicator_pattern(),
                   level=(status["lockdown"] or {}).get("level"),
                   intercom=intercom(c) if intercom is not None else None)


@bp.get("/sim")
@sec.require()
def page() -> Any:
    return render_template("sim.html")


@bp.get("/sim/state")
@sec.require()
@_needs_station
def state() -> Any:
    return _state()


@bp.post("/sim/press")
@sec.require()
@_needs_station
def press() -> Any:
    _station().press()
    return _state()


@bp.post("/sim/door")
@sec.require()
@_needs_station
def door() -> Any:
    value = request.form.get("open", "")
    if value not in ("0", "1"):
        return sec.error(400, "open must be 0 or 1")
    _station().set_door(value == "1")
    return _state()


@bp.post("/sim/panic")
@sec.require()
@_needs_station
def panic() -> Any:
    """The desk panic (duress) button's pin (gpio.panic_pin), pressed once."""
    if _station().gpio.panic_pin is None:
        return sec.error(404, "no desk panic button configured (gpio.panic_pin)")
    _station().press_panic()
    return _state()


@bp.post("/sim/exit")
@sec.require()
@_needs_station
def request_exit() -> Any:
    """Someone inside walks up to the door: the request-to-exit sensor (egress, never an unlock)."""
    _station().request_exit()
    return _state()
