"""The front-office panel: a Flask app factory that receives the running controller.

``create_app(controller)`` wires one blueprint per concern (auth, panel,
stream, history, admin, intercom, and sim only on gpiozero's mock pins: never with real pins). The panel never
touches door hardware: it calls the controller, which asks the entry core.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from flask import Flask

from controller import config as cfg
from controller.api import DoorApi

from . import admin, auth, history, panel, security, sim, stream
from .store import PANEL_DB, SCRYPT_N, PanelStore
from .throttle import LoginThrottle


def create_app(controller: DoorApi, settings: cfg.Settings | None = None,
               test_config: dict[str, Any] | None = None, station: Any = None) -> Flask:
    """The panel for this controller. ``station`` is the simulated visitor station the /sim page
    drives (simulated campus and mock pins only; the composition root passes it)."""
    settings = settings or controller.settings
    app = Flask(__name__)
    threads = settings.web.threads
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=64 * 1024,
        PANEL_DB=str(Path(settings.storage.state_dir) / PANEL_DB),
        SESSION_IDLE_MINUTES=settings.web.session_idle_minutes,
        SESSION_IDLE_SECONDS=None,              # tests only: overrides the minutes
        SESSION_MAX_HOURS=settings.web.session_max_hours,
        SESSION_WARN_SECONDS=600,               # the dashboard warns this long before the session ends
        SSE_HEARTBEAT_SECONDS=3.0,
        SSE_STATE_EVERY=5,                      # a full state refresh every 5th heartbeat
        SSE_QUEUE_SIZE=200,
        SSE_MAX_STREAMS=max(1, threads * 3 // 4),  # a quarter of the threads stay for requests
        SSE_STREAMS_PER_SESSION=settings.web.streams_per_session,
        SSE_STREAMS_PER_USER=settings.web.streams_per_user,
        LOGIN_LIMIT_PER_USER_ADDRESS=5,         # never per username alone: that locks staff out
        LOGIN_LIMIT_PER_ADDRESS=20,
        LOGIN_THROTTLE_MAX_KEYS=4096,           # about 5 MB for both tables when full
        LOGIN_WINDOW_SECONDS=900.0,
        PASSWORD_SCRYPT_N=SCRYPT_N,
    )
    if test_config:
        app.config.update(test_config)
    app.secret_key = (cfg.read_secret(settings.web.secret_key_file) if settings.web.secret_key_file
                      else secrets.token_hex(32))

    store = PanelStore(app.config["PANEL_DB"], idle_minutes=app.config["SESSION_IDLE_MINUTES"],
                       scrypt_n=app.config["PASSWORD_SCRYPT_N"], max_hours=app.config["SESSION_MAX_HOURS"],
                       idle_seconds=app.config["SESSION_IDLE_SECONDS"])
    app.extensions["entry_controller"] = controller
    app.extensions["panel_store"] = store
    app.extensions["sim_station"] = station
    app.extensions["login_throttle"] = LoginThrottle(
        per_user_address=app.config["LOGIN_LIMIT_PER_USER_ADDRESS"],
        per_address=app.config["LOGIN_LIMIT_PER_ADDRESS"], window_seconds=app.config["LOGIN_WINDOW_SECONDS"],
        max_keys=app.config["LOGIN_THROTTLE_MAX_KEYS"])
    warn = app.config["SESSION_WARN_SECONDS"]

    def stream_session(token: str) -> dict[str, Any] | None:
        """An open live stream keeps its session alive (a front-office display) and learns its end."""
        sess = store.session(token, touch=True)
        return None if sess is None else {"expires_in": round(sess.expires_in, 1), "warn_before": warn}

    app.extensions["stream_hub"] = stream.StreamHub(
        controller, stream_session,
        max_streams=app.config["SSE_MAX_STREAMS"], queue_size=app.config["SSE_QUEUE_SIZE"],
        heartbeat_seconds=app.config["SSE_HEARTBEAT_SECONDS"], state_every=app.config["SSE_STATE_EVERY"],
        per_session=app.config["SSE_STREAMS_PER_SESSION"], per_user=app.config["SSE_STREAMS_PER_USER"],
        missed_acked=store.missed_acked)

    security.init_app(app)
    for bp in (auth.bp, panel.bp, stream.bp, history.bp, admin.bp):
        app.register_blueprint(bp)
    _init_intercom(app)
    if controller.on_mock_pins:             # /sim iff the pins are gpiozero's mock pins
        app.register_blueprint(sim.bp)
    return app


def _init_intercom(app: Flask) -> None:
    """The intercom's signalling and MJPEG routes, when the intercom extra is installed."""
    try:
        from . import intercom
    except ImportError as exc:       # no aiortc/PyAV: the panel works without live video
        app.logger.warning("intercom routes off: %s", exc)
        return
    intercom.init_app(app)
    app.extensions["intercom_station"] = intercom.station_state


def close_app(app: Flask) -> None:
    """End open streams and close the account store (server stop, test teardown)."""
    app.extensions["stream_hub"].close()
    if "intercom_refusals" in app.extensions:      # a refusal flood's summary is never lost
        app.extensions["intercom_refusals"].close()
    app.extensions["panel_store"].close()
