"""Event types and their one JSON form.

Every fact the controller learns becomes an Event, committed to the journal
before anyone (panel, MQTT, log) hears about it. controller/vocabulary.py names
the event types; this module is the single place that turns an Event into JSON,
so the panel, the MQTT feed and the history export can never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .vocabulary import DEFAULT_LOCKDOWN_LEVEL as DEFAULT_LOCKDOWN_LEVEL  # re-exported: ev.DEFAULT_LOCKDOWN_LEVEL
from .vocabulary import LOCKDOWN_LEVELS as LOCKDOWN_LEVELS  # re-exported: ev.LOCKDOWN_LEVELS
from .vocabulary import EventType

# The event types by their old module-level names (``ev.BUZZER_PRESSED``): members of EventType.
BUZZER_PRESSED = EventType.BUZZER_PRESSED
BUZZER_REPEATED = EventType.BUZZER_REPEATED
SNAPSHOT_CAPTURED = EventType.SNAPSHOT_CAPTURED
CAMERA_FAILED = EventType.CAMERA_FAILED
ENTRY_APPROVED = EventType.ENTRY_APPROVED
ENTRY_DENIED = EventType.ENTRY_DENIED
RING_EXPIRED = EventType.RING_EXPIRED
ACTION_REFUSED = EventType.ACTION_REFUSED
DOOR_UNLOCKED = EventType.DOOR_UNLOCKED
DOOR_LOCKED = EventType.DOOR_LOCKED
DOOR_OPENED = EventType.DOOR_OPENED
DOOR_CLOSED = EventType.DOOR_CLOSED
ALARM_RAISED = EventType.ALARM_RAISED
ALARM_CLEARED = EventType.ALARM_CLEARED
LOCKDOWN_STARTED = EventType.LOCKDOWN_STARTED
LOCKDOWN_ENDED = EventType.LOCKDOWN_ENDED
LOCKDOWN_LEVEL_CHANGED = EventType.LOCKDOWN_LEVEL_CHANGED
COMMAND_REJECTED = EventType.COMMAND_REJECTED
COMMANDS_REJECTED = EventType.COMMANDS_REJECTED
CONTROLLER_STARTED = EventType.CONTROLLER_STARTED
CONTROLLER_STOPPED = EventType.CONTROLLER_STOPPED
JOURNAL_RECOVERED = EventType.JOURNAL_RECOVERED
JOURNAL_ACCEPTED = EventType.JOURNAL_ACCEPTED
LOGIN_SUCCEEDED = EventType.LOGIN_SUCCEEDED
LOGIN_FAILED = EventType.LOGIN_FAILED
LOGIN_THROTTLED = EventType.LOGIN_THROTTLED
ACCOUNT_CHANGED = EventType.ACCOUNT_CHANGED
LIVE_VIEW_STARTED = EventType.LIVE_VIEW_STARTED
LIVE_VIEW_ENDED = EventType.LIVE_VIEW_ENDED
TALK_STARTED = EventType.TALK_STARTED
TALK_ENDED = EventType.TALK_ENDED
INTERCOM_REFUSED = EventType.INTERCOM_REFUSED
INTERCOM_REFUSALS = EventType.INTERCOM_REFUSALS

ALL_TYPES: tuple[EventType, ...] = tuple(EventType)


# One encoder, built once: ``json.dumps`` with options builds a new JSONEncoder per call, and an
# event is encoded on the press path, between its commit and its publish.
_EVENT_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def utc_iso(ts: datetime) -> str:
    """RFC 3339 UTC with millisecond precision and a 'Z' suffix."""
    if ts.tzinfo is not timezone.utc:          # the journal's own times already are (no conversion)
        ts = ts.astimezone(timezone.utc)
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
            "id": self.id, "seq": self.seq, "type": self.type,
            "ts": self.__dict__.get("_iso") or utc_iso(self.ts),     # the journal's, when it set it
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

    def encode_now(self, iso_ts: str) -> None:
        """Encode the event's JSON text now (the journal calls it before the commit, while the
        encoder is warm), with its ``ts`` text as already formatted (``utc_iso``'s form)."""
        object.__setattr__(self, "_iso", iso_ts)       # frozen dataclass: caches, not fields
        self.to_json()

    def to_json(self) -> str:
        """The event's one JSON text, encoded once and shared by every consumer (MQTT publish,
        panel streams): an event is an immutable fact, so its text never changes."""
        text = self.__dict__.get("_json")
        if text is None:
            text = _EVENT_JSON(self.to_dict())
            object.__setattr__(self, "_json", text)     # frozen dataclass: a cache, not a field
        return text
