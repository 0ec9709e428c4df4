"""The entry core: the one owner of door state.

Pure logic. It imports none of gpiozero, paho, picamera2 or Flask and reads
time only from an injected Clock, so every rule (expiry at the exact
boundary, pulse end, held-open) is tested in microseconds.

Every input (buzzer press, staff approval, lockdown command, door contact,
timer) is a method call that runs entirely under one lock, so transitions
are serialized: two approvals racing for one ring give exactly one pulse.

Safety rules enforced here:
- the strike is energized only by an approval of the pending, unexpired ring
  it names, or by an audited staff unlock, and only after the journal has
  committed the decision;
- on-time is bounded by the configured seconds and never beyond UNLOCK_CAP
  measured from the start of the pulse, however many approvals arrive;
- lockdown refuses every unlock and ends a running pulse; presses are still
  recorded;
- if the journal cannot be written the core fails closed: strike locked,
  unlocks refused, a ``journal_failure`` alarm, until a write succeeds again; what it
  could not journal meanwhile is counted in ``journal_recovered`` (controller/faults.py);
- a lockdown is saved to the lockdown store before it is reported as started and is
  lifted only by a journaled end; a failed write first releases the disk reserve;
- only a journaled ring can be approved (``ring_not_recorded``), and only by someone who
  saw its newest press and photo (``stale``: "a new press: look again");
- a journal that is not the installation's (``journal_lost``) refuses every unlock until
  an admin accepts it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict, deque
from datetime import datetime
from typing import Any, Callable

from . import events as ev
from . import visitor as visitor_record
from .core_inputs import CoreInputs
from .core_internals import _valid_actor
from .core_model import (
    MAX_PRESS_TIMES,
    UNLOCK_CAP,
    Change,
    Clock,
    Decision,
    Indicators,
    PhotoRefused,
    Recorder,
    Strike,
    SystemClock,
    _Lockdown,
    _NoIndicators,
    _Pulse,
    _RecordFailed,
    _Ring,
)
from .core_state import _transition
from .door_settings import DoorSettings
from .faults import FaultLog, LockdownStore, SpaceReserve
from .ids import IDS
from .vocabulary import Alarm, DecisionCode

log = logging.getLogger(__name__)

__all__ = ["EntryCore", "Decision", "Change", "Clock", "SystemClock", "Strike", "Indicators", "Recorder",
           "UNLOCK_CAP"]


class EntryCore(CoreInputs):
    def __init__(self, recorder: Recorder, strike: Strike, rules: DoorSettings | None = None, *,
                 clock: Clock | None = None, indicators: Indicators | None = None,
                 on_ring: Callable[[str], object] | None = None, has_door_contact: bool = False,
                 lockdown_store: LockdownStore | None = None, reserve: SpaceReserve | None = None,
                 on_press_again: Callable[[str, int], None] | None = None):
        self.rules = rules or DoorSettings()
        self._lockdown_store = lockdown_store
        self._on_press_again = on_press_again
        self._reserve = reserve
        self._reserve_retry_at = 0.0
        self._fault_log: FaultLog | None = None
        self._journal_lost: str | None = None
        self._recorder = recorder
        self._strike = strike
        self._clock = clock or SystemClock()
        self._indicators = indicators or _NoIndicators()
        self._on_ring = on_ring
        self.has_door_contact = has_door_contact
        self._lock = threading.RLock()
        self._listeners: list[Callable[[Change], None]] = []
        self._committed: list[Any] = []              # events of the running transition
        self._feed: deque[Change] = deque()          # changes queued under the lock, in order
        self._emit_lock = threading.Lock()           # one thread delivers the feed at a time
        self._ring: _Ring | None = None
        self._pulse: _Pulse | None = None
        self._lockdown: _Lockdown | None = None
        self._handled: OrderedDict[str, str] = OrderedDict()
        self._last_press: float | None = None
        self._door_open = False
        self._door_opened_at = 0.0
        self._alarms: dict[str, datetime] = {}
        self._denied_until = 0.0
        self._exit_requested_at: float | None = None
        self._fault: str | None = None
        self._fault_retry_at = 0.0
        self._indicator_state: str | None = None
        # Safety first: whatever the hardware adapter did, drive locked now.
        self._strike.lock()
        self._refresh_indicators()

    # ------------------------------------------------------------ commands
    @_transition
    def press(self) -> Decision:
        """A buzzer press (already an edge from the GPIO adapter). Debounced and coalesced."""
        now = self._clock.monotonic()
        if self._last_press is not None and (now - self._last_press) * 1000 < self.rules.debounce_ms:
            return Decision(False, DecisionCode.DEBOUNCED, "press within the debounce window",
                            self._ring.request_id if self._ring else None)
        self._last_press = now
        try:
            return self._press(now)
        finally:
            if self._fault_log is not None:      # counted for the journal_recovered summary
                self._fault_log.presses += 1

    def _press(self, now: float) -> Decision:
        ring = self._ring
        if ring is not None:
            ring.presses += 1
            if ring.press_times is not None and len(ring.press_times) < MAX_PRESS_TIMES:
                ring.press_times.append(self._clock.now())
            if now - ring.last_journaled >= self.rules.repeat_press_journal_seconds:
                ring.last_journaled = now
                self._try_record(ev.BUZZER_REPEATED, ring.request_id, presses=ring.presses)
            if ring.recorded and self._on_press_again is not None:
                # a new press may be a new person: take a fresh photo (coalesced by the camera)
                ring.photo_wanted = ring.presses
                try:
                    self._on_press_again(ring.request_id, ring.presses)
                except Exception:
                    log.exception("snapshot request failed for %s", ring.request_id)
            return Decision(True, DecisionCode.COALESCED, "counted against the pending ring", ring.request_id)
        request_id = IDS.take()       # drawn ahead (controller/ids.py): not on the press path
        # Journal first (and with it the MQTT publish): even if that fails we still show the
        # ring (the visitor is real) but the core is then in fault and will not unlock for it.
        # The ring's own bookkeeping comes after: it is not in the event, so the district does
        # not wait for it (under the core lock throughout, so nobody sees one without the other).
        recorded = self._try_record(ev.BUZZER_PRESSED, request_id, presses=1,
                                    expires_in=self.rules.ring_timeout_seconds,
                                    lockdown=self._lockdown is not None,
                                    **({"level": self._lockdown.level} if self._lockdown else {}))
        wall = self._clock.now()      # the ring's own clock reading: after its event, not before
        ring = _Ring(request_id=request_id, started_at=now, started_wall=wall,
                     expires_at=now + self.rules.ring_timeout_seconds, last_journaled=now,
                     recorded=recorded, press_times=[wall], lockdown=self._lockdown is not None)
        self._ring = ring
        if recorded and self._on_ring is not None:
            ring.photo_wanted = 1
            try:
                self._on_ring(request_id)
            except PhotoRefused as exc:   # the camera's queue is full: this ring goes without a photo
                ring.photo_done = 1
                self._try_record(ev.CAMERA_FAILED, request_id, reason=str(exc)[:300], press=1)
            except Exception:
                log.exception("snapshot request failed for %s", request_id)
        return Decision(True, DecisionCode.RINGING, "new ring", request_id)

    @_transition
    def photo_done(self, request_id: str, snapshot: int | None, press: int,
                   at: datetime | None) -> None:
        """The camera finished a capture for a ring (``snapshot`` None: it failed)."""
        ring = self._ring
        if ring is None or ring.request_id != request_id:
            return
        ring.photo_done = max(ring.photo_done, int(press))
        if snapshot is not None and snapshot > ring.photo:
            ring.photo, ring.photo_at, ring.photo_press = int(snapshot), at or self._clock.now(), int(press)

    @_transition
    def approve(self, request_id: Any, actor: Any, seen_snapshot: Any = None,
                seen_presses: Any = None, visitor: Any = None) -> Decision:
        """Staff approval of one pending ring: journal it, then pulse the strike once.

        The panel names what the staff member was looking at (photo number and press count).
        If a newer press or photo exists, or a photo for a newer press is still being taken,
        the approval is refused (``stale``): a new press may be a different person."""
        refused = self._check_ring_action("approve", request_id, actor)
        if refused:
            return refused
        if self._lockdown is not None:
            return self._refuse("approve", request_id, actor, DecisionCode.LOCKDOWN, "lockdown is active")
        ring = self._ring
        assert ring is not None
        if ring.lockdown:
            return self._refuse("approve", request_id, actor, DecisionCode.LOCKDOWN,
                                "this ring came during a lockdown: it can never be approved")
        try:
            record = visitor_record.check(visitor)
        except visitor_record.VisitorError as exc:
            return self._refuse("approve", request_id, actor, DecisionCode.INVALID, str(exc))
        if not ring.recorded:
            return self._refuse("approve", request_id, actor, DecisionCode.RING_NOT_RECORDED,
                                "this ring was never journaled: ask the visitor to press again")
        if seen_snapshot is not None or seen_presses is not None:
            if not all(v is None or (isinstance(v, int) and 0 <= v <= 1_000_000)
                       for v in (seen_snapshot, seen_presses)):
                return self._refuse("approve", request_id, actor, DecisionCode.INVALID, "snapshot/presses malformed")
            if ((seen_presses is not None and seen_presses < ring.presses)
                    or (seen_snapshot is not None and seen_snapshot < ring.photo)
                    or ring.photo_pending):
                return self._refuse("approve", request_id, actor, DecisionCode.STALE, "a new press: look again")
        # The approval and its unlock are one journal transaction (one fsync), then the strike.
        unlock, new_end = self._unlock_record(ring.request_id, actor, "approved")
        try:
            self._record_many([(ev.ENTRY_APPROVED, ring.request_id, actor,
                                {"presses": ring.presses,
                                 "snapshot": ring.photo if seen_snapshot is None else seen_snapshot,
                                 **({"visitor": record} if record else {})}), unlock])
        except _RecordFailed:
            return Decision(False, DecisionCode.FAULT, "journal unavailable: failing closed", ring.request_id)
        self._close_ring("approved")
        if not self._energize(ring.request_id, actor, new_end):
            return Decision(False, DecisionCode.FAULT, "strike could not be driven; door stays locked",
                            ring.request_id)
        return Decision(True, DecisionCode.OK, "approved", ring.request_id)

    @_transition
    def deny(self, request_id: Any, actor: Any) -> Decision:
        refused = self._check_ring_action("deny", request_id, actor)
        if refused:
            return refused
        ring = self._ring
        assert ring is not None
        # Deny is the safe direction: it ends the ring even if the journal write fails.
        self._try_record(ev.ENTRY_DENIED, ring.request_id, actor, presses=ring.presses)
        self._close_ring("denied")
        self._denied_until = self._clock.monotonic() + self.rules.denied_indicator_seconds
        return Decision(True, DecisionCode.OK, "denied", ring.request_id)

    @_transition
    def unlock_now(self, actor: Any, note: str = "") -> Decision:
        """Staff 'unlock now' without a ring: allowed, audited, refused in lockdown or fault."""
        if not _valid_actor(actor):
            return Decision(False, DecisionCode.INVALID, "a named staff member is required")
        if self._lockdown is not None:
            return self._refuse("unlock", None, actor, DecisionCode.LOCKDOWN, "lockdown is active")
        if self._blocked():
            return self._refuse("unlock", None, actor, DecisionCode.FAULT, f"failing closed: {self._blocked()}")
        if not self._start_pulse(None, actor, "staff_unlock", note=str(note)[:200]):
            return Decision(False, DecisionCode.FAULT, "journal or strike unavailable; door stays locked")
        return Decision(True, DecisionCode.OK, "unlocked")

    @_transition
    def start_lockdown(self, actor: str, reason: str = "", source: str = "panel",
                       command_id: str | None = None, level: str = ev.DEFAULT_LOCKDOWN_LEVEL) -> Decision:
        """Lockdown takes effect at once (the safe direction) and is made durable in the lockdown
        store before it is reported as started; then it is journaled. If the journal cannot take
        it now, it is journaled (``during_fault: true``) when the journal recovers.

        ``level`` is secure or lockdown; starting at another level while one is active changes
        the level (journaled as ``lockdown_level_changed``). A pending ring becomes a refused one."""
        if level not in ev.LOCKDOWN_LEVELS:
            return Decision(False, DecisionCode.INVALID, f"unknown lockdown level {str(level)[:40]!r}; "
                            f"use {' or '.join(ev.LOCKDOWN_LEVELS)}")
        if self._ring is not None:
            self._ring.lockdown = True
        if self._lockdown is not None:
            return self._change_level(self._lockdown, level, str(actor), str(reason)[:200], str(source),
                                      command_id)
        lk = _Lockdown(self._clock.now(), str(actor), str(reason)[:200], str(source), str(uuid.uuid4()),
                       level=level)
        self._lockdown = lk
        if self._pulse is not None:
            self._end_pulse("lockdown")
        durable = self._save_lockdown(lk.record())
        lk.journaled = self._try_record(ev.LOCKDOWN_STARTED, None, lk.actor, reason=lk.reason,
                                        source=lk.source, command_id=command_id, lockdown_id=lk.id,
                                        level=lk.level)
        if not durable:
            self._raise_alarm(Alarm.LOCKDOWN_NOT_DURABLE)
        return Decision(True, DecisionCode.OK, "lockdown started")

    def _change_level(self, lk: _Lockdown, level: str, actor: str, reason: str, source: str,
                      command_id: str | None) -> Decision:
        """Secure -> lockdown (escalation) or back: saved, then journaled; the lockdown holds."""
        if lk.level == level:
            return Decision(True, DecisionCode.ALREADY, f"{level} already active")
        previous, lk.level = lk.level, level
        durable = self._save_lockdown(lk.record())
        self._try_record(ev.LOCKDOWN_LEVEL_CHANGED, None, actor, reason=reason, source=source,
                         command_id=command_id, lockdown_id=lk.id, level=level,
                         previous_level=previous, since=ev.utc_iso(lk.since))
        if not durable:
            self._raise_alarm(Alarm.LOCKDOWN_NOT_DURABLE)
        return Decision(True, DecisionCode.OK, f"level changed from {previous} to {level}")

    def restore_lockdown(self, since: datetime, actor: str, reason: str, source: str,
                         lockdown_id: str | None = None, journaled: bool = True,
                         level: str = ev.DEFAULT_LOCKDOWN_LEVEL) -> None:
        """At start-up: an open lockdown (from the lockdown store or the journal) stays in force
        across a restart (crash, watchdog, power loss, a lost journal). It is written back to the
        store; if the journal never recorded it, it is journaled now (``during_fault: true``)."""
        with self._lock:
            lk = _Lockdown(since, actor, reason, source, lockdown_id or str(uuid.uuid4()), journaled,
                           level if level in ev.LOCKDOWN_LEVELS else ev.DEFAULT_LOCKDOWN_LEVEL)
            self._lockdown = lk
            if self._pulse is not None:
                self._end_pulse("lockdown")
            self._save_lockdown(lk.record())
            if not journaled:
                self._journal_missed_lockdown()
            self._refresh_indicators()
            self._queue_change()
        self._after_change()

    @_transition
    def end_lockdown(self, actor: str, reason: str = "", source: str = "panel",
                     command_id: str | None = None) -> Decision:
        """Ending a lockdown is journaled first: if it cannot be recorded, lockdown stays."""
        if self._lockdown is None:
            return Decision(True, DecisionCode.ALREADY, "no lockdown active")
        lk = self._lockdown
        if not lk.journaled and not self._journal_missed_lockdown():
            return Decision(False, DecisionCode.FAULT, "journal unavailable: lockdown stays")
        try:
            self._record(ev.LOCKDOWN_ENDED, None, str(actor), reason=str(reason)[:200],
                         source=source, command_id=command_id, lockdown_id=lk.id)
        except _RecordFailed:
            return Decision(False, DecisionCode.FAULT, "journal unavailable: lockdown stays")
        self._lockdown = None
        # The end is journaled; if the file cannot go now, start-up sees the matching
        # lockdown_ended and clears it then.
        self._save_lockdown(None)
        self._clear_alarm(Alarm.LOCKDOWN_NOT_DURABLE)
        if self._ring is not None and self._ring.lockdown:
            # Refused during the lockdown, so never approvable: it closes now and shows as a
            # missed visit (a ring_expired the Missed list picks up) for staff to follow up.
            ring = self._ring
            self._close_ring("lockdown")
            self._try_record(ev.RING_EXPIRED, ring.request_id, presses=ring.presses,
                             reason="lockdown_ended")
        return Decision(True, DecisionCode.OK, "lockdown ended")

    def journal_lost(self, why: str, previous: list[str]) -> None:
        """At start-up: the journal is not the installation's (missing, emptied or foreign).
        The door stays locked and unlocks are refused until an admin accepts the new journal."""
        with self._lock:
            self._journal_lost = why
            self._raise_alarm(Alarm.JOURNAL_LOST, reason=why[:300], previous_epochs=previous)
            self._refresh_indicators()
            self._queue_change()
        self._after_change()

    @_transition
    def accept_new_journal(self, actor: Any, source: str, epoch: str, previous: list[str]) -> Decision:
        """An admin accepts the journal in use as the installation's. Journaled first."""
        if not _valid_actor(actor):
            return Decision(False, DecisionCode.INVALID, "a named admin is required")
        if self._journal_lost is None:
            return Decision(True, DecisionCode.ALREADY, "the journal is the installation's; nothing to accept")
        try:
            self._record(ev.JOURNAL_ACCEPTED, None, str(actor), source=source, epoch=epoch,
                         previous_epochs=previous, reason=self._journal_lost[:300])
        except _RecordFailed:
            return Decision(False, DecisionCode.FAULT, "journal unavailable: the new journal is not accepted")
        self._journal_lost = None
        self._clear_alarm(Alarm.JOURNAL_LOST, actor=str(actor))
        return Decision(True, DecisionCode.OK, "new journal accepted")

    @property
    def journal_is_lost(self) -> bool:
        with self._lock:
            return self._journal_lost is not None
