"""The dashboard and the staff actions (approve, deny, unlock now, lockdown, alarm acknowledge).

Every action goes to the controller with the signed-in staff member's display
name as the actor; the core decides and audits. This module only maps the
core's Decision codes to HTTP statuses.
"""

from __future__ import annotations

import json
import logging
from functools import wraps
from typing import Any, Callable

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from controller import events as ev
from controller import labels
from controller import visitor as visitor_record
from controller.api import Decision, DoorApi, JournalError, attributed_to
from controller.vocabulary import Alarm, DecisionCode

from . import security as sec

log = logging.getLogger(__name__)
bp = Blueprint("panel", __name__)

DECISION_STATUS: dict[str, int] = {
    DecisionCode.OK: 200, DecisionCode.ALREADY: 200, DecisionCode.UNKNOWN: 404, DecisionCode.HANDLED: 409,
    DecisionCode.EXPIRED: 409, DecisionCode.LOCKDOWN: 409, DecisionCode.BUSY: 409, DecisionCode.INVALID: 400,
    DecisionCode.FAULT: 503, DecisionCode.RING_NOT_RECORDED: 409, DecisionCode.STALE: 409}
ALARM_NAMES = tuple(Alarm)


def controller() -> DoorApi:
    return sec.controller()


def labelled(e: Any) -> dict[str, Any]:
    """An event as the dashboard gets it: its JSON form plus ``label``, its human sentence."""
    d = e.to_dict()
    d["label"] = labels.describe(d)
    return d


MISSED_SHOWN = 10
MISSED_LOOKBACK = 50        # expired rings scanned per state: bounded work, however many are acked


def missed_rings(c: DoorApi, acked: set[str]) -> list[dict[str, Any]]:
    """Rings that expired unanswered and no staff member has acknowledged yet (newest first).

    Acknowledgements live in the panel's store (``missed_acks``), not the core: seeing a
    missed visit is the office's bookkeeping, not door state."""
    out: list[dict[str, Any]] = []
    for e in c.history(types=[ev.RING_EXPIRED], limit=MISSED_LOOKBACK):
        if e.request_id and e.request_id not in acked:
            out.append({"request_id": e.request_id, "expired": ev.utc_iso(e.ts), "reason": e.data.get("reason"),
                        "snapshot": c.snapshot_path(e.request_id) is not None})
        if len(out) >= MISSED_SHOWN:
            break
    return out


