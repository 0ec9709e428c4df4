"""Request-level security of the board: sessions, CSRF, roles, headers, error pages.

The campus panel's conventions (web/security.py), reused where they are generic: the same
Content-Security-Policy, cookie flags (HttpOnly, SameSite=Strict, Secure behind TLS) and
the login CSRF cookie. The board has its own cookie names, so a campus panel and the board
served from one host never overwrite each other's sign-in. Every error is a clear 4xx/503
in the caller's format; an unexpected exception is logged and answered without a trace.
"""

from __future__ import annotations

import hmac
import logging
from functools import wraps
from typing import Any, Callable

import psycopg
from flask import Flask, Response, current_app, g, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

# re-exported for the blueprints: the panel's CSP, login CSRF and cookie attributes, one definition each
from web.security import CSP, clear_cookie, new_login_csrf, set_cookie  # noqa: F401

from .accounts import BoardStore, Session

log = logging.getLogger(__name__)

SESSION_COOKIE = "district_session"
LOGIN_CSRF_COOKIE = "district_login_csrf"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
JSON_PATHS = ("/api/", "/live", "/snapshot/", "/search.csv")


def store() -> BoardStore:
    return current_app.extensions["board_store"]


def current_session() -> Session | None:
    return g.get("board_session")


def wants_json() -> bool:
    if request.path.startswith(JSON_PATHS):
        return True
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"


def error(status: int, message: str, **extra: Any) -> Response:
    """A clear error in the caller's format. Never a stack trace."""
    if wants_json():
        resp = jsonify(ok=False, error=message, status=status, **extra)
    else:
        resp = Response(render_template("board_error.html", status=status, message=message), mimetype="text/html")
    resp.status_code = status
    return resp


def require(role: str = "viewer") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Signed-in users only; ``role='operator'`` for lockdowns (a viewer gets 403)."""
    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            sess = current_session()
            if sess is None:
                if request.method == "GET" and not wants_json():
                    return redirect(url_for("board_auth.login", next=request.full_path.rstrip("?")))
                return error(401, "sign in first (or your session has expired)")
            if role == "operator" and not sess.user.is_operator:
                return error(403, "this needs an operator account")
            return view(*args, **kwargs)
        return wrapper
    return decorate


def _load_session() -> Response | None:
    if request.endpoint == "static":
        return None
    g.board_session = store().session(request.cookies.get(SESSION_COOKIE))
    g.session_checked = True        # the lookup answered (a database outage must not sign anyone out)
    if request.method in UNSAFE_METHODS:
        return _check_csrf()
    return None


def _check_csrf() -> Response | None:
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
    if request.endpoint == "board_auth.login_post":
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    else:
        sess = current_session()
        if sess is None:
            return error(401, "sign in first (or your session has expired)")
        expected = sess.csrf
    if not expected or not sent or not hmac.compare_digest(str(sent).encode(), str(expected).encode()):
        return error(400, "missing or wrong CSRF token; reload the page and try again")
    return None




def _headers(resp: Response) -> Response:
    h = resp.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.is_secure:
        h.setdefault("Strict-Transport-Security", "max-age=31536000")
    if not request.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-store")
    if g.get("session_checked") and g.get("board_session") is None and request.cookies.get(SESSION_COOKIE) and \
            request.endpoint != "board_auth.login_post":
        clear_cookie(resp, SESSION_COOKIE)
    return resp


def _http_error(exc: HTTPException) -> Response:
    return error(exc.code or 400, exc.description or exc.name)


def _database_down(exc: Exception) -> Response:
    log.error("database unavailable for %s %s: %s", request.method, request.path, exc)
    return error(503, "the district database is not answering; try again in a moment")


def _unexpected(exc: Exception) -> Response:
    log.exception("board request failed: %s %s", request.method, request.path)
    return error(503, "the board could not answer this request; nothing was changed")


def init_app(app: Flask) -> None:
    app.before_request(_load_session)
    app.after_request(_headers)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(psycopg.OperationalError, _database_down)
    app.register_error_handler(Exception, _unexpected)

    @app.context_processor
    def _template_globals() -> dict[str, Any]:
        sess = current_session()
        return {"session": sess, "user": sess.user if sess else None, "csrf_token": sess.csrf if sess else ""}
