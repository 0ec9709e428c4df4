"""Request-level security of the board: sessions, CSRF, roles, headers, error pages.

The campus panel's conventions, one implementation (web/guard.py, shared with web/security.py):
the same Content-Security-Policy, cookie flags (HttpOnly, SameSite=Strict, Secure behind TLS),
CSRF check and login CSRF cookie. The board has its own cookie names, so a campus panel and
the board served from one host never overwrite each other's sign-in. Every error is a clear
4xx/503 in the caller's format; an unexpected exception is logged and answered without a trace.
"""

from __future__ import annotations

import logging

import psycopg
from flask import Flask, Response, request

# re-exported for the blueprints: the shared CSP, login CSRF and cookie attributes, one definition each
from web.guard import CSP, Guard, clear_cookie, new_login_csrf, set_cookie  # noqa: F401

from .accounts import BoardStore, Session

log = logging.getLogger(__name__)

SESSION_COOKIE = "district_session"
LOGIN_CSRF_COOKIE = "district_login_csrf"
GUARD = Guard(session_cookie=SESSION_COOKIE, login_csrf_cookie=LOGIN_CSRF_COOKIE, auth="board_auth",
              error_template="board_error.html", login_template="board_login.html",
              json_paths=("/api/", "/live", "/snapshot/", "/search.csv"), store_key="board_store",
              session_attr="board_session", default_role="viewer", elevated="operator",
              is_elevated=lambda user: user.is_operator, permissions_policy="camera=(), microphone=(), geolocation=()",
              lookup_static=False, keep_cookie_on_failed_lookup=True)
wants_json = GUARD.wants_json
error = GUARD.error
require = GUARD.require


def store() -> BoardStore:
    return GUARD.store()


def current_session() -> Session | None:
    return GUARD.current_session()


def _database_down(exc: Exception) -> Response:
    log.error("database unavailable for %s %s: %s", request.method, request.path, exc)
    return error(503, "the district database is not answering; try again in a moment")


def _unexpected(exc: Exception) -> Response:
    log.exception("board request failed: %s %s", request.method, request.path)
    return error(503, "the board could not answer this request; nothing was changed")


def init_app(app: Flask) -> None:
    GUARD.init_app(app)
    app.register_error_handler(psycopg.OperationalError, _database_down)
    app.register_error_handler(Exception, _unexpected)
