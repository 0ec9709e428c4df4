"""The entry core's ports (clock, strike, indicators, recorder) and records (decision, ring,
pulse, lockdown, change). Moved from core.py (pure data; the rules are in core.py and friends).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from . import events as ev
from .vocabulary import UNLOCK_CAP_SECONDS

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


class PhotoRefused(Exception):
    """``on_ring`` takes no photo for this ring (too many rings already wait for one): the core
    journals ``camera_failed`` with the message in the ring's own transition. Why the core and
    not the camera: the refusal happens inside the press, under the core lock, and only the
    core may write there without re-entering itself (a nested transition would deliver the
    change feed under the lock)."""


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
    lockdown: bool = False         # rang (or was pending) during a lockdown: never approvable

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
    level: str = ev.DEFAULT_LOCKDOWN_LEVEL     # secure | lockdown (events.LOCKDOWN_LEVELS)

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "since": ev.utc_iso(self.since), "actor": self.actor,
                "reason": self.reason, "source": self.source, "level": self.level}


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
