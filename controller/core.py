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
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import wraps
from typing import Any, Callable, Concatenate, ParamSpec, Protocol, TypeVar

from . import events as ev
from .door_settings import DoorSettings
from .faults import FaultLog, LockdownStore, SpaceReserve
from .vocabulary import SELF_CLEARING_ALARMS, UNLOCK_CAP_SECONDS, Alarm, DecisionCode

log = logging.getLogger(__name__)

UNLOCK_CAP = UNLOCK_CAP_SECONDS     # the one cap (controller/vocabulary.py), by its short name
FAULT_RETRY_SECONDS = 10.0
HANDLED_MEMORY = 1000
MAX_PRESS_TIMES = 20


# ------------------------------------------------------------------ ports
class Clock(Protocol):
    def monotonic(self) -> float: ...
    def now(self) -> datetime: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class Strike(Protocol):
    def unlock(self) -> None: ...
    def lock(self) -> None: ...


class Indicators(Protocol):
    def show(self, state: str) -> None: ...  # idle | ringing | approved | denied | lockdown


class Recorder(Protocol):
    def append(self, type: str, request_id: str | None = None, actor: str | None = None,
               **data: Any) -> Any: ...


class _NoIndicators:
    def show(self, state: str) -> None:
        pass


@dataclass(frozen=True)
class Decision:
    """Outcome of a staff action. ``code`` is a vocabulary.DecisionCode; the panel maps it to
    HTTP: ok, unknown (404), handled/expired/lockdown/busy (409), invalid (400), fault (503)."""
    ok: bool
    code: str
    reason: str
    request_id: str | None = None


@dataclass
class _Ring:
    request_id: str
    started_at: float
    started_wall: datetime
    expires_at: float
    presses: int = 1
    last_journaled: float = 0.0
    recorded: bool = True          # False: its buzzer_pressed never reached the journal
    press_times: list[datetime] | None = None   # wall time of each press (the first 20)
    photo: int = 0                 # newest photo captured for this ring (0: none yet)
    photo_at: datetime | None = None
    photo_press: int = 0           # the press that photo shows
    photo_wanted: int = 0          # newest press a photo was asked for
    photo_done: int = 0            # newest press whose capture finished (photo or failure)

    @property
    def photo_pending(self) -> bool:
        """A photo for a later press than the first is still being taken."""
        return self.photo_wanted > 1 and self.photo_wanted > self.photo_done


@dataclass
class _Pulse:
    request_id: str | None
    actor: str
    started_at: float
    ends_at: float
    door_opened: bool = False


@dataclass
class _Lockdown:
    since: datetime
    actor: str
    reason: str
    source: str
    id: str = ""
    journaled: bool = True         # False: started while the journal failed; journaled on recovery

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "since": ev.utc_iso(self.since), "actor": self.actor,
                "reason": self.reason, "source": self.source}


class _RecordFailed(Exception):
    pass


