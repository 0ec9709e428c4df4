"""Request-level security: sessions from the cookie, CSRF, roles, headers, error pages.

Why one module: these rules apply to every blueprint, and a reviewer should be
able to read all of them in one place. Nothing here knows about doors.
"""

from __future__ import annotations

import errno
import hmac
import logging
import secrets
import sqlite3
from functools import wraps
from typing import Any, Callable

from flask import Flask, Response, current_app, g, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from controller.api import DoorApi, JournalError
from controller.vocabulary import Role

from .store import PanelStore, Session

log = logging.getLogger(__name__)

SESSION_COOKIE = "eb_session"
LOGIN_CSRF_COOKIE = "eb_login_csrf"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def store() -> PanelStore:
    return current_app.extensions["panel_store"]


def controller() -> DoorApi:
    """The door, through its typed facade (controller/api.py): all the panel may touch."""
    return current_app.extensions["entry_controller"]


def current_session() -> Session | None:
    return g.get("panel_session")


def wants_json() -> bool:
    """API-style callers (fetch, EventSource, CSV) get JSON errors; browsers navigating get pages."""
    if request.path.startswith(("/api/", "/events", "/sim/", "/snapshot/")):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error(status: int, message: str, **extra: Any) -> Response:
    """A clear error in the caller's format. Never a stack trace."""
    if wants_json():
        resp = jsonify(ok=False, error=message, status=status, **extra)
    else:
        resp = Response(render_template("error.html", status=status, message=message), mimetype="text/html")
    resp.status_code = status
    return resp


def require(role: str = "staff") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Signed-in users only; ``role='admin'`` for admins. Anonymous/expired -> 401 or sign-in page."""
    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            sess = current_session()
            if sess is None:
                if request.method == "GET" and not wants_json():
                    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
                return error(401, "sign in first (or your session has expired)")
            if role == Role.ADMIN and not sess.user.is_admin:
                return error(403, "this needs an admin account")
            return view(*args, **kwargs)
        return wrapper
    return decorate


def _load_session() -> Response | None:
    g.panel_session = store().session(request.cookies.get(SESSION_COOKIE))
    if request.method in UNSAFE_METHODS:
        return _check_csrf()
    return None


def _check_csrf() -> Response | None:
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
    if request.endpoint == "auth.login_post":
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    else:
        sess = current_session()
        if sess is None:
            return error(401, "sign in first (or your session has expired)")
        expected = sess.csrf
    if not expected or not sent or not hmac.compare_digest(str(sent).encode(), str(expected).encode()):
        return error(400, "missing or wrong CSRF token; reload the page and try again")
    return None


def set_cookie(resp: BaseResponse, name: str, value: str, max_age: int | None = None) -> None:
    resp.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Strict",
                    secure=request.is_secure)


def clear_cookie(resp: BaseResponse, name: str) -> None:
    resp.delete_cookie(name, path="/", httponly=True, samesite="Strict", secure=request.is_secure)


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def _headers(resp: Response) -> Response:
    h = resp.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("Permissions-Policy", "camera=(), microphone=(self), geolocation=()")   # mic: intercom Talk
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.is_secure:
        h.setdefault("Strict-Transport-Security", "max-age=31536000")
    if not request.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-store")
    if g.get("panel_session") is None and request.cookies.get(SESSION_COOKIE) and \
            request.endpoint != "auth.login_post":
        clear_cookie(resp, SESSION_COOKIE)          # expired or revoked: drop the stale cookie
    return resp


def _http_error(exc: HTTPException) -> Response:
    return error(exc.code or 400, exc.description or exc.name)


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
    app.before_request(_load_session)
    app.after_request(_headers)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(JournalError, _journal_down)
    app.register_error_handler(sqlite3.OperationalError, _storage_down)
    app.register_error_handler(OSError, _storage_down)
    app.register_error_handler(Exception, _unexpected)

    @app.context_processor
    def _template_globals() -> dict[str, Any]:
        sess = current_session()
        controller: DoorApi = app.extensions["entry_controller"]
        return {"session": sess, "user": sess.user if sess else None,
                "csrf_token": sess.csrf if sess else "", "simulated": controller.simulated,
                "site": controller.settings.site}
