"""Human words for every event type, reason, alarm and refused action: the ONE table.

Why one table: the dashboard's activity feed, History, the CSV export and the simulated
campus console must say the same thing for the same fact, and staff must never read a raw
code such as ``pulse_end`` or ``staff_unlock``. The panel serves ``TABLE`` to the browser
(a data attribute, since the CSP forbids inline script) and attaches ``describe(event)`` to
every event it streams. Pure module: no Flask, no I/O.
"""

from __future__ import annotations

from typing import Any

from . import events as ev
from . import visitor
from .vocabulary import Alarm

TYPES: dict[str, str] = {
    ev.BUZZER_PRESSED: "Buzzer pressed",
    ev.BUZZER_REPEATED: "Buzzer pressed again",
    ev.SNAPSHOT_CAPTURED: "Photo taken",
    ev.CAMERA_FAILED: "Camera failed",
    ev.ENTRY_APPROVED: "Entry approved",
    ev.ENTRY_DENIED: "Entry denied",
    ev.RING_EXPIRED: "Missed: nobody answered",
    ev.ACTION_REFUSED: "Action refused",
    ev.DOOR_UNLOCKED: "Door unlocked",
    ev.DOOR_LOCKED: "Door locked",
    ev.DOOR_OPENED: "Door opened",
    ev.DOOR_CLOSED: "Door closed",
    ev.ALARM_RAISED: "Alarm",
    ev.ALARM_CLEARED: "Alarm cleared",
    ev.LOCKDOWN_STARTED: "LOCKDOWN started",
    ev.LOCKDOWN_ENDED: "Lockdown ended",
    ev.LOCKDOWN_LEVEL_CHANGED: "Lockdown level changed",
    ev.COMMAND_REJECTED: "District command rejected",
    ev.COMMANDS_REJECTED: "District commands rejected (summary of a flood)",
    ev.CONTROLLER_STARTED: "Controller started",
    ev.CONTROLLER_STOPPED: "Controller stopped",
    ev.JOURNAL_RECOVERED: "Journal working again",
    ev.JOURNAL_ACCEPTED: "New journal accepted",
    ev.LOGIN_SUCCEEDED: "Signed in",
    ev.LOGIN_FAILED: "Sign-in failed",
    ev.LOGIN_THROTTLED: "Sign-in blocked (too many attempts)",
    ev.ACCOUNT_CHANGED: "Staff account changed",
    ev.LIVE_VIEW_STARTED: "Live view started",
    ev.LIVE_VIEW_ENDED: "Live view ended",
    ev.TALK_STARTED: "Office talking to the door",
    ev.TALK_ENDED: "Office stopped talking",
    ev.INTERCOM_REFUSED: "Live view request refused",
    ev.INTERCOM_REFUSALS: "Live view requests refused (summary of a flood)",
}

EXIT = "Exit: door opened from inside"     # door_opened with egress true (request-to-exit sensor)

# Why the strike unlocked or locked again (door_unlocked / door_locked ``reason``).
REASONS: dict[str, str] = {
    "approved": "visitor approved",
    "staff_unlock": "staff pressed Unlock now",
    "pulse_end": "unlock time over",
    "door_closed": "door closed again",
    "lockdown": "lockdown",
    "lockdown_ended": "closed when the lockdown ended: entry was refused",
    "panic button": "panic button",
    "shutdown": "controller stopping",
    "startup": "controller starting",
    "fault": "fault, failing closed",
    "stop requested": "controller stopping",
    "hangup": "closed by staff",
    "connect_timeout": "connection never completed",
    "dropped": "viewer limit: the oldest idle view was closed",
    "failed": "connection lost",
    "peer_closed": "closed by the viewer",
    "refused": "offer refused",
    "released": "Talk released",
    "view_ended": "live view ended",
    "media_fault": "media engine fault",
}

ALARMS: dict[str, str] = {        # every vocabulary.Alarm (a test checks)
    Alarm.HELD_OPEN: "Door held open",
    Alarm.FORCED_OPEN: "Door forced open",
    Alarm.TAMPER: "Station tamper",
    Alarm.OUTBOX_BACKLOG: "District link backlog",
    Alarm.JOURNAL_FAILURE: "Journal cannot be written — door kept locked",
    Alarm.STRIKE_FAILURE: "Strike failure",
    Alarm.JOURNAL_LOST: "Journal lost or replaced — door kept locked until an admin accepts it (Admin page)",
    Alarm.DISK_FULL: "Disk full — using the reserve kept for safety events",
    Alarm.LOCKDOWN_NOT_DURABLE: "Lockdown could not be saved to disk — it holds until restart",
    Alarm.PANIC: "PANIC (duress) button pressed",
}

# The two lockdown levels (Standard Response Protocol); both refuse entry, neither blocks exit.
LEVELS: dict[str, str] = {
    "secure": "SECURE",
    "lockdown": "LOCKDOWN",
}
LEVEL_HINTS: dict[str, str] = {
    "secure": "threat outside: entry refused, normal activity inside",
    "lockdown": "threat inside or near: entry refused, locks, lights, out of sight",
}


