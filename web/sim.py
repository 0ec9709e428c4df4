"""The simulated visitor station (/sim): registered only in the simulated campus.

The Press button drives the mock GPIO buzzer pin through controller.station, so
a press from the browser takes the real path (edge -> GPIO adapter -> core ->
journal). The strike state shown is read from the mock strike pin itself.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, render_template, request

from . import security as sec

bp = Blueprint("sim", __name__)


def _station() -> Any:
    return current_app.extensions["entry_controller"].station


def _state() -> Any:
    c = current_app.extensions["entry_controller"]
    station = _station()
    status = c.core.status()
    return jsonify(strike_on=station.strike_on, leds=station.leds(), door_open=bool(status["door_open"]),
                   door=status["door"], ringing=status["ring"] is not None,
                   lockdown=status["lockdown"] is not None)


@bp.get("/sim")
@sec.require()
def page() -> Any:
    return render_template("sim.html")


@bp.get("/sim/state")
@sec.require()
def state() -> Any:
    if _station() is None:
        return sec.error(503, "the simulated station is not ready yet")
    return _state()


@bp.post("/sim/press")
@sec.require()
def press() -> Any:
    if _station() is None:
        return sec.error(503, "the simulated station is not ready yet")
    _station().press()
    return _state()


@bp.post("/sim/door")
@sec.require()
def door() -> Any:
    if _station() is None:
        return sec.error(503, "the simulated station is not ready yet")
    value = request.form.get("open", "")
    if value not in ("0", "1"):
        return sec.error(400, "open must be 0 or 1")
    _station().set_door(value == "1")
    return _state()


@bp.post("/sim/exit")
@sec.require()
def request_exit() -> Any:
    """Someone inside walks up to the door: the request-to-exit sensor (egress, never an unlock)."""
    if _station() is None:
        return sec.error(503, "the simulated station is not ready yet")
    _station().request_exit()
    return _state()
