"""What the entry core needs to stay safe through storage faults (pure: no I/O here).

- ``LockdownStore``: durable lockdown state outside the journal (controller/durable.py is the
  file adapter), so a lockdown holds whatever the journal does;
- ``SpaceReserve``: disk space kept back for safety events (a ballast file), released when a
  journal write fails and restored when the disk has room again;
- ``FaultLog``: what could not be journaled while the journal failed, so the
  ``journal_recovered`` event announces the gap with counts instead of leaving it silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from . import events as ev


class LockdownStore(Protocol):
    """Durable lockdown state outside the journal (controller/durable.py is the file adapter)."""
    def save(self, record: dict[str, Any] | None) -> None: ...


class SpaceReserve(Protocol):
    """Disk space kept back for safety events: released on a failed write, restored later."""
    def release(self) -> bool: ...
    def restore(self) -> bool: ...


@dataclass
class FaultLog:
    """What could not be journaled during a fault, for the journal_recovered summary."""
    since: datetime
    presses: int = 0
    missed: dict[str, int] | None = None
    first: datetime | None = None
    last: datetime | None = None

    def note(self, type: str, when: datetime) -> None:
        self.missed = self.missed or {}
        self.missed[type] = self.missed.get(type, 0) + 1
        self.first = self.first or when
        self.last = when

    def summary(self, now: datetime) -> dict[str, Any]:
        missed = dict(self.missed or {})
        return {
            "fault_since": ev.utc_iso(self.since), "fault_until": ev.utc_iso(now),
            "missed_events": sum(missed.values()), "missed_by_type": missed,
            "presses": self.presses, "rings": missed.get(ev.BUZZER_PRESSED, 0),
            "denials": missed.get(ev.ENTRY_DENIED, 0),
            "refused_actions": missed.get(ev.ACTION_REFUSED, 0),
            "first_missed": ev.utc_iso(self.first) if self.first else None,
            "last_missed": ev.utc_iso(self.last) if self.last else None,
        }