ACTIONS: dict[str, str] = {
    "approve": "approve", "deny": "deny", "unlock": "unlock now", "unlock_now": "unlock now",
    "lockdown_start": "start lockdown", "lockdown_end": "end lockdown", "ack": "acknowledge alarm",
    "add": "add account", "remove": "remove account", "password": "change password",
    "revoke_session": "sign out a session",
}

TABLE: dict[str, Any] = {"types": TYPES, "exit": EXIT, "reasons": REASONS, "alarms": ALARMS, "actions": ACTIONS,
                         "levels": LEVELS, "level_hints": LEVEL_HINTS, "purposes": visitor.PURPOSES}


def _words(code: Any, table: dict[str, str]) -> str:
    """A known code's words; an unknown one (a newer daemon, a free-text reason) made readable."""
    text = str(code or "")
    if text in table:
        return table[text]
    if text.startswith("signal "):
        return "controller stopped by " + text[len("signal "):]
    return text.replace("_", " ")


def type_label(event_type: str, data: dict[str, Any] | None = None) -> str:
    """The name of one event in a list (History's Type column, the CSV's event column)."""
    if event_type == ev.DOOR_OPENED and (data or {}).get("egress"):
        return EXIT
    if event_type == ev.LOCKDOWN_STARTED and (data or {}).get("level") == "secure":
        return "SECURE started (entry refused)"
    return TYPES.get(event_type, event_type.replace("_", " ").capitalize())


def reason(code: Any) -> str:
    return _words(code, REASONS)


def alarm(code: Any) -> str:
    return _words(code, ALARMS)


def action(code: Any) -> str:
    return _words(code, ACTIONS)


def level(code: Any) -> str:
    return _words(code, LEVELS)


def note(data: dict[str, Any]) -> str:
    """The one short detail worth a column: which alarm, why the door locked, what was refused."""
    if data.get("alarm") == "panic" and data.get("source") == "desk_button":
        return f"{alarm('panic')} at the desk panic button"
    if data.get("alarm") == "panic" and data.get("by"):
        return f"{alarm('panic')} by {data['by']} on the panel"
    if data.get("alarm"):
        return alarm(data["alarm"])
    if data.get("visitor"):
        return "Visitor: " + visitor.describe(data["visitor"])
    if data.get("level") and data.get("previous_level"):
        return f"{level(data['previous_level'])} → {level(data['level'])}"
    if data.get("reason"):
        return reason(data["reason"])[:120]
    if data.get("action"):
        return action(data["action"])
    if data.get("address"):
        return "from " + str(data["address"])[:60]
    return ""


def describe(e: dict[str, Any]) -> str:
    """One sentence for an event (its ``to_dict()`` form): the activity feed and the console."""
    kind = str(e.get("type", ""))
    who = f" by {e['actor']}" if e.get("actor") else ""
    if kind == ev.DOOR_OPENED:
        return type_label(kind, e)
    if kind in (ev.DOOR_UNLOCKED, ev.DOOR_LOCKED):
        return f"{TYPES[kind]}{who} ({reason(e.get('reason'))})"
    if kind == ev.ALARM_RAISED:
        return f"Alarm: {note(e) if e.get('alarm') == 'panic' else alarm(e.get('alarm'))}"
    if kind == ev.LOCKDOWN_STARTED:
        return f"{level(e.get('level') or 'lockdown')} started{who}" + (
            f": {e['reason']}" if e.get("reason") else "")
    if kind == ev.LOCKDOWN_LEVEL_CHANGED:
        return f"Lockdown level changed{who}: {note(e)}"
    if kind == ev.RING_EXPIRED and e.get("reason") == "lockdown_ended":
        return "Missed: rang during the lockdown (entry was refused)"
    if kind == ev.ALARM_CLEARED:
        return f"Alarm cleared: {alarm(e.get('alarm'))}{who}"
    if kind == ev.ACTION_REFUSED:
        return f"Refused {action(e.get('action'))}{who}: {e.get('reason') or 'refused'}"
    if kind in (ev.CAMERA_FAILED, ev.COMMAND_REJECTED, ev.CONTROLLER_STOPPED) and e.get("reason"):
        return f"{TYPES[kind]}{who}: {reason(e.get('reason'))}"
    if kind == ev.INTERCOM_REFUSALS:
        return f"Live view requests refused: {e.get('total', '?')} in {e.get('seconds', '?')} s (a flood, summarized)"
    if kind == ev.INTERCOM_REFUSED:
        return f"Live view request refused{who}: {e.get('reason') or e.get('category') or 'refused'}"
    if kind == ev.COMMANDS_REJECTED:
        return f"District commands rejected: {e.get('total', '?')} in {e.get('seconds', '?')} s (a flood, summarized)"
    if kind in (ev.ENTRY_APPROVED, ev.ENTRY_DENIED):
        visit = f" — visitor: {visitor.describe(e['visitor'])}" if e.get("visitor") else ""
        return ("Approved" if kind == ev.ENTRY_APPROVED else "Denied") + who + visit
    return type_label(kind, e) + who
