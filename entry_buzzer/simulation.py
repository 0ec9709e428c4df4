"""The simulated campus: the real daemon on gpiozero's MockFactory, the simulated camera, the
panel with its /sim visitor station, and a console a person (or a script) drives."""

from __future__ import annotations

import threading
from typing import Any

from gpiozero.pins.mock import MockFactory

from controller import config as cfg
from controller.facade import Controller
from controller.sim_console import console
from controller.simulate import SimulatedPin, SimulatedStation
from web.cli import ensure_sim_admin

from .compose import run


def panel_links(settings: cfg.Settings) -> str:
    """The panel and /sim links, https:// when the config gives the panel a certificate."""
    w = settings.web
    scheme = "https" if w.tls_cert_file and w.tls_key_file else "http"
    base = f"{scheme}://{w.host}:{w.port}"
    return f"panel: {base}/  visitor station: {base}/sim"


def run_simulation(settings: cfg.Settings, console_enabled: bool = False, duration: float | None = None,
                   as_json: bool = False, **kwargs: Any) -> int:
    factory = MockFactory(pin_class=SimulatedPin)
    station = SimulatedStation(factory, settings.gpio)
    stop = threading.Event()

    def ready(controller: Controller) -> None:
        print(f"simulated campus ready: {settings.site.campus}/{settings.site.door}", flush=True)
        print(f"state dir: {settings.storage.state_dir}", flush=True)
        if settings.web.enabled:
            print(f"panel sign-in: admin / {ensure_sim_admin(settings)}  (generated for this run)", flush=True)
            print(panel_links(settings), flush=True)
        if settings.mqtt.enabled:
            print(f"mqtt: mosquitto_sub -h {settings.mqtt.host} -p {settings.mqtt.port} -v -t "
                  f"'{settings.mqtt.prefix}/#'", flush=True)
        if duration:
            threading.Timer(duration, stop.set).start()
        if console_enabled:
            threading.Thread(target=console, args=(controller, station, stop),
                             kwargs={"as_json": as_json}, daemon=True).start()

    return run(settings, pin_factory=factory, simulated=True, station=station, on_ready=ready,
               on_built=lambda _c: station.settle(), stop_event=stop, **kwargs)