@dataclass(frozen=True)
class Change:
    """One entry of the change feed: what one transition committed and the state it left.

    ``events`` are the journal events the transition committed, in seq order (empty when it
    changed nothing durable); ``status`` is ``EntryCore.status()`` taken under the lock right
    after it. Consumers (MQTT state, panel streams) use these instead of re-reading status.
    """
    events: tuple[Any, ...]
    status: dict[str, Any]


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _transition(method: Callable[Concatenate["EntryCore", _P], _R]) -> Callable[Concatenate["EntryCore", _P], _R]:
    """Run a public command under the core lock, after due timers, then notify."""
    @wraps(method)
    def wrapper(self: "EntryCore", *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            self._run_timers()
            try:
                result = method(self, *args, **kwargs)
            finally:
                self._refresh_indicators()
                self._queue_change()
        self._after_change()
        return result
    return wrapper


class EntryCore:
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

    # ------------------------------------------------------------ listeners
    def add_listener(self, callback: Callable[[Change], None]) -> None:
        """The change feed: callback(change) runs once per transition (commands, timers that
        fired), outside the core lock, in the order the transitions happened."""
        self._listeners.append(callback)

    def _queue_change(self) -> None:
        """Under the lock: close the running transition into one Change (queued, not sent)."""
        events, self._committed = tuple(self._committed), []
        if self._listeners:
            self._feed.append(Change(events, self.status()))

    def _after_change(self) -> None:
        """Outside the lock: deliver queued changes in order. If another thread is delivering,
        it also delivers ours (it re-checks the queue after letting go), so nobody waits."""
        while self._feed:
            if not self._emit_lock.acquire(blocking=False):
                return
            try:
                while True:
                    try:
                        change = self._feed.popleft()
                    except IndexError:
                        break
                    for callback in list(self._listeners):
                        try:
                            callback(change)
                        except Exception:
                            log.exception("core listener failed")
            finally:
                self._emit_lock.release()

    @property
    def clock(self) -> Clock:
        """The one clock of the core: its deadlines (``next_deadline``) are on it."""
        return self._clock

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
        request_id = str(uuid.uuid4())
        ring = _Ring(request_id=request_id, started_at=now, started_wall=self._clock.now(),
                     expires_at=now + self.rules.ring_timeout_seconds, last_journaled=now)
        # Journal first; even if that fails we still show the ring (the visitor is real) but
        # the core is then in fault and will not unlock for it.
        recorded = self._try_record(ev.BUZZER_PRESSED, request_id, presses=1,
                                    expires_in=self.rules.ring_timeout_seconds,
                                    lockdown=self._lockdown is not None)
        ring.recorded = recorded
        ring.press_times = [ring.started_wall]
        self._ring = ring
        if recorded and self._on_ring is not None:
            ring.photo_wanted = 1
            try:
                self._on_ring(request_id)
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
                seen_presses: Any = None) -> Decision:
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
        try:
            self._record(ev.ENTRY_APPROVED, ring.request_id, actor, presses=ring.presses,
                         snapshot=ring.photo if seen_snapshot is None else seen_snapshot)
        except _RecordFailed:
            return Decision(False, DecisionCode.FAULT, "journal unavailable: failing closed", ring.request_id)
        self._close_ring("approved")
        if not self._start_pulse(ring.request_id, actor, "approved"):
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
                       command_id: str | None = None) -> Decision:
        """Lockdown takes effect at once (the safe direction) and is made durable in the lockdown
        store before it is reported as started; then it is journaled. If the journal cannot take
        it now, it is journaled (``during_fault: true``) when the journal recovers."""
        if self._lockdown is not None:
            return Decision(True, DecisionCode.ALREADY, "lockdown already active")
        lk = _Lockdown(self._clock.now(), str(actor), str(reason)[:200], str(source), str(uuid.uuid4()))
        self._lockdown = lk
        if self._pulse is not None:
            self._end_pulse("lockdown")
        durable = self._save_lockdown(lk.record())
        lk.journaled = self._try_record(ev.LOCKDOWN_STARTED, None, lk.actor, reason=lk.reason,
                                        source=lk.source, command_id=command_id, lockdown_id=lk.id)
        if not durable:
            self._raise_alarm(Alarm.LOCKDOWN_NOT_DURABLE)
        return Decision(True, DecisionCode.OK, "lockdown started")

    def restore_lockdown(self, since: datetime, actor: str, reason: str, source: str,
                         lockdown_id: str | None = None, journaled: bool = True) -> None:
        """At start-up: an open lockdown (from the lockdown store or the journal) stays in force
        across a restart (crash, watchdog, power loss, a lost journal). It is written back to the
        store; if the journal never recorded it, it is journaled now (``during_fault: true``)."""
        with self._lock:
            lk = _Lockdown(since, actor, reason, source, lockdown_id or str(uuid.uuid4()), journaled)
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
        self._try_record(ev.DOOR_CLOSED)
        self._clear_alarm(Alarm.HELD_OPEN)
        if self._pulse is not None and self._pulse.door_opened and self.rules.relock_on_close:
            self._end_pulse("door_closed")

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

    # ------------------------------------------------------------ queries
    def next_deadline(self) -> float | None:
        """Monotonic time of the next timer, for the daemon's loop."""
        with self._lock:
            times = []
            if self._pulse is not None:
                times.append(self._pulse.ends_at)
            if self._ring is not None:
                times.append(self._ring.expires_at)
            if self._door_open and Alarm.HELD_OPEN not in self._alarms:
                times.append(self._door_opened_at + self.rules.held_open_seconds)
            if self._denied_until:
                times.append(self._denied_until)
            if self._fault is not None:
                times.append(self._fault_retry_at)
            if Alarm.DISK_FULL in self._alarms:
                times.append(self._reserve_retry_at)
            return min(times) if times else None

    # Queries take the lock so a reader never sees a transition half-done (e.g. the
    # lockdown_ended event committed but the lockdown not yet lifted).
    @property
    def strike_energized(self) -> bool:
        with self._lock:
            return self._pulse is not None

    @property
    def in_lockdown(self) -> bool:
        with self._lock:
            return self._lockdown is not None

    @property
    def fault(self) -> str | None:
        with self._lock:
            return self._fault

    def status(self) -> dict[str, Any]:
        """A JSON-able picture of door state for the panel and the MQTT state topic."""
        with self._lock:
            now = self._clock.monotonic()
            wall = self._clock.now()
            door = "open" if self._door_open else ("unlocked" if self._pulse else "locked")
            ring = None
            if self._ring is not None:
                r = self._ring
                ring = {"request_id": r.request_id, "started": ev.utc_iso(r.started_wall),
                        "presses": r.presses, "seconds_left": round(max(0.0, r.expires_at - now), 1),
                        "press_times": [ev.utc_iso(t) for t in r.press_times or []],
                        "photo": ({"n": r.photo, "at": ev.utc_iso(r.photo_at) if r.photo_at else None,
                                   "press": r.photo_press} if r.photo else None),
                        "photo_pending": r.photo_pending,
                        "expires": ev.utc_iso(wall.fromtimestamp(wall.timestamp() + r.expires_at - now,
                                                                 timezone.utc))}
            pulse = None
            if self._pulse is not None:
                p = self._pulse
                pulse = {"request_id": p.request_id, "actor": p.actor,
                         "seconds_left": round(max(0.0, p.ends_at - now), 1)}
            lockdown = None
            if self._lockdown is not None:
                lk = self._lockdown
                lockdown = {"since": ev.utc_iso(lk.since), "actor": lk.actor, "reason": lk.reason,
                            "source": lk.source}
            return {"door": door, "strike": "unlocked" if self._pulse else "locked",
                    "door_open": self._door_open if self.has_door_contact else None,
                    "ring": ring, "pulse": pulse, "lockdown": lockdown,
                    "alarms": {k: ev.utc_iso(v) for k, v in self._alarms.items()},
                    "fault": self._blocked()}

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
        now = self._clock.monotonic()
        wanted = min(self.rules.unlock_seconds, UNLOCK_CAP)
        pulse = self._pulse
        if pulse is not None:
            new_end = min(max(pulse.ends_at, now + wanted), pulse.started_at + UNLOCK_CAP)
            try:
                self._record(ev.DOOR_UNLOCKED, request_id, actor, reason=reason, extended=True,
                             seconds=round(new_end - now, 3), **data)
            except _RecordFailed:
                return False
            pulse.ends_at = new_end
            return True
        try:
            self._record(ev.DOOR_UNLOCKED, request_id, actor, reason=reason, extended=False,
                         seconds=wanted, **data)
        except _RecordFailed:
            return False
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
        try:
            self._strike.lock()
        except Exception:
            log.exception("strike lock failed")
        self._pulse = None
        self._try_record(ev.DOOR_LOCKED, reason=reason)

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
                                        at=ev.utc_iso(lk.since))
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
        elif self._denied_until:
            state = "denied"
        elif self._ring is not None:
            state = "ringing"
        elif self._lockdown is not None:
            state = "lockdown"
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
