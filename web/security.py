"""Request-level security of the panel: sessions from the cookie, CSRF, roles, headers, error pages.

Why one module: these rules apply to every blueprint, and a reviewer should be
able to read all of them in one place. The rules themselves are web/guard.py's, shared
with the district board; this module gives them the panel's names (cookies, templates,
roles) and adds the panel's own failures (journal down, disk full). Nothing here knows about doors.
"""

from __future__ import annotations

import errno
import logging
import sqlite3

from flask import Flask, Response, current_app, request

from controller.api import DoorApi, JournalError
from controller.vocabulary import Role

from .guard import CSP, Guard, clear_cookie, new_login_csrf, set_cookie  # noqa: F401  (the blueprints' names)
from .store import PanelStore, Session

log = logging.getLogger(__name__)

SESSION_COOKIE = "eb_session"
LOGIN_CSRF_COOKIE = "eb_login_csrf"
GUARD = Guard(session_cookie=SESSION_COOKIE, login_csrf_cookie=LOGIN_CSRF_COOKIE, auth="auth",
              error_template="error.html", login_template="login.html",
              json_paths=("/api/", "/events", "/sim/", "/snapshot/"), store_key="panel_store",
              session_attr="panel_session", default_role=Role.STAFF, elevated=Role.ADMIN,
              is_elevated=lambda user: user.is_admin,
              permissions_policy="camera=(), microphone=(self), geolocation=()")   # mic: intercom Talk
wants_json = GUARD.wants_json
error = GUARD.error
require = GUARD.require


def store() -> PanelStore:
    return GUARD.store()


def controller() -> DoorApi:
    """The door, through its typed facade (controller/api.py): all the panel may touch."""
    return current_app.extensions["entry_controller"]


def current_session() -> Session | None:
    return GUARD.current_session()


def _journal_down(exc: Exception) -> Response:
    log.error("journal unavailable for %s %s: %s", request.method, request.path, exc)
    return error(503, "the journal cannot be read right now; the door stays locked (see the controller log)")


STORAGE_DOWN = ("the controller's storage is full or failing, so this cannot be recorded right now. "
                "The door stays locked and keeps working; staff can still start a lockdown. "
                "Tell the district IT (see the controller log).")


def disk_full(exc: BaseException) -> bool:
    """SQLite's 'database or disk is full' and ENOSPC/EDQUOT/EIO from the filesystem."""
    if isinstance(exc, sqlite3.OperationalError):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)


def _storage_down(exc: Exception) -> Response:
    if not disk_full(exc):
        return _unexpected(exc)
    log.error("storage unavailable for %s %s: %s", request.method, request.path, exc)
    return error(503, STORAGE_DOWN)


def _unexpected(exc: Exception) -> Response:
    log.exception("panel request failed: %s %s", request.method, request.path)
    return error(500, "internal error; the door state is unchanged")


def init_app(app: Flask) -> None:
    GUARD.init_app(app, simulated=lambda: controller().simulated, site=lambda: controller().settings.site)
    app.register_error_handler(JournalError, _journal_down)
    app.register_error_handler(sqlite3.OperationalError, _storage_down)
    app.register_error_handler(OSError, _storage_down)
    app.register_error_handler(Exception, _unexpected)
