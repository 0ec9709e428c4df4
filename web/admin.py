"""Admin pages: staff accounts, live sessions (revoke) and sign-in throttles (clear).

Admins only; every change is journaled with the admin's display name and username.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, render_template, request

from controller import events as ev
from controller.vocabulary import DecisionCode

from . import security as sec
from .store import NoSuchUser, StoreError
from .throttle import KINDS, LoginThrottle

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _page(status: int = 200, message: str = "", error: str = "") -> Any:
    store = sec.store()
    controller = sec.controller()
    return render_template("admin.html", users=store.users(), sessions=store.sessions(),
                           throttles=_throttle().entries()[:200], message=message, error=error,
                           journal_lost=controller.journal_lost), status


def _throttle() -> LoginThrottle:
    return current_app.extensions["login_throttle"]


def _audit(action: str, **data: Any) -> None:
    sess = sec.current_session()
    try:   # through the core: a full disk releases the reserve; a lost event is counted
        sec.controller().audit(
            ev.ACCOUNT_CHANGED, actor=sess.user.display_name if sess else None,
            actor_username=sess.user.username if sess else None, action=action, **data)
    except Exception:
        current_app.logger.exception("could not journal account change")


@bp.get("")
@sec.require("admin")
def index() -> Any:
    return _page()


@bp.post("/users")
@sec.require("admin")
def add_user() -> Any:
    f = request.form
    try:
        user = sec.store().add_user(f.get("username", "").strip().lower(), f.get("password", ""),
                                    f.get("role", "staff"), f.get("display_name", "").strip() or None)
    except StoreError as exc:
        return _page(400, error=str(exc))
    _audit("add", username=user.username, role=user.role)
    return _page(message=f"Added {user.username} ({user.role}).")


@bp.post("/users/<username>/remove")
@sec.require("admin")
def remove_user(username: str) -> Any:
    sess = sec.current_session()
    if sess and sess.user.username == username:
        return _page(400, error="you cannot remove your own account while signed in")
    try:
        sec.store().remove_user(username)
    except StoreError as exc:
        return _page(404 if isinstance(exc, NoSuchUser) else 400, error=str(exc))
    _audit("remove", username=username)
    return _page(message=f"Removed {username}; their sessions ended.")


@bp.post("/users/<username>/password")
@sec.require("admin")
def set_password(username: str) -> Any:
    try:
        sec.store().set_password(username, request.form.get("password", ""))
    except StoreError as exc:
        return _page(404 if isinstance(exc, NoSuchUser) else 400, error=str(exc))
    _audit("password", username=username)
    return _page(message=f"Password changed for {username}; their sessions ended.")


@bp.post("/sessions/<session_id>/revoke")
@sec.require("admin")
def revoke(session_id: str) -> Any:
    if not sec.store().revoke(session_id[:32]):
        return _page(404, error="no such session (it may have ended already)")
    _audit("revoke_session", session=session_id[:32])
    return _page(message="Session revoked.")


@bp.post("/journal/accept")
@sec.require("admin")
def accept_journal() -> Any:
    """Accept a replaced journal after a journal_lost alarm (journaled by the core)."""
    if request.form.get("confirm") != "yes":
        return _page(400, error="tick the box to confirm you checked why the journal was replaced")
    sess = sec.current_session()
    d = sec.controller().accept_new_journal(sess.user.display_name if sess else None,
                                                                      "panel")
    if not d.ok:
        return _page(503 if d.code == DecisionCode.FAULT else 400, error=d.reason)
    return _page(message="New journal accepted: " + d.reason + ".")
@bp.post("/throttles/clear")
@sec.require("admin")
def clear_throttle() -> Any:
    """Lift one sign-in throttle (kind + address [+ username]) or, with all=1, every one."""
    f = request.form
    if f.get("all") == "1":
        n = _throttle().clear_all()
        _audit("clear_throttle", kind="all", cleared=n)
        return _page(message=f"Cleared {n} sign-in throttle(s).")
    kind, address, username = f.get("kind", ""), f.get("address", "")[:64], f.get("username", "")[:64]
    if kind not in KINDS or not address:
        return _page(400, error=f"kind must be one of {', '.join(KINDS)} and an address is needed")
    if not _throttle().clear(kind, address, username):
        return _page(404, error="no such throttle (it may have expired already)")
    _audit("clear_throttle", kind=kind, address=address, username=username or None)
    return _page(message=f"Cleared the sign-in throttle for {address}"
                         f"{' / ' + username if username and kind != 'address' else ''}.")
