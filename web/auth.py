"""Sign in and sign out. Failed and throttled sign-ins are journaled (the audit log).

Besides the sign-in page, the same endpoints answer JSON (``Accept: application/json``):
an open dashboard whose session ended signs in again in a small in-page dialog and
retries the action, instead of losing the page (and the ring on it) to a redirect.
"""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, jsonify, make_response, redirect, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from controller import events as ev

from . import security as sec
from .throttle import LoginThrottle

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths: no open redirect to another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


def _form(status: int = 200, message: str = "", username: str = "") -> Response:
    token = sec.new_login_csrf()
    resp = make_response(render_template("login.html", message=message, login_csrf=token,
                                         username=username, next=_safe_next(request.args.get("next"))),
                         status)
    sec.set_cookie(resp, sec.LOGIN_CSRF_COOKIE, token, max_age=3600)
    return resp


def _journal(type: str, **data: Any) -> None:
    try:   # through the core: a full disk releases the reserve; a lost event is counted
        if not sec.controller().audit(type, **data):
            current_app.logger.error("could not journal %s (counted for journal_recovered)", type)
    except Exception:  # a full disk must not turn a sign-in page into a 500
        current_app.logger.exception("could not journal %s", type)


@bp.get("/login")
def login() -> BaseResponse:
    if sec.wants_json():                      # the in-page sign-in dialog: just a login CSRF token
        token = sec.new_login_csrf()
        resp = jsonify(ok=True, login_csrf=token)
        sec.set_cookie(resp, sec.LOGIN_CSRF_COOKIE, token, max_age=3600)
        return resp
    if sec.current_session() is not None:
        return redirect(_safe_next(request.args.get("next")))
    return _form()


@bp.post("/login")
def login_post() -> BaseResponse:
    throttle: LoginThrottle = current_app.extensions["login_throttle"]
    username = request.form.get("username", "")[:64].strip().lower()
    password = request.form.get("password", "")
    address = request.remote_addr or "unknown"
    blocked = throttle.blocked(address, username)
    if blocked:
        if throttle.should_announce(blocked, address, username):
            _journal(ev.LOGIN_THROTTLED, username=username, address=address, limits=blocked)
        message = "Too many failed sign-ins from this device. Wait a few minutes and try again."
        refused = sec.error(429, message) if sec.wants_json() else _form(429, message, username)
        refused.headers["Retry-After"] = str(int(throttle.window))
        return refused
    user = sec.store().authenticate(username, password)
    if user is None:
        throttle.failed(address, username)
        _journal(ev.LOGIN_FAILED, username=username, address=address)
        message = "Wrong username or password."
        return sec.error(401, message) if sec.wants_json() else _form(401, message, username)
    throttle.succeeded(address, username)
    try:
        sec.store().end_session(request.cookies.get(sec.SESSION_COOKIE))   # a new sign-in replaces the old
    except (sqlite3.OperationalError, OSError):
        pass    # the old session ends at its idle timeout instead (e.g. a full disk)
    try:
        token, session = _create_session(user, address)
    except (sqlite3.OperationalError, OSError) as exc:
        if not sec.disk_full(exc):
            raise
        current_app.logger.error("sign-in of %s not recorded: %s", username, exc)
        message = ("The controller's disk is full, so this sign-in cannot be recorded. The door "
                   "stays locked and keeps working. Tell the district IT.")
        return sec.error(503, message) if sec.wants_json() else _form(503, message, username)
    _journal(ev.LOGIN_SUCCEEDED, username=user.username, address=address, session=session.id)
    resp: BaseResponse
    if sec.wants_json():
        resp = jsonify(ok=True, csrf=session.csrf, username=user.username, display_name=user.display_name,
                       expires_in=session.expires_in)
    else:
        resp = redirect(_safe_next(request.form.get("next")), 303)
    sec.set_cookie(resp, sec.SESSION_COOKIE, token)
    sec.clear_cookie(resp, sec.LOGIN_CSRF_COOKIE)
    return resp


def _create_session(user: Any, address: str) -> tuple[str, Any]:
    """Create the session; on a full disk release the controller's disk reserve (a signed-in
    staff member must be able to start a lockdown) and try once more."""
    agent = request.headers.get("User-Agent", "")
    try:
        return sec.store().create_session(user, address, agent)
    except (sqlite3.OperationalError, OSError) as exc:
        if not sec.disk_full(exc):
            raise
        if not sec.controller().use_reserve():
            raise
    return sec.store().create_session(user, address, agent)


@bp.post("/logout")
@sec.require()
def logout() -> BaseResponse:
    sec.store().end_session(request.cookies.get(sec.SESSION_COOKIE))
    resp = redirect("/login", 303)
    sec.clear_cookie(resp, sec.SESSION_COOKIE)
    return resp
