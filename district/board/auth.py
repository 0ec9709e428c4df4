"""Sign in and sign out of the board; failed and throttled sign-ins are audited in PostgreSQL.

The throttle is the campus panel's (web/throttle.py): per client address and per
(username, address), never per username alone, so nobody can lock an operator out by
guessing wrong in their name. It is kept in memory per board instance (see its docstring).
"""

from __future__ import annotations

from flask import Blueprint, current_app, make_response, redirect, render_template, request
from werkzeug.wrappers import Response

from web.auth import _safe_next
from web.throttle import LoginThrottle

from . import security as sec

bp = Blueprint("board_auth", __name__)


def _form(status: int = 200, message: str = "", username: str = "") -> Response:
    token = sec.new_login_csrf()
    resp = make_response(render_template("board_login.html", message=message, login_csrf=token,
                                         username=username, next=_safe_next(request.args.get("next"))), status)
    sec.set_cookie(resp, sec.LOGIN_CSRF_COOKIE, token, max_age=3600)
    return resp


@bp.get("/login")
def login() -> Response:
    if sec.current_session() is not None:
        return redirect(_safe_next(request.args.get("next")))
    return _form()


@bp.post("/login")
def login_post() -> Response:
    throttle: LoginThrottle = current_app.extensions["board_throttle"]
    username = request.form.get("username", "")[:64].strip().lower()
    password = request.form.get("password", "")[:1024]
    address = request.remote_addr or "unknown"
    blocked = throttle.blocked(address, username)
    if blocked:
        if throttle.should_announce(blocked, address, username):
            sec.store().audit(username, "login_throttled", address=address, limits=blocked)
        resp = _form(429, "Too many failed sign-ins from this device. Wait a few minutes and try again.", username)
        resp.headers["Retry-After"] = str(int(throttle.window))
        return resp
    user = sec.store().authenticate(username, password)
    if user is None:
        throttle.failed(address, username)
        sec.store().audit(username, "login_failed", address=address)
        return _form(401, "Wrong username or password.", username)
    throttle.succeeded(address, username)
    sec.store().end_session(request.cookies.get(sec.SESSION_COOKIE))
    token, session = sec.store().create_session(user, address, request.headers.get("User-Agent", ""))
    sec.store().audit(user.username, "login_succeeded", address=address, session=session.id)
    resp = redirect(_safe_next(request.form.get("next")), 303)
    sec.set_cookie(resp, sec.SESSION_COOKIE, token)
    sec.clear_cookie(resp, sec.LOGIN_CSRF_COOKIE)
    return resp


@bp.post("/logout")
@sec.require()
def logout() -> Response:
    sec.store().end_session(request.cookies.get(sec.SESSION_COOKIE))
    resp = redirect("/login", 303)
    sec.clear_cookie(resp, sec.SESSION_COOKIE)
    return resp
