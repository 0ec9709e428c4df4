"""Which doors answered a lockdown sent from the board, and which known doors have not yet.

Why a page of its own: a district-wide lockdown is one message on the district-wide topic (so
doors the database does not know get it too), so the broker's acknowledgement says nothing
about doors. The doors' answers do: every door answers a command with an event carrying its
``command_id`` (docs/mqtt.md), the recorder files it, and this page reads them from PostgreSQL.
A door not in the database at sending time shows up here as soon as its answer is recorded;
a known door of the command's scope with no answer yet is listed as waiting (an offline door
gets the command from its broker session when it returns, and answers then).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from controller import events as ev

COMMAND_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
ANSWER_TYPES = [str(t) for t in (ev.LOCKDOWN_STARTED, ev.LOCKDOWN_ENDED, ev.LOCKDOWN_LEVEL_CHANGED,
                                  ev.COMMAND_REJECTED)]
# Door clocks may be off and an offline door answers when it returns: look back a day before
# the audit row, so the (type, ts) index bounds the scan to a day of lockdown answers.
CLOCK_SLACK = timedelta(days=1)
SENT_SQL = """
SELECT at, username, action, campus, detail FROM audit
 WHERE action IN ('lockdown_start', 'lockdown_end') AND detail->>'command_id' = %s
 ORDER BY id DESC LIMIT 1
"""
ANSWERS_SQL = """
SELECT campus, door, type, ts, data->>'reason'
  FROM events
 WHERE type = ANY(%s) AND ts >= %s AND data->>'command_id' = %s
 ORDER BY ts, id
 LIMIT 10000
"""


def verdict(type_: str, reason: str | None) -> str:
    """One word for the board: applied, already (it had taken effect), or refused."""
    if type_ != ev.COMMAND_REJECTED:
        return "applied"
    return "already" if (reason or "").startswith("already") else "refused"


def status(pool: Any, command_id: str, grid: dict[str, Any]) -> dict[str, Any] | None:
    """The sent command (from the audit), its answers per door and the known doors still
    waiting; None when the board never sent this command id."""
    with pool.connection() as conn:
        sent = conn.execute(SENT_SQL, (command_id,)).fetchone()
        if sent is None:
            return None
        at, username, action, campus, detail = sent
        rows = conn.execute(ANSWERS_SQL, (ANSWER_TYPES, at - CLOCK_SLACK, command_id)).fetchall()
    answered: dict[tuple[str, str], dict[str, Any]] = {}
    for door_campus, door, type_, ts, reason in rows:
        if campus is not None and door_campus != campus:
            continue                          # only the campus the command went to
        # the first answer counts: a re-delivered command is answered again with "already: ..."
        answered.setdefault((door_campus, door), {"campus": door_campus, "door": door, "type": type_, "ts": ts,
                                                  "reason": reason or "", "verdict": verdict(type_, reason)})
    known = [(c["campus"], d["door"], bool(d.get("online")))
             for c in grid.get("campuses", []) if campus is None or c["campus"] == campus for d in c["doors"]]
    waiting = [{"campus": c, "door": d, "online": online} for c, d, online in known if (c, d) not in answered]
    return {"command_id": command_id, "at": at, "username": username, "action": action,
            "campus": campus or "all", "detail": detail, "answered": sorted(answered.values(),
                                                                            key=lambda a: (a["campus"], a["door"])),
            "waiting": waiting}
