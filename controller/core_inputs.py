"""The entry core's sensor, alarm, audit and timer commands (door contact, request-to-exit,
tamper, acknowledge, audit events, tick, shutdown). Moved from core.py; ``EntryCore`` (core.py)
is built on this class.
"""

from __future__ import annotations

import logging
from typing import Any

from . import events as ev
from .core_internals import Item, _valid_actor
from .core_model import Decision
from .core_state import CoreState, _transition
from .vocabulary import SELF_CLEARING_ALARMS, Alarm, DecisionCode

log = logging.getLogger("controller.core")


class CoreInputs(CoreState):
    """Commands from the door's sensors, the alarms, the edge's audit events and the loop."""

    @_transition
    def door_changed(self, is_open: bool) -> None:
        """Door contact edge. Forced-open when it opens with the strike locked."""
        if is_open == self._door_open:
            return
        now = self._clock.monotonic()
        self._door_open = is_open
        if is_open:
            self._door_opened_at = now
            egress = (self._pulse is None and self._exit_requested_at is not None
                      and now - self._exit_requested_at <= self.rules.exit_request_seconds)
            self._try_record(ev.DOOR_OPENED, self._pulse.request_id if self._pulse else None,
                             egress=egress)
            if self._pulse is not None:
                self._pulse.door_opened = True
            elif not egress:
                self._raise_alarm(Alarm.FORCED_OPEN)
            return
        # door_closed, a held-open alarm's end and the relock: one journal transaction
        closed: list[Item] = [(ev.DOOR_CLOSED, None, None, {})]
        if self._alarms.pop(Alarm.HELD_OPEN, None) is not None:
            closed.append((ev.ALARM_CLEARED, None, None, {"alarm": Alarm.HELD_OPEN}))
        if self._pulse is not None and self._pulse.door_opened and self.rules.relock_on_close:
            self._lock_strike()                # lock first (the safe direction), then journal
            closed.append((ev.DOOR_LOCKED, None, None, {"reason": "door_closed"}))
        self._try_record_many(closed)

    def exit_requested(self) -> None:
        """Request-to-exit sensor: a door opening soon after is free egress, not forced entry.

        Egress is mechanical and never needs the strike; this only keeps the forced-open alarm
        meaningful. Not journaled on its own (a PIR fires constantly); the door_opened event
        carries ``egress: true``.
        """
        with self._lock:
            self._exit_requested_at = self._clock.monotonic()

    @_transition
    def tamper_changed(self, active: bool) -> None:
        if active:
            self._raise_alarm(Alarm.TAMPER)
        else:
            self._clear_alarm(Alarm.TAMPER)

    @_transition
    def acknowledge_alarm(self, alarm: str, actor: Any) -> Decision:
        if not _valid_actor(actor):
            return Decision(False, DecisionCode.INVALID, "a named staff member is required")
        if alarm not in self._alarms or alarm in SELF_CLEARING_ALARMS:
            return Decision(False, DecisionCode.UNKNOWN, f"no active alarm {alarm!r} to acknowledge")
        if alarm == Alarm.HELD_OPEN and self._door_open:
            return Decision(False, DecisionCode.BUSY, "the door is still held open")
        self._clear_alarm(alarm, actor=str(actor))
        return Decision(True, DecisionCode.OK, "acknowledged")

    @_transition
    def audit(self, type: str, actor: str | None = None, **data: Any) -> bool:
        """Journal an adapter's audit event (sign-ins, account changes) the way the core's own
        are: a full disk releases the reserve, and what cannot be written is counted for
        ``journal_recovered``. True when it was journaled."""
        if type not in ev.ALL_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        return self._try_record(type, None, actor, **data)

    @_transition
    def lost_event(self, type: str, error: str) -> None:
        """An adapter's own journal write failed (a photo, a refused MQTT command): fail closed
        like a failed write of the core's, and count it for the ``journal_recovered`` summary,
        so no gap in the audit is silent."""
        self._enter_fault(f"journal write failed: {error}"[:300])
        assert self._fault_log is not None
        self._fault_log.note(str(type), self._clock.now())

    @_transition
    def use_reserve(self) -> bool:
        """An adapter's write failed on a full disk (e.g. a staff sign-in): release the disk
        reserve so it can retry; raises the ``disk_full`` alarm. True when space was freed."""
        return self._release_reserve()

    @_transition
    def set_alarm(self, alarm: str, active: bool, **data: Any) -> None:
        """Alarms owned by adapters (e.g. MQTT outbox backlog)."""
        if active:
            self._raise_alarm(alarm, **data)
        else:
            self._clear_alarm(alarm)

    def tick(self) -> None:
        """Process due timers (the daemon's loop calls this; tests call it after moving the clock).

        Listeners hear about a tick only when a timer fired: an idle door costs nobody anything.
        """
        with self._lock:
            fired = self._run_timers()
            self._refresh_indicators()
            if fired:
                self._queue_change()
        if fired:
            self._after_change()

    def shutdown(self, reason: str = "shutdown") -> None:
        """Drive the strike locked and journal it. Never raises: it runs on every exit path."""
        with self._lock:
            try:
                self._strike.lock()
            except Exception:
                log.exception("strike lock failed during shutdown")
            if self._pulse is not None:
                self._pulse = None
                self._try_record(ev.DOOR_LOCKED, reason=reason)
            self._ring = None
            self._refresh_indicators()
