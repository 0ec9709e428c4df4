"""Operators start and end a lockdown for one campus or the whole district.

Two steps: ``GET /lockdown`` shows what will happen (which campus, how many doors) and asks
for a reason; only ``POST /lockdown`` with ``confirm=yes`` and the session's CSRF token
publishes. Every attempt that reaches the broker step is audited in PostgreSQL (the
``audit`` table: who, what, which campus, the command id the doors echo, the topics sent and
how many the broker acknowledged), including a broker that cannot be reached; the row is
written before publishing, so nothing goes out unaudited. A viewer gets 403.
The whole district is one message on the district-wide topic, so doors the database has never
heard from get it too; one campus is one message per known door of it (the contract has no
campus-wide topic). ``GET /lockdown/<command id>`` then shows which doors answered and which
known doors have not yet (answers.py).
The board has no route and no topic that unlocks a door: lockdown is the only command.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from flask import Blueprint, current_app, render_template, request

from . import answers
from . import security as sec
from .config import SLUG
from .publisher import ACTIONS, LEVELS, LockdownPublisher, PublishError, new_command_id

bp = Blueprint("board_lockdown", __name__)
log = logging.getLogger(__name__)

MAX_REASON = 200


class BadRequest(ValueError):
    pass


def _target(form: Any) -> tuple[str, str, list[tuple[str, str]]]:
    """(action, campus or 'all', doors) from the request; BadRequest names the field at fault."""
    action = str(form.get("action", ""))
    if action not in ACTIONS:
        raise BadRequest(f"action: use one of {', '.join(ACTIONS)}")
    campus = str(form.get("campus", ""))
    if campus != "all" and not SLUG.match(campus):
        raise BadRequest("campus: a campus slug, or 'all' for the whole district")
    hub = current_app.extensions["board_hub"]
    grid = hub.refresh() or hub.latest
    if grid is None:
        raise LookupError("the district database is not answering; the lockdown was NOT sent")
    campuses = {c["campus"]: c for c in grid["campuses"]}
    if campus != "all" and campus not in campuses:
        raise BadRequest(f"campus: {campus[:64]!r} is not a campus of this district")
    chosen = list(campuses.values()) if campus == "all" else [campuses[campus]]
    doors = [(c["campus"], d["door"]) for c in chosen for d in c["doors"]]
    return action, campus, doors


@bp.get("/lockdown")
@sec.require("operator")
def confirm_page() -> Any:
    try:
        action, campus, doors = _target(request.args)
    except BadRequest as exc:
        return sec.error(400, str(exc))
    except LookupError as exc:
        return sec.error(503, str(exc))
    return render_template("board_lockdown.html", action=action, campus=campus, doors=doors, max_reason=MAX_REASON)


@bp.post("/lockdown")
@sec.require("operator")
def send() -> Any:
    try:
        action, campus, doors = _target(request.form)
        reason = " ".join(str(request.form.get("reason", "")).split())
        if len(reason) > MAX_REASON:
            raise BadRequest(f"reason: at most {MAX_REASON} characters")
        if action == "start" and not reason:
            raise BadRequest("reason: say why (the doors journal it and staff see it)")
        if request.form.get("confirm") != "yes":
            raise BadRequest("confirm: tick the confirmation to send the command")
        if not doors and campus != "all":       # district-wide goes out even when no door is known
            raise BadRequest(f"campus: no doors known for {campus!r} yet; nothing to send")
        level = str(request.form.get("level", "lockdown"))
        if level not in LEVELS:
            raise BadRequest(f"level: use one of {', '.join(LEVELS)}")
    except BadRequest as exc:
        return sec.error(400, str(exc))
    except LookupError as exc:
        return sec.error(503, str(exc))
    session = sec.current_session()
    assert session is not None                 # require() checked it
    user = session.user
    address = request.remote_addr or ""
    publisher: LockdownPublisher = current_app.extensions["board_publisher"]
    command_id = new_command_id()
    by = f"{user.display_name} (district)"
    store = sec.store()
    # The audit row is written BEFORE anything is published: no lockdown leaves the board
    # unaudited, and a database that fails here stops it with a 503 while nothing was sent.
    audit_id = store.audit(user.username, f"lockdown_{action}", None if campus == "all" else campus, address,
                           command_id=command_id, outcome="sending", doors=len(doors), reason=reason,
                           level=level, broker_account=publisher.account_for(user.username)[0])
    try:
        result = publisher.publish(action, doors, by=by, reason=reason, command_id=command_id, level=level,
                                   board_user=user.username, district_wide=campus == "all")
    except PublishError as exc:
        store.audit_update(audit_id, outcome="not_sent", error=str(exc))
        return sec.error(503, f"the lockdown command was NOT sent: {exc}. Use the campus panels or the "
                              "phone tree now.")
    audit_error = ""
    try:
        store.audit_update(audit_id, outcome="sent" if not result.failed else "partly_sent", topics=result.topics,
                           acknowledged=len(result.acknowledged), failed=result.failed)
    except psycopg.Error as exc:    # the command is out: say so, never "nothing was changed"
        log.error("lockdown %s was sent but its audit row %d was not completed: %s", command_id, audit_id, exc)
        audit_error = "the audit row was written before sending but its outcome could not be recorded"
    return render_template("board_lockdown_sent.html", action=action, campus=campus, result=result,
                           doors=doors, audit_error=audit_error), 200


@bp.get("/lockdown/<command_id>")
@sec.require()
def answered(command_id: str) -> Any:
    """The doors' answers to a command sent from the board, and the known doors still waiting."""
    if not answers.COMMAND_ID.match(command_id):
        return sec.error(400, "command id: letters, digits, '.', '_', ':' or '-' (at most 64)")
    hub = current_app.extensions["board_hub"]
    found = answers.status(current_app.extensions["board_pool"], command_id, hub.latest or hub.refresh() or {})
    if found is None:
        return sec.error(404, f"the board sent no lockdown command {command_id!r}")
    return render_template("board_lockdown_answers.html", sent=found)
