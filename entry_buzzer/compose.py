"""Wiring: which services run around the controller (MQTT link, panel) and the simulated
station on mock pins. The daemon (controller/daemon.py) runs whatever it is given."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from controller import daemon
from controller.api import DoorApi
from controller.camera import Camera
from controller.config import Settings
from controller.facade import Controller, Service
from controller.simulate import SimulatedStation

log = logging.getLogger(__name__)


def default_services(settings: Settings, station: Callable[[], SimulatedStation | None] = lambda: None
                     ) -> list[daemon.ServiceFactory]:
    """The MQTT link and the web panel, when enabled (imported lazily: each is optional)."""
    factories: list[daemon.ServiceFactory] = []
    if settings.mqtt.enabled:
        from controller.mqtt import MqttLink

        def mqtt_link(controller: DoorApi) -> Service:
            return MqttLink(controller)
        factories.append(mqtt_link)
    if settings.intercom.enabled and settings.web.enabled:
        try:
            from intercom.service import IntercomService  # its own thread and loop; never the core's
        except ImportError as exc:      # the door runs without live video; the log says why
            log.error("intercom off: %s (install the 'intercom' extra: aiortc, PyAV)", exc)
        else:
            def intercom(controller: DoorApi) -> Service:
                return IntercomService(controller)
            factories.append(intercom)
    if settings.web.enabled:
        from web.server import WebServer

        def panel(controller: DoorApi) -> Service:
            return WebServer(controller, station=station())
        factories.append(panel)
    return factories


def run(settings: Settings, pin_factory: Any = None, camera: Camera | None = None,
        service_factories: list[daemon.ServiceFactory] | None = None, simulated: bool = False,
        station: SimulatedStation | None = None,
        on_ready: Callable[[Controller], None] | None = None,
        on_built: Callable[[Controller], None] | None = None,
        stop_event: threading.Event | None = None) -> int:
    """Run the daemon with its services until SIGTERM/SIGINT (or stop_event); the exit code.

    On gpiozero's mock pins outside the simulated campus (a test system,
    GPIOZERO_PIN_FACTORY=mock) the /sim station drives them, as in the simulated campus. Never
    with real pins."""
    attached: list[SimulatedStation | None] = [station]

    def built(controller: Controller) -> None:
        if attached[0] is None and not simulated and controller.on_mock_pins:
            from gpiozero import Device
            made = SimulatedStation(controller.hardware.pin_factory or Device.pin_factory, settings.gpio)
            made.settle()
            attached[0] = made
        if on_built is not None:
            on_built(controller)

    factories = service_factories if service_factories is not None else \
        default_services(settings, lambda: attached[0])
    return daemon.run(settings, pin_factory=pin_factory, camera=camera, service_factories=factories,
                      simulated=simulated, on_ready=on_ready, on_built=built, stop_event=stop_event)
