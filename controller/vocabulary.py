"""The one vocabulary: event types, alarms, decision (refusal) codes, staff roles, the unlock cap.

Every part that names one of these (the core, the journal, labels, the panel, the MQTT link)
takes it from here, so a name cannot drift between them. The enums are ``StrEnum``: a member
*is* its string, so it goes into JSON, SQLite and MQTT payloads unchanged and compares equal
to the text read back from the journal.

Standard library only: the core imports this module.
"""

from __future__ import annotations

from enum import StrEnum

UNLOCK_CAP_SECONDS = 30.0
"""The strike's on-time never exceeds this, whatever the config says (config refuses more; the
core caps every pulse; the GPIO backstop forces the strike off one second later)."""


class EventType(StrEnum):
    """Every fact the journal records (docs/mqtt.md lists their fields)."""
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
    ALARM_RAISED = "alarm_raised"              # alarm: one of Alarm
    ALARM_CLEARED = "alarm_cleared"
    # Site-wide
    LOCKDOWN_STARTED = "lockdown_started"      # actor, reason, source
    LOCKDOWN_ENDED = "lockdown_ended"
    LOCKDOWN_LEVEL_CHANGED = "lockdown_level_changed"   # level, previous_level (e.g. secure -> lockdown)
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


class Alarm(StrEnum):
    """Conditions the core raises (``alarm_raised``) and clears; the panel shows each one."""
    HELD_OPEN = "held_open"
    FORCED_OPEN = "forced_open"
    TAMPER = "tamper"
    OUTBOX_BACKLOG = "outbox_backlog"
    JOURNAL_FAILURE = "journal_failure"
    STRIKE_FAILURE = "strike_failure"
    JOURNAL_LOST = "journal_lost"
    DISK_FULL = "disk_full"
    LOCKDOWN_NOT_DURABLE = "lockdown_not_durable"
    PANIC = "panic"                            # duress: the panel's hold control or the desk button


class LockdownLevel(StrEnum):
    """The Standard Response Protocol's two levels. Both refuse every unlock and never block
    exit; the level only changes what people are told. "secure": threat outside, normal
    activity inside; "lockdown": threat inside or near."""
    SECURE = "secure"
    LOCKDOWN = "lockdown"


LOCKDOWN_LEVELS = tuple(level.value for level in LockdownLevel)
DEFAULT_LOCKDOWN_LEVEL = LockdownLevel.LOCKDOWN.value


SELF_CLEARING_ALARMS = frozenset({Alarm.JOURNAL_FAILURE, Alarm.JOURNAL_LOST, Alarm.DISK_FULL,
                                  Alarm.LOCKDOWN_NOT_DURABLE})
"""Alarms staff cannot acknowledge away: they clear when the condition does (or an admin acts)."""


class DecisionCode(StrEnum):
    """The code of every answer to a command (``Decision.code``): the refusal codes, and the few
    that mean done. The panel maps each to an HTTP status, the MQTT link to its answer."""
    OK = "ok"
    ALREADY = "already"                        # nothing to do: it is already so
    COALESCED = "coalesced"                    # a press on the ring already waiting
    RINGING = "ringing"                        # a new ring
    DEBOUNCED = "debounced"                    # contact bounce, ignored
    INVALID = "invalid"                        # malformed input
    UNKNOWN = "unknown"                        # no such ring / alarm
    HANDLED = "handled"                        # the ring was already answered
    EXPIRED = "expired"                        # the ring expired
    LOCKDOWN = "lockdown"                      # lockdown refuses every unlock
    BUSY = "busy"                              # the condition is still present
    STALE = "stale"                            # a newer press or photo: look again
    RING_NOT_RECORDED = "ring_not_recorded"    # the ring never reached the journal
    FAULT = "fault"                            # the journal or the strike failed: fail closed


class Role(StrEnum):
    """Panel account roles."""
    STAFF = "staff"
    ADMIN = "admin"