def panel_state(c: DoorApi, recent: bool = True, acked: set[str] | None = None,
                missed: Callable[[], list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Everything a freshly (re)connected dashboard needs to draw itself. ``missed`` gives the
    missed rings instead of reading them (the live stream keeps them between changes)."""
    status = c.status()
    ring = status.get("ring")
    if ring:
        ring["snapshot"] = c.snapshot_path(ring["request_id"]) is not None
    try:
        health = c.panel_health()
    except Exception as exc:       # a failing health probe must not take the dashboard down
        log.exception("health check failed")
        health = {"mqtt": {"enabled": bool(c.settings.mqtt.enabled), "connected": False},
                  "outbox_depth": None, "camera": dict(zip(("ok", "error"), c.camera_state(), strict=True)),
                  "disk": {"free_bytes": None, "total_bytes": None}, "fault": str(exc)[:200]}
    state: dict[str, Any] = {"status": status, "health": health}
    if missed is not None:
        state["missed"] = missed()
    elif acked is not None:
        try:
            state["missed"] = missed_rings(c, acked)
        except JournalError:
            state["missed"] = []
    if recent:
        try:
            state["recent"] = [labelled(e) for e in c.history(limit=15)]
        except JournalError:        # fault: the core already fails closed and raises an alarm
            state["recent"] = []
    return state


def staff_action(view: Any) -> Any:
    """Staff actions run attributed to the signed-in account: journaled with ``actor_username``."""
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        sess = sec.current_session()
        assert sess is not None  # @require runs first
        with attributed_to(sess.user.username):
            return view(*args, **kwargs)
    return wrapper


def decision_response(d: Decision) -> Response:
    resp = jsonify(ok=d.ok, code=d.code, reason=d.reason, request_id=d.request_id)
    resp.status_code = DECISION_STATUS.get(d.code, 409)
    return resp


def _field(name: str, max_len: int = 200) -> str:
    value = request.form.get(name, "")
    return value[:max_len]


def _actor() -> str:
    sess = sec.current_session()
    assert sess is not None  # guaranteed by @require
    return sess.user.display_name


@bp.get("/")
@sec.require()
def dashboard() -> str:
    return render_template("dashboard.html", labels_json=json.dumps(labels.TABLE, sort_keys=True),
                           purposes=visitor_record.PURPOSES, level_hints=labels.LEVEL_HINTS,
                           panic_starts_lockdown=controller().settings.panic.starts_lockdown)


@bp.get("/api/status")
@sec.require()
def status() -> Response:
    sess = sec.current_session()
    assert sess is not None  # guaranteed by @require
    state = panel_state(controller(), acked=current_app.extensions["panel_store"].missed_acked())
    state["streams"] = current_app.extensions["stream_hub"].share(sess.id, sess.user.username)
    return jsonify(state)


@bp.post("/api/approve")
@sec.require()
@staff_action
def approve() -> Response:
    rid = _field("request_id", 100)
    if not rid:
        return sec.error(400, "request_id is required")
    seen: list[int | None] = []
    for name in ("snapshot", "presses"):     # what the staff member was looking at
        raw = _field(name, 12)
        if raw and not raw.isdigit():
            return sec.error(400, f"{name} must be a number")
        seen.append(int(raw) if raw else None)
    # Optional visitor record (name, purpose, ID checked): checked here for a clear 400.
    try:
        visitor = visitor_record.parse(request.form.get("visitor_name"), request.form.get("visitor_purpose"),
                                       request.form.get("visitor_id_checked"))
    except visitor_record.VisitorError as exc:
        return sec.error(400, str(exc))
    # A caller that does not say how many presses it saw (an old page from a browser cache, a
    # script) saw at most the first: it cannot approve a ring that has been pressed again.
    return decision_response(controller().approve(rid, _actor(), seen[0], 1 if seen[1] is None else seen[1],
                                                  visitor))


@bp.post("/api/deny")
@sec.require()
@staff_action
def deny() -> Response:
    rid = _field("request_id", 100)
    if not rid:
        return sec.error(400, "request_id is required")
    return decision_response(controller().deny(rid, _actor()))


@bp.post("/api/unlock")
@sec.require()
@staff_action
def unlock() -> Response:
    if request.form.get("confirm") != "yes":
        return sec.error(400, "unlock needs confirm=yes (the panel asks first)")
    return decision_response(controller().unlock_now(_actor(), _field("note") or "panel"))


@bp.post("/api/lockdown/start")
@sec.require()
@staff_action
def lockdown_start() -> Response:
    """Start a lockdown at a level (secure or lockdown, default lockdown), or change the level."""
    level = request.form.get("level", ev.DEFAULT_LOCKDOWN_LEVEL)
    if level not in ev.LOCKDOWN_LEVELS:
        return sec.error(400, f"level: use one of {', '.join(ev.LOCKDOWN_LEVELS)}")
    return decision_response(controller().start_lockdown(_actor(), _field("reason"), "panel", level=level))


@bp.post("/api/panic")
@sec.require()
@staff_action
def panic() -> Response:
    """The panic (duress) control (held for 1 s on the panel): alarm at once, then a lockdown."""
    if request.form.get("held") != "yes":
        return sec.error(400, "panic needs held=yes (the panel's control is held for 1 s)")
    raised = controller().panic_pressed(_actor(), "panel")
    return jsonify(ok=True, code="ok" if raised else "already",
                   reason="panic alarm raised" if raised else "a panic alarm is already active")


@bp.post("/api/lockdown/end")
@sec.require()
@staff_action
def lockdown_end() -> Response:
    if request.form.get("confirm") != "yes":
        return sec.error(400, "ending a lockdown needs confirm=yes (the panel asks first)")
    return decision_response(controller().end_lockdown(_actor(), _field("reason"), "panel"))


@bp.post("/api/alarm/ack")
@sec.require()
@staff_action
def alarm_ack() -> Response:
    alarm = _field("alarm", 40)
    if alarm not in ALARM_NAMES:
        return sec.error(400, f"unknown alarm; use one of {', '.join(ALARM_NAMES)}")
    return decision_response(controller().acknowledge_alarm(alarm, _actor()))


@bp.post("/api/missed/ack")
@sec.require()
def missed_ack() -> Response:
    """A staff member saw a missed visit: it leaves the Missed list on every dashboard."""
    rid = _field("request_id", 100)
    if not rid or rid not in {m["request_id"] for m in missed_rings(controller(), set())}:
        return sec.error(404, "no missed ring with that request id")
    sess = sec.current_session()
    assert sess is not None  # guaranteed by @require
    current_app.extensions["panel_store"].ack_missed(rid, sess.user.username)
    current_app.extensions["stream_hub"].refresh()
    return jsonify(ok=True, request_id=rid)
