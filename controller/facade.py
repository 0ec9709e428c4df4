"""The running controller: the parts the daemon built, behind the facade (controller/api.py).

``Controller`` implements ``api.DoorApi``; ``Service`` is what the daemon starts around it
(the MQTT link, the panel server).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Protocol

from . import __version__
from .api import ChangeListener, DoorApi, EventListener, OutboxStore, Recorder
from .config import Settings
from .core import Clock, Decision, EntryCore
from .durable import DiskReserve, FileLockdownStore
from .events import Event
from .faults import CountingRecorder
from .gpio import DoorHardware, factory_name, uses_mock_pins
from .identity import JournalIdentity
from .journal import Journal, JournalError
from .journal_reader import HistoryRow, JournalReader
from .panic import Panic
from .snapshots import SnapshotService
from .vocabulary import DEFAULT_LOCKDOWN_LEVEL, DecisionCode


class Service(Protocol):
    """Something the daemon starts after the core and stops before it (MQTT link, web server).
    Any object with these members is one; subclass it for the do-nothing defaults."""

    name: str = "service"

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def health(self) -> dict[str, Any]:
        return {}


@dataclass(eq=False)
class Controller:
    """The running door controller: the one object the panel and the MQTT link talk to, through
    the typed facade it implements (controller/api.py, ``DoorApi``).

    Staff actions go through here to the core; nothing outside the core touches the strike.
    The parts (core, journal, snapshots, hardware) are the composition's: callers outside
    controller/ use the facade methods below, never the parts.
    """

    settings: Settings
    journal: Journal
    core: EntryCore
    hardware: DoorHardware
    snapshots: SnapshotService
    clock: Clock
    services: list[Service] = field(default_factory=list)
    simulated: bool = False
    lockdown_store: FileLockdownStore | None = None
    reserve: DiskReserve | None = None
    identity: JournalIdentity | None = None
    journal_lost: str | None = None   # why the journal is not the installation's (start-up check)
    lock_file: Any = None
    panic: Panic | None = None
    started_monotonic: float = field(default_factory=time.monotonic)
    reader: JournalReader | None = field(default=None, repr=False)   # the panel's read-only history

    # ---- commands (delegates, so callers never need the core's internals)
    def press(self) -> Decision:
        return self.core.press()

    def approve(self, request_id: Any, actor: Any, seen_snapshot: Any = None,
                seen_presses: Any = None, visitor: Any = None) -> Decision:
        return self.core.approve(request_id, actor, seen_snapshot, seen_presses, visitor)

    def deny(self, request_id: Any, actor: Any) -> Decision:
        return self.core.deny(request_id, actor)

    def unlock_now(self, actor: Any, note: str = "") -> Decision:
        return self.core.unlock_now(actor, note)

    def start_lockdown(self, actor: str, reason: str = "", source: str = "panel",
                       command_id: str | None = None, level: str = DEFAULT_LOCKDOWN_LEVEL) -> Decision:
        return self.core.start_lockdown(actor, reason, source, command_id, level)

    def panic_pressed(self, by: str, source: str = "panel") -> bool:
        """The panic (duress) control: alarm at once, then (by config) a lockdown. controller/panic.py."""
        assert self.panic is not None
        return self.panic.trigger(source, by)

    def end_lockdown(self, actor: str, reason: str = "", source: str = "panel",
                     command_id: str | None = None) -> Decision:
        return self.core.end_lockdown(actor, reason, source, command_id)

    def accept_new_journal(self, actor: Any, source: str = "panel") -> Decision:
        """An admin accepts the journal in use after a ``journal_lost`` alarm (journaled, then
        the installation identity is rewritten to this journal's epoch)."""
        previous = self.identity.previous() if self.identity else []
        decision = self.core.accept_new_journal(actor, source, self.journal.epoch, previous)
        if decision.ok and decision.code == DecisionCode.OK and self.identity is not None:
            problems = self.identity.write(self.journal.epoch)
            if problems and problems[0].startswith(str(self.identity.paths[0])):
                return Decision(False, "fault", "accepted in the journal, but journal.id could not be "
                                f"written ({problems[0]}); the alarm returns at the next start")
            self.journal_lost = None
        return decision

    def acknowledge_alarm(self, alarm: str, actor: Any) -> Decision:
        return self.core.acknowledge_alarm(alarm, actor)

    # ---- audit and adapter events
    def audit(self, type: str, actor: str | None = None, **data: Any) -> bool:
        """A panel event (sign-in, account change) into the door journal; False if it was lost."""
        return self.core.audit(type, actor, **data)

    def use_reserve(self) -> bool:
        return self.core.use_reserve()

    def adapter_recorder(self) -> Recorder:
        """A recorder for adapter events (MQTT refusals): a lost write is counted by the core."""
        return CountingRecorder(self.journal, self.core.lost_event)

    def set_alarm(self, alarm: str, active: bool, **data: Any) -> None:
        self.core.set_alarm(alarm, active, **data)

    def outbox(self) -> OutboxStore:
        return self.journal

    # ---- change feed
    def subscribe_events(self, listener: EventListener) -> None:
        self.journal.subscribe(listener)

    def unsubscribe_events(self, listener: EventListener) -> None:
        self.journal.unsubscribe(listener)

    def subscribe_changes(self, listener: ChangeListener) -> None:
        self.core.add_listener(listener)

    # ---- read model
    def live_camera(self) -> Any:
        """The running camera, for the intercom's live frames (intercom/service.py)."""
        return self.snapshots.camera

    def indicator_pattern(self) -> str:
        """What the visitor station shows as a whole (idle, ringing, approved, denied, lockdown)."""
        leds = getattr(self.hardware, "leds", None)
        return str(getattr(leds, "state", "idle"))

    @property
    def on_mock_pins(self) -> bool:
        return uses_mock_pins(self.hardware.pin_factory)

    def _history_reader(self) -> JournalReader:
        """The panel's reads go to read-only connections of their own, never the writer's. A
        closed journal (stopping, or a fault) reads as unavailable there too."""
        if self.journal.closed:
            raise JournalError("journal is closed")
        if self.reader is None:
            self.reader = JournalReader(self.journal.path, self.journal.campus, self.journal.door,
                                        self.journal.epoch)
        return self.reader

    def history_page(self, types: Iterable[str] | None = None, since: datetime | None = None,
                     until: datetime | None = None, before_seq: int | None = None,
                     limit: int = 50) -> list[HistoryRow]:
        """Newest first, filtered by types and a [since, until) range, each ring with its
        outcome: one query per page, on a read-only connection (History and the CSV export)."""
        return self._history_reader().page(types, since, until, before_seq, limit)

    def history(self, types: Iterable[str] | None = None, since: datetime | None = None,
                until: datetime | None = None, before_seq: int | None = None,
                limit: int = 50) -> list[Event]:
        """The events of ``history_page`` (Missed visits, the dashboard's recent list)."""
        return [row.event for row in self.history_page(types, since, until, before_seq, limit)]

    def close_reader(self) -> None:
        if self.reader is not None:
            self.reader.close()

    def snapshot_path(self, request_id: str, n: int | None = None) -> Path | None:
        return self.snapshots.path_for(request_id, n)

    def camera_state(self) -> tuple[bool, str | None]:
        return self.snapshots.ok, self.snapshots.last_error

    def journal_position(self) -> tuple[str, int]:
        return self.journal.epoch, self.journal.last_seq

    def now(self) -> datetime:
        """UTC wall time on the controller's one clock."""
        return self.clock.now()

    def _mqtt_service(self) -> Service | None:
        if not self.settings.mqtt.enabled:
            return None
        return next((s for s in self.services if s.name == "mqtt"), None)

    def panel_health(self) -> dict[str, Any]:
        """The few health facts staff need at a glance (full detail stays in ``health()``).

        Read straight from their sources, not through ``health()``: the live stream sends this
        with every state change, and the full report (every service's details, the GPIO
        factory, uptime) cost more than the rest of the state. The values are the same and as fresh."""
        mqtt = self._mqtt_service()
        connected = getattr(mqtt, "connected", None)
        if mqtt is not None and connected is None:
            connected = (mqtt.health() or {}).get("connected")
        try:
            usage = shutil.disk_usage(self.journal.path.parent)
            disk: dict[str, int | None] = {"free_bytes": usage.free, "total_bytes": usage.total}
        except OSError:
            disk = {"free_bytes": None, "total_bytes": None}
        return {
            "mqtt": {"enabled": bool(self.settings.mqtt.enabled), "connected": bool(connected)},
            "outbox_depth": self.journal.outbox_depth() if self.settings.mqtt.enabled else 0,
            "camera": {"ok": self.snapshots.ok, "error": self.snapshots.last_error,
                       "kind": self.snapshots.camera.name},
            "disk": disk,
            "fault": self.core.fault,
        }

    def health_signature(self) -> list[Any]:
        """The health facts a dashboard shows that can change with no core change. Cheap: the
        outbox depth is a counter, the rest are attributes (no disk or network probe here)."""
        links = [bool((svc.health() or {}).get("connected")) for svc in self.services if svc.name == "mqtt"]
        depth = self.journal.outbox_depth() if self.settings.mqtt.enabled else 0
        return [depth, links, self.snapshots.ok, self.snapshots.last_error]

    def status(self) -> dict[str, Any]:
        status = self.core.status()
        status.update(campus=self.settings.site.campus, door_id=self.settings.site.door,
                      last_seq=self.journal.last_seq, epoch=self.journal.epoch, version=__version__,
                      camera_ok=self.snapshots.ok)
        return status

    def health(self) -> dict[str, Any]:
        try:
            disk = shutil.disk_usage(self.journal.path.parent)
            disk_info: dict[str, int | None] = {"free_bytes": disk.free, "total_bytes": disk.total}
        except OSError:
            disk_info = {"free_bytes": None, "total_bytes": None}
        health: dict[str, Any] = {
            "camera": {"ok": self.snapshots.ok, "error": self.snapshots.last_error,
                       "kind": self.snapshots.camera.name},
            "disk": disk_info,
            "outbox_depth": self.journal.outbox_depth() if self.settings.mqtt.enabled else 0,
            "fault": self.core.fault,
            "gpio_factory": factory_name(self.hardware.pin_factory),
            "uptime_seconds": round(time.monotonic() - self.started_monotonic, 1),
        }
        for service in self.services:
            health[service.name] = service.health()
        return health


def as_door_api(controller: Controller) -> DoorApi:
    """The controller as its facade (mypy checks here that Controller implements all of DoorApi)."""
    return controller
