"""Sign in and sign out. Failed and throttled sign-ins are journaled (the audit log).

Besides the sign-in page, the same endpoints answer JSON (``Accept: application/json``):
an open dashboard whose session ended signs in again in a small in-page dialog and
retries the action, instead of losing the page (and the ring on it) to a redirect.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from flask import Blueprint, current_app, jsonify, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from controller.vocabulary import EventType

from . import security as sec
from .guard import safe_next

bp = Blueprint("auth", __name__)


def _form(status: int = 200, message: str = "", username: str = "") -> BaseResponse:
    return sec.GUARD.login_form(status, message, username)


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
        return redirect(safe_next(request.args.get("next")))
    return _form()


@bp.post("/login")
def login_post() -> BaseResponse:
    attempt = sec.GUARD.check_sign_in(current_app.extensions["login_throttle"], sec.store().authenticate,
                                      lambda action, **data: _journal(EventType(action), **data))
    if attempt.user is None:
        refused = sec.error(attempt.status, attempt.message) if sec.wants_json() else \
            _form(attempt.status, attempt.message, attempt.username)
        if attempt.retry_after is not None:
            refused.headers["Retry-After"] = str(attempt.retry_after)
        return refused
    user, username, address = attempt.user, attempt.username, attempt.address
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
    _journal(EventType.LOGIN_SUCCEEDED, username=user.username, address=address, session=session.id)
    resp: BaseResponse
    if sec.wants_json():
        resp = jsonify(ok=True, csrf=session.csrf, username=user.username, display_name=user.display_name,
                       expires_in=session.expires_in)
    else:
        resp = redirect(safe_next(request.form.get("next")), 303)
    return sec.GUARD.signed_in(resp, token)


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
    return sec.GUARD.sign_out()
