"""The visitor-station page (/sim) is served if and only if the pins are gpiozero's mock pins.

A test system (the VM rig) runs the installed service with GPIOZERO_PIN_FACTORY=mock: there
the station must work like in the simulated campus. With real pins (lgpio on a Pi) it must
never exist, whatever else says "simulated": a browser must not drive a real buzzer input.
"""

from __future__ import annotations

import threading

from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from controller import config as cfg
from controller import daemon
from controller.gpio import uses_mock_pins
from tests.support_web import TEST_CONFIG, Signed, add_users, build_controller, stop_controller


class LGPIOFactory:
    """Stands in for a real pin factory (only its type matters to the rule)."""


def _sim_status(controller: daemon.Controller) -> int:
    from web import close_app, create_app
    app = create_app(controller, test_config=TEST_CONFIG, station=controller.station)
    try:
        add_users(app.extensions["panel_store"])
        return Signed(app.test_client(), "sam").get("/sim").status_code
    finally:
        close_app(app)


def test_mock_pins_serve_the_station_outside_the_simulated_campus(settings, pin_factory):
    controller = build_controller(settings, pin_factory)
    controller.simulated = False            # the installed daemon (`entry-buzzer run`) on mock pins
    try:
        assert _sim_status(controller) == 200
    finally:
        stop_controller(controller)


def test_real_pins_never_serve_the_station(settings, pin_factory):
    controller = build_controller(settings, pin_factory)
    controller.hardware.pin_factory = LGPIOFactory()
    assert controller.simulated is True     # even a controller flagged simulated
    try:
        assert _sim_status(controller) == 404
    finally:
        controller.hardware.pin_factory = pin_factory
        stop_controller(controller)


def test_the_rule_reads_the_default_factory_from_the_environment(monkeypatch):
    monkeypatch.setattr(Device, "pin_factory", MockFactory())
    assert uses_mock_pins(None) is True
    monkeypatch.setattr(Device, "pin_factory", LGPIOFactory())
    assert uses_mock_pins(None) is False
    assert uses_mock_pins(LGPIOFactory()) is False


def test_the_daemon_on_mock_pins_attaches_a_settled_station(settings, pin_factory):
    """`entry-buzzer run` with mock pins: the panel has the station at READY and the door reads closed."""
    from entry_buzzer import compose
    s = cfg.with_overrides(settings, web={"enabled": True, "host": "127.0.0.1", "port": 0, "listen": "tcp"})
    stop = threading.Event()
    seen: dict[str, object] = {}

    def ready(controller: daemon.Controller) -> None:
        panel = next(svc for svc in controller.services if svc.name == "web")
        seen["station"] = panel.app.extensions["sim_station"]
        seen["door"] = controller.status()["door"]
        stop.set()

    assert compose.run(s, pin_factory=pin_factory, simulated=False, on_ready=ready, stop_event=stop) == 0
    assert seen["station"] is not None and seen["door"] == "locked"
