"""The entry core's internals: ring checks, pulses, alarms, timers, journaling and failing
closed. Moved from core.py; ``EntryCore`` (core.py) is built on this class. Every method runs
under the core lock, called from a command or a timer.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from datetime import datetime
from typing import Any, Callable

from . import events as ev
from .core_model import (
    FAULT_RETRY_SECONDS,
    HANDLED_MEMORY,
    UNLOCK_CAP,
    Change,
    Clock,
    Decision,
    Indicators,
    Recorder,
    Strike,
    _Lockdown,
    _Pulse,
    _RecordFailed,
    _Ring,
)
from .door_settings import DoorSettings
from .faults import FaultLog, LockdownStore, SpaceReserve
from .vocabulary import Alarm, DecisionCode

log = logging.getLogger("controller.core")

Item = tuple[str, str | None, str | None, dict[str, Any]]    # an event to journal: type, request, actor, data


class CoreInternals:
    """State and internals of the entry core (its attributes are set by ``EntryCore.__init__``)."""

    rules: DoorSettings
    _lockdown_store: LockdownStore | None
    _on_press_again: Callable[[str, int], None] | None
    _reserve: SpaceReserve | None
    _reserve_retry_at: float
    _fault_log: FaultLog | None
    _journal_lost: str | None
    _recorder: Recorder
    _strike: Strike
    _clock: Clock
    _indicators: Indicators
    _on_ring: Callable[[str], object] | None
    has_door_contact: bool
    _lock: threading.RLock
    _listeners: list[Callable[[Change], None]]
    _committed: list[Any]
    _feed: deque[Change]
    _emit_lock: threading.Lock
    _ring: _Ring | None
    _pulse: _Pulse | None
    _lockdown: _Lockdown | None
    _handled: OrderedDict[str, str]
    _last_press: float | None
    _door_open: bool
    _door_opened_at: float
    _alarms: dict[str, datetime]
    _denied_until: float
    _exit_requested_at: float | None
    _fault: str | None
    _fault_retry_at: float
    _indicator_state: str | None

    # ------------------------------------------------------------ internals
    def _check_ring_action(self, action: str, request_id: Any, actor: Any) -> Decision | None:
        if not isinstance(request_id, str) or not request_id or len(request_id) > 64:
            return self._refuse(action, None, actor, DecisionCode.INVALID, "request id missing or malformed")
        if not _valid_actor(actor):
            return self._refuse(action, request_id, None, DecisionCode.INVALID, "a named staff member is required")
        if self._ring is None or self._ring.request_id != request_id:
            outcome = self._handled.get(request_id)
            if outcome == "expired":
                return self._refuse(action, request_id, actor, DecisionCode.EXPIRED, "the ring has expired")
            if outcome == "lockdown":
                return self._refuse(action, request_id, actor, DecisionCode.LOCKDOWN,
                                    "this ring came during a lockdown: it can never be approved")
            if outcome == "not_recorded":
                return self._refuse(action, request_id, actor, DecisionCode.RING_NOT_RECORDED,
                                    "this ring was never journaled: ask the visitor to press again")
            if outcome is not None:
                return self._refuse(action, request_id, actor, DecisionCode.HANDLED, f"already {outcome}")
            return self._refuse(action, request_id, actor, DecisionCode.UNKNOWN, "no such pending ring")
        if action == "approve" and self._blocked():
            return self._refuse(action, request_id, actor, DecisionCode.FAULT, f"failing closed: {self._blocked()}")
        return None

    def _blocked(self) -> str | None:
        """Why unlocks are refused right now (journal fault or a lost journal), or None."""
        if self._fault is not None:
            return self._fault
        if self._journal_lost is not None:
            return f"journal lost: {self._journal_lost} (an admin must accept the new journal)"
        return None

    def _refuse(self, action: str, request_id: str | None, actor: Any, code: str,
                reason: str) -> Decision:
        """Refusals change no door state but are audited (when the journal can take them)."""
        self._try_record(ev.ACTION_REFUSED, request_id if isinstance(request_id, str) else None,
                         actor if _valid_actor(actor) else None, action=action, code=code, reason=reason)
        return Decision(False, code, reason, request_id if isinstance(request_id, str) else None)

    def _close_ring(self, outcome: str) -> None:
        assert self._ring is not None
        self._handled[self._ring.request_id] = outcome
        while len(self._handled) > HANDLED_MEMORY:
            self._handled.popitem(last=False)
        self._ring = None

    def _start_pulse(self, request_id: str | None, actor: str, reason: str, **data: Any) -> bool:
        """Journal the unlock, then energize. Extends a running pulse only up to the cap."""
        item, new_end = self._unlock_record(request_id, actor, reason, **data)
        try:
            self._record_many([item])
        except _RecordFailed:
            return False
        return self._energize(request_id, actor, new_end)

    def _unlock_record(self, request_id: str | None, actor: str, reason: str,
                       **data: Any) -> tuple[Item, float | None]:
        """The door_unlocked event of an unlock, and the running pulse's new end (None: a new pulse)."""
        now = self._clock.monotonic()
        wanted = min(self.rules.unlock_seconds, UNLOCK_CAP)
        pulse = self._pulse
        if pulse is not None:
            new_end = min(max(pulse.ends_at, now + wanted), pulse.started_at + UNLOCK_CAP)
            return (ev.DOOR_UNLOCKED, request_id, actor,
                    {"reason": reason, "extended": True, "seconds": round(new_end - now, 3), **data}), new_end
        return (ev.DOOR_UNLOCKED, request_id, actor,
                {"reason": reason, "extended": False, "seconds": wanted, **data}), None

    def _energize(self, request_id: str | None, actor: str, new_end: float | None) -> bool:
        """After the unlock is journaled: extend the running pulse, or energize the strike."""
        if new_end is not None and self._pulse is not None:
            self._pulse.ends_at = new_end
            return True
        wanted = min(self.rules.unlock_seconds, UNLOCK_CAP)
        try:
            self._strike.unlock()
            # Time the pulse from the moment the strike energized (after the journal commit),
            # so the visitor gets the full configured time and the cap counts real on-time.
            now = self._clock.monotonic()
            self._pulse = _Pulse(request_id, actor, now, now + wanted)
        except Exception as exc:
            log.exception("strike unlock failed")
            self._end_pulse("fault")
            self._raise_alarm(Alarm.STRIKE_FAILURE, error=str(exc)[:200])
            return False
        return True

    def _end_pulse(self, reason: str) -> None:
        """Lock first (the safe direction), then journal."""
        self._lock_strike()
        self._try_record(ev.DOOR_LOCKED, reason=reason)

    def _lock_strike(self) -> None:
        try:
            self._strike.lock()
        except Exception:
            log.exception("strike lock failed")
        self._pulse = None

    def _raise_alarm(self, alarm: str, **data: Any) -> None:
        if alarm in self._alarms:
            return
        self._alarms[alarm] = self._clock.now()
        self._try_record(ev.ALARM_RAISED, alarm=alarm, **data)

    def _clear_alarm(self, alarm: str, actor: str | None = None) -> None:
        if self._alarms.pop(alarm, None) is not None:
            self._try_record(ev.ALARM_CLEARED, None, actor, alarm=alarm)

    def _run_timers(self) -> bool:
        """Fire every due timer; True when any did."""
        now = self._clock.monotonic()
        fired = False
        if self._pulse is not None and now >= self._pulse.ends_at:
            self._end_pulse("pulse_end")
            fired = True
        if self._ring is not None and now >= self._ring.expires_at:
            ring = self._ring
            self._close_ring("expired")
            self._try_record(ev.RING_EXPIRED, ring.request_id, presses=ring.presses)
            fired = True
        if Alarm.DISK_FULL in self._alarms and now >= self._reserve_retry_at:
            if self._reserve is not None and self._reserve.restore():
                self._clear_alarm(Alarm.DISK_FULL)
            else:
                self._reserve_retry_at = now + FAULT_RETRY_SECONDS
            fired = True
        if (self._door_open and Alarm.HELD_OPEN not in self._alarms
                and now >= self._door_opened_at + self.rules.held_open_seconds):
            self._raise_alarm(Alarm.HELD_OPEN, seconds=self.rules.held_open_seconds)
            fired = True
        if self._denied_until and now >= self._denied_until:
            self._denied_until = 0.0
            fired = True
        if self._fault is not None and now >= self._fault_retry_at:
            summary = self._fault_log.summary(self._clock.now()) if self._fault_log else {}
            try:
                self._note_committed(self._recorder.append(ev.JOURNAL_RECOVERED, fault=self._fault,
                                                           **summary))
            except Exception:
                self._fault_retry_at = now + FAULT_RETRY_SECONDS
            else:
                log.warning("journal recovered after fault: %s (%s)", self._fault, summary)
                self._fault = None
                self._fault_log = None
                self._alarms.pop(Alarm.JOURNAL_FAILURE, None)
                if self._lockdown is not None and not self._lockdown.journaled:
                    self._journal_missed_lockdown()
                if self._ring is not None and not self._ring.recorded:
                    # Never journaled, so never approvable: close it so the next press is a
                    # fresh, journaled ring with its own photo.
                    self._close_ring("not_recorded")
                fired = True
        return fired

    def _record(self, type: str, request_id: str | None = None, actor: str | None = None,
                **data: Any) -> None:
        """Commit an event or enter fault (strike locked) and raise _RecordFailed.

        A failed write releases the disk reserve (if one is held) and is tried once more, so
        safety events reach the journal on a full disk. What still fails is counted for the
        ``journal_recovered`` summary."""
        try:
            self._note_committed(self._recorder.append(type, request_id, actor, **data))
            return
        except Exception as exc:
            error: Exception = exc
        if _no_space(error) and self._release_reserve():
            try:
                self._note_committed(self._recorder.append(type, request_id, actor, **data))
                return
            except Exception as exc:
                error = exc
        self._enter_fault(f"journal write failed: {error}")
        assert self._fault_log is not None
        self._fault_log.note(type, self._clock.now())
        raise _RecordFailed() from error

    def _note_committed(self, event: Any) -> None:
        if event is not None:
            self._committed.append(event)       # for the change feed

    def _record_many(self, items: list[Item]) -> None:
        """Like ``_record`` for events one transition produces together: one journal
        transaction (one fsync) when the recorder can (``append_many``), all or none."""
        many = getattr(self._recorder, "append_many", None)
        if many is None or len(items) == 1:
            for type, request_id, actor, data in items:
                self._record(type, request_id, actor, **data)
            return
        try:
            events = many(items)
        except Exception as exc:
            error: Exception = exc
        else:
            for event in events:
                self._note_committed(event)
            return
        if _no_space(error) and self._release_reserve():
            try:
                events = many(items)
            except Exception as exc:
                error = exc
            else:
                for event in events:
                    self._note_committed(event)
                return
        self._enter_fault(f"journal write failed: {error}")
        assert self._fault_log is not None
        for type, _r, _a, _d in items:
            self._fault_log.note(type, self._clock.now())
        raise _RecordFailed() from error

    def _try_record_many(self, items: list[Item]) -> bool:
        try:
            self._record_many(items)
        except _RecordFailed:
            return False
        return True

    def _release_reserve(self) -> bool:
        """Give the disk reserve back (once per full-disk episode); True when space was freed."""
        if self._reserve is None or Alarm.DISK_FULL in self._alarms:
            return False
        try:
            freed = self._reserve.release()
        except Exception:
            log.exception("disk reserve release failed")
            return False
        if freed:
            self._alarms[Alarm.DISK_FULL] = self._clock.now()
            self._reserve_retry_at = self._clock.monotonic() + FAULT_RETRY_SECONDS
            self._try_record(ev.ALARM_RAISED, alarm=Alarm.DISK_FULL, reserve_released=True)
        return freed

    def _save_lockdown(self, record: dict[str, Any] | None) -> bool:
        """Write the lockdown store (releasing the disk reserve and retrying once if needed)."""
        if self._lockdown_store is None:
            return True
        for attempt in (1, 2):
            try:
                self._lockdown_store.save(record)
                return True
            except Exception as exc:
                log.error("lockdown state could not be written (attempt %d): %s", attempt, exc)
                if attempt == 1 and not self._release_reserve():
                    return False
        return False

    def _journal_missed_lockdown(self) -> bool:
        """Journal a lockdown that started while the journal could not take it (original time)."""
        lk = self._lockdown
        assert lk is not None
        lk.journaled = self._try_record(ev.LOCKDOWN_STARTED, None, lk.actor, reason=lk.reason,
                                        source=lk.source, lockdown_id=lk.id, during_fault=True,
                                        at=ev.utc_iso(lk.since), level=lk.level)
        return lk.journaled

    def _try_record(self, type: str, request_id: str | None = None, actor: str | None = None,
                    **data: Any) -> bool:
        try:
            self._record(type, request_id, actor, **data)
        except _RecordFailed:
            return False
        return True

    def _enter_fault(self, why: str) -> None:
        log.error("entry core failing closed: %s", why)
        try:
            self._strike.lock()
        except Exception:
            log.exception("strike lock failed while entering fault")
        self._pulse = None
        if self._fault is None:
            self._fault = why
            self._fault_retry_at = self._clock.monotonic() + FAULT_RETRY_SECONDS
        if self._fault_log is None:
            self._fault_log = FaultLog(since=self._clock.now())
        self._alarms.setdefault(Alarm.JOURNAL_FAILURE, self._clock.now())

    def _refresh_indicators(self) -> None:
        if self._pulse is not None:
            state = "approved"
        elif self._lockdown is not None:       # a press during a lockdown never shows Ringing
            state = "lockdown"
        elif self._denied_until:
            state = "denied"
        elif self._ring is not None:
            state = "ringing"
        else:
            state = "idle"
        if state != self._indicator_state:
            self._indicator_state = state
            try:
                self._indicators.show(state)
            except Exception:
                log.exception("indicator update failed")


def _no_space(exc: BaseException) -> bool:
    """A write failed for want of space (SQLite's 'database or disk is full', ENOSPC, or the
    I/O error SQLite reports when a WAL write hits ENOSPC), not e.g. a closed journal."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "errno", None) in (28, 122):          # ENOSPC, EDQUOT
            return True
        text = str(seen).lower()
        if "full" in text or "no space" in text or "disk i/o error" in text:
            return True
        seen = seen.__cause__
    return False


def _valid_actor(actor: Any) -> bool:
    return isinstance(actor, str) and 0 < len(actor.strip()) <= 100
