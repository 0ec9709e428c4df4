"""Sign in and sign out of the board; failed and throttled sign-ins are audited in PostgreSQL.

The flow is the campus panel's (web/guard.py, shared with web/auth.py): the throttle of
web/throttle.py, per client address and per (username, address), never per username alone, so
nobody can lock an operator out by guessing wrong in their name. It is kept in memory per
board instance (see its docstring).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, redirect, request
from werkzeug.wrappers import Response

from web.guard import safe_next

from . import security as sec

bp = Blueprint("board_auth", __name__)


@bp.get("/login")
def login() -> Response:
    if sec.current_session() is not None:
        return redirect(safe_next(request.args.get("next")))
    return sec.GUARD.login_form()


def _audit(action: str, username: str, address: str, **detail: Any) -> None:
    sec.store().audit(username, action, address=address, **detail)


@bp.post("/login")
def login_post() -> Response:
    attempt = sec.GUARD.check_sign_in(current_app.extensions["board_throttle"], sec.store().authenticate, _audit,
                                      max_password=1024)
    if attempt.user is None:
        resp = sec.GUARD.login_form(attempt.status, attempt.message, attempt.username)
        if attempt.retry_after is not None:
            resp.headers["Retry-After"] = str(attempt.retry_after)
        return resp
    sec.store().end_session(request.cookies.get(sec.SESSION_COOKIE))
    token, session = sec.store().create_session(attempt.user, attempt.address, request.headers.get("User-Agent", ""))
    sec.store().audit(attempt.user.username, "login_succeeded", address=attempt.address, session=session.id)
    return sec.GUARD.signed_in(redirect(safe_next(request.form.get("next")), 303), token)


@bp.post("/logout")
@sec.require()
def logout() -> Response:
    return sec.GUARD.sign_out()
