"""Event types and their one JSON form.

Every fact the controller learns becomes an Event, committed to the journal
before anyone (panel, MQTT, log) hears about it. This module is the single
place that names event types and turns an Event into JSON, so the panel, the
MQTT feed and the history export can never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

# Visitor and ring lifecycle
BUZZER_PRESSED = "buzzer_pressed"          # a new ring (request_id)
BUZZER_REPEATED = "buzzer_repeated"        # more presses on the same ring (coalesced)
SNAPSHOT_CAPTURED = "snapshot_captured"    # size, sha256
CAMERA_FAILED = "camera_failed"            # reason
ENTRY_APPROVED = "entry_approved"          # actor
ENTRY_DENIED = "entry_denied"              # actor
RING_EXPIRED = "ring_expired"
ACTION_REFUSED = "action_refused"          # an approve/deny/unlock the core would not do: reason
# Strike and door
DOOR_UNLOCKED = "door_unlocked"            # reason: approved | staff_unlock; seconds
DOOR_LOCKED = "door_locked"                # reason: pulse_end | door_closed | lockdown | shutdown | fault
DOOR_OPENED = "door_opened"
DOOR_CLOSED = "door_closed"
ALARM_RAISED = "alarm_raised"              # alarm: held_open | forced_open | tamper | outbox_backlog
ALARM_CLEARED = "alarm_cleared"
# Site-wide
LOCKDOWN_STARTED = "lockdown_started"      # actor, reason, source
LOCKDOWN_ENDED = "lockdown_ended"
COMMAND_REJECTED = "command_rejected"      # source, reason
COMMANDS_REJECTED = "commands_rejected"    # source, total, reasons {category: count}: a flood, summarized
CONTROLLER_STARTED = "controller_started"  # version, previous_stop: none | clean | unclean
CONTROLLER_STOPPED = "controller_stopped"  # reason
JOURNAL_RECOVERED = "journal_recovered"    # the journal accepted writes again after a fault: counts
JOURNAL_ACCEPTED = "journal_accepted"      # an admin accepted a new journal after journal_lost
# Panel (staff sign-in and accounts)
LOGIN_SUCCEEDED = "login_succeeded"        # username, address, session
LOGIN_FAILED = "login_failed"              # username, address
LOGIN_THROTTLED = "login_throttled"        # username, address, limits: address | user_address
ACCOUNT_CHANGED = "account_changed"        # actor; action: add | remove | password | revoke_session
# Intercom (live view and talk; nothing is recorded, only who watched or talked and when)
LIVE_VIEW_STARTED = "live_view_started"    # actor, viewer, mode: webrtc | mjpeg, reason: ring | look
LIVE_VIEW_ENDED = "live_view_ended"        # actor, viewer, mode, reason, seconds
TALK_STARTED = "talk_started"              # actor, viewer
TALK_ENDED = "talk_ended"                  # actor, viewer, reason, seconds
INTERCOM_REFUSED = "intercom_refused"      # actor, category, status, reason (a bad or excess request)
INTERCOM_REFUSALS = "intercom_refusals"    # total, reasons {category: count}, since, seconds: a flood

ALL_TYPES = (
    BUZZER_PRESSED, BUZZER_REPEATED, SNAPSHOT_CAPTURED, CAMERA_FAILED, ENTRY_APPROVED,
    ENTRY_DENIED, RING_EXPIRED, ACTION_REFUSED, DOOR_UNLOCKED, DOOR_LOCKED, DOOR_OPENED,
    DOOR_CLOSED, ALARM_RAISED, ALARM_CLEARED, LOCKDOWN_STARTED, LOCKDOWN_ENDED,
    COMMAND_REJECTED, COMMANDS_REJECTED, CONTROLLER_STARTED, CONTROLLER_STOPPED, JOURNAL_RECOVERED,
    JOURNAL_ACCEPTED,
    LOGIN_SUCCEEDED, LOGIN_FAILED, LOGIN_THROTTLED, ACCOUNT_CHANGED,
    LIVE_VIEW_STARTED, LIVE_VIEW_ENDED, TALK_STARTED, TALK_ENDED, INTERCOM_REFUSED, INTERCOM_REFUSALS,
)

ALARMS = ("held_open", "forced_open", "tamper", "outbox_backlog", "journal_failure", "journal_lost",
          "disk_full", "lockdown_not_durable")


def utc_iso(ts: datetime) -> str:
    """RFC 3339 UTC with millisecond precision and a 'Z' suffix."""
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    id: str
    seq: int
    type: str
    ts: datetime
    campus: str
    door: str
    request_id: str | None = None
    actor: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    epoch: str | None = None       # the journal's id: a new epoch means a new journal, not a re-send

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "seq": self.seq, "type": self.type, "ts": utc_iso(self.ts),
            "campus": self.campus, "door": self.door,
        }
        if self.epoch is not None:
            out["epoch"] = self.epoch
        if self.request_id is not None:
            out["request_id"] = self.request_id
        if self.actor is not None:
            out["actor"] = self.actor
        for key, value in self.data.items():
            out.setdefault(key, value)
        return out

    def to_json(self) -> str:
        """The event's one JSON text, encoded once and shared by every consumer (MQTT publish,
        panel streams): an event is an immutable fact, so its text never changes."""
        text = self.__dict__.get("_json")
        if text is None:
            text = json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)
            object.__setattr__(self, "_json", text)     # frozen dataclass: a cache, not a field
        return text
