"""The district board: a Flask app factory over the district PostgreSQL database.

``create_app(settings)`` wires one blueprint per concern: sign-in (auth), the live grid
(live), a door's timeline (doors), search and CSV export (search) and lockdowns (lockdown).
The board is stateless: accounts, sessions and the audit trail are in PostgreSQL, so several
instances can serve one district behind nginx. It reads what the recorder wrote and
publishes nothing but lockdown commands; it has no way to unlock a door.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any, Callable

from flask import Flask
from psycopg_pool import ConnectionPool

from controller.config import read_secret
from web.store import SCRYPT_N
from web.throttle import LoginThrottle

from . import auth, doors, grid, live, lockdown, search, security
from .accounts import BoardStore, apply_schema
from .config import BoardSettings
from .publisher import LockdownPublisher


def open_pool(settings: BoardSettings, min_size: int = 1, wait_seconds: float = 5.0,
              open_seconds: float = 30.0) -> ConnectionPool:
    # timeout: a request waits at most ``wait_seconds`` (5 s) for a connection, then gets a 503
    # (PoolTimeout is an OperationalError), instead of holding a thread for psycopg_pool's 30 s.
    pool = ConnectionPool(settings.conninfo(), min_size=min_size, max_size=settings.database.pool_size,
                          kwargs={"autocommit": True, "connect_timeout": 5}, open=False, name="district-board",
                          # check: drops connections a database restart broke
                          timeout=wait_seconds, check=ConnectionPool.check_connection)
    pool.open(wait=True, timeout=open_seconds)
    return pool


def create_app(settings: BoardSettings, test_config: dict[str, Any] | None = None,
               now: Callable[[], datetime] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=16 * 1024,
        SESSION_IDLE_SECONDS=settings.web.session_idle_minutes * 60.0,
        SESSION_MAX_SECONDS=settings.web.session_max_hours * 3600.0,
        SSE_HEARTBEAT_SECONDS=3.0,
        SSE_MAX_STREAMS=max(1, settings.web.threads * 3 // 4),   # a quarter of the threads stay for requests
        LOGIN_LIMIT_PER_USER_ADDRESS=5,
        LOGIN_LIMIT_PER_ADDRESS=20,
        LOGIN_WINDOW_SECONDS=900.0,
        PASSWORD_SCRYPT_N=SCRYPT_N,
        DB_WAIT_SECONDS=5.0,                    # a request waits this long for a database connection
    )
    if test_config:
        app.config.update(test_config)
    secret_file = settings.web.secret_key_file
    app.secret_key = read_secret(secret_file) if secret_file else secrets.token_hex(32)
    clock = now or (lambda: datetime.now(timezone.utc))

    pool = open_pool(settings, wait_seconds=app.config["DB_WAIT_SECONDS"])
    apply_schema(pool)
    app.extensions["board_settings"] = settings
    app.extensions["board_pool"] = pool
    app.extensions["board_store"] = BoardStore(pool, idle_seconds=app.config["SESSION_IDLE_SECONDS"],
                                               max_seconds=app.config["SESSION_MAX_SECONDS"],
                                               scrypt_n=app.config["PASSWORD_SCRYPT_N"])
    app.extensions["board_throttle"] = LoginThrottle(
        per_user_address=app.config["LOGIN_LIMIT_PER_USER_ADDRESS"],
        per_address=app.config["LOGIN_LIMIT_PER_ADDRESS"], window_seconds=app.config["LOGIN_WINDOW_SECONDS"])
    app.extensions["board_publisher"] = LockdownPublisher(settings.mqtt, settings.mqtt_accounts)
    app.extensions["board_hub"] = live.GridHub(
        settings.conninfo(), lambda doors: grid.build(pool, settings, clock, doors),
        refresh_seconds=settings.refresh_seconds,
        max_streams=app.config["SSE_MAX_STREAMS"]).start()

    security.init_app(app)
    for bp in (auth.bp, live.bp, doors.bp, search.bp, lockdown.bp):
        app.register_blueprint(bp)
    return app


def close_app(app: Flask) -> None:
    """End the live streams and the listener, close the pool (server stop, test teardown)."""
    app.extensions["board_hub"].close()
    app.extensions["board_pool"].close()
