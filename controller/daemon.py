"""Wiring: build the adapters from config, run the core loop, handle signals.

Start-up order is the safety order: drive the strike locked first, then open
the journal, then everything else. Every exit path (SIGTERM, SIGINT, an
exception) relocks and journals ``controller_stopped`` before the process ends.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from . import __version__
from . import events as ev
from .camera import Camera, build_camera
from .config import Settings
from .core import Clock, EntryCore, SystemClock
from .durable import LOCKDOWN_FILE, RESERVE_BYTES, RESERVE_FILE, DiskReserve, FileLockdownStore
from .facade import Controller, Service
from .faults import CountingRecorder
from .gpio import DoorHardware, factory_name
from .identity import JournalIdentity, hold_lock, identity_paths
from .journal import Journal, JournalError
from .memory import tune_malloc
from .notify import Notifier, watchdog_interval
from .panic import Panic
from .snapshots import SnapshotService

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.sqlite3"
SNAPSHOT_DIR = "snapshots"


class CoreLoop(threading.Thread):
    """The core's own loop: fires timers and sends systemd watchdog pings.

    It calls ``core.tick()`` (which takes the core lock) before each ping, so a
    core stuck inside a transition stops the pings and systemd restarts us. One clock: the
    core's (its deadlines are on it), so a test on a fake clock needs no real sleep.
    """

    def __init__(self, core: EntryCore, notifier: Notifier | None = None,
                 watchdog_seconds: float | None = None, max_sleep: float = 1.0):
        super().__init__(name="entry-core-loop", daemon=True)
        self.core = core
        self.clock = core.clock
        self.notifier = notifier
        self.watchdog_seconds = watchdog_seconds
        self.max_sleep = min(max_sleep, watchdog_seconds or max_sleep)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._wake_at = float("inf")           # the core clock's time the loop plans to wake
        self.core.add_listener(self._wake)

    def _wake(self, _change: Any = None) -> None:
        """Wake for a change from another thread only when it brings a timer due before the
        loop's planned wake-up (an unlock's end); our own tick() must not re-wake us (busy
        loop). Most changes (a press, a photo, the door) add no earlier timer: waking for each
        cost a tick per change."""
        if threading.current_thread() is self:
            return
        deadline = self.core.next_deadline()
        if deadline is not None and deadline <= self._wake_at:
            self.wake.set()

    def run(self) -> None:
        last_ping = 0.0
        while not self.stopping.is_set():
            try:
                self.core.tick()
            except Exception:
                log.exception("core tick failed")
            now = self.clock.monotonic()
            if self.notifier is not None and self.watchdog_seconds and now - last_ping >= self.watchdog_seconds:
                self.notifier.watchdog()
                last_ping = now
            self._wake_at = float("inf")      # a change while we plan wakes us
            deadline = self.core.next_deadline()
            timeout = self.max_sleep if deadline is None else min(self.max_sleep, max(0.0, deadline - now))
            self._wake_at = now + timeout
            self.wake.wait(timeout)
            self.wake.clear()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()


def previous_stop(journal: Journal, journal_lost: bool = False) -> str:
    """none (first start), clean, unclean; ``unknown`` when the journal was lost: the history
    that would tell is gone, and "none" would claim a first boot."""
    if journal_lost:
        return "unknown"
    last = journal.last_event()
    if last is None:
        return "none"
    return "clean" if last.type == ev.CONTROLLER_STOPPED else "unclean"


def _parse_time(text: Any, default: datetime) -> datetime:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return default


def restore_lockdown(controller: Controller) -> bool:
    """A lockdown survives restarts and journal faults.

    The lockdown file (controller/durable.py) is the first authority: a lockdown in it stays in
    force unless the journal holds the ``lockdown_ended`` for that very lockdown (the end was
    journaled but the file could not be removed). A lockdown open in the journal but missing
    from the file (older version, file lost) is kept too. One the journal never recorded is
    journaled now, ``during_fault: true``.
    """
    c = controller
    recent = c.journal.query(types=[ev.LOCKDOWN_STARTED, ev.LOCKDOWN_ENDED, ev.LOCKDOWN_LEVEL_CHANGED],
                             limit=200)
    record = c.lockdown_store.load() if c.lockdown_store is not None else None
    if record is not None:
        lid = record.get("id")
        ended = any(e.type == ev.LOCKDOWN_ENDED and e.data.get("lockdown_id") == lid for e in recent)
        if lid and ended and c.lockdown_store is not None:
            c.lockdown_store.save(None)
            record = None
    if record is not None:
        lid = record.get("id")
        journaled = bool(lid) and any(e.type == ev.LOCKDOWN_STARTED and e.data.get("lockdown_id") == lid
                                      for e in recent)
        since = _parse_time(record.get("since"), c.clock.now())
        c.core.restore_lockdown(since, str(record.get("actor") or "unknown"), str(record.get("reason") or ""),
                                str(record.get("source") or ""), lockdown_id=lid, journaled=journaled,
                                level=str(record.get("level") or ev.DEFAULT_LOCKDOWN_LEVEL))
        log.warning("lockdown from %s by %s is still in force after restart (lockdown file)",
                    ev.utc_iso(since), record.get("actor"))
        return True
    if not recent or recent[0].type == ev.LOCKDOWN_ENDED:
        return False
    e = recent[0]                  # lockdown_started, or a later level change of the same lockdown
    lid = e.data.get("lockdown_id")
    start = next((s for s in recent if s.type == ev.LOCKDOWN_STARTED
                  and s.data.get("lockdown_id") == lid), e)
    c.core.restore_lockdown(start.ts, start.actor or "unknown", str(start.data.get("reason", "")),
                            str(start.data.get("source", "")), lockdown_id=lid,
                            level=str(e.data.get("level") or ev.DEFAULT_LOCKDOWN_LEVEL))
    log.warning("lockdown from %s by %s is still in force after restart", ev.utc_iso(e.ts), e.actor)
    return True


def close_open_pulse(controller: Controller) -> bool:
    """Every pulse is closed in the audit: after a crash mid-pulse the last door event is a
    ``door_unlocked``; the strike was driven locked at start-up, so say so (reason startup)."""
    last = controller.journal.query(types=[ev.DOOR_UNLOCKED, ev.DOOR_LOCKED], limit=1)
    if not last or last[0].type != ev.DOOR_UNLOCKED:
        return False
    controller.journal.append(ev.DOOR_LOCKED, last[0].request_id, reason="startup",
                              unlocked_seq=last[0].seq)
    return True


def open_journal(path: Path, settings: Settings, clock: Clock) -> Journal:
    """Open the journal. One that is not a database at all (garbage, a half-written copy) is
    moved aside and a new one started, so the controller runs (locked, panel and alarms up)
    instead of crash-looping; the identity check then raises ``journal_lost``."""
    try:
        return Journal(path, settings.site.campus, settings.site.door, now=clock.now)
    except JournalError as exc:
        if type(exc.__cause__) is not sqlite3.DatabaseError:    # not disk full, not permissions
            raise
        aside = path.with_name(f"{path.name}.corrupt-{clock.now().strftime('%Y%m%dT%H%M%SZ')}")
        log.error("journal %s is corrupt (%s): moved to %s", path, exc.__cause__, aside.name)
        path.rename(aside)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.rename(aside.with_name(aside.name + suffix))
        return Journal(path, settings.site.campus, settings.site.door, now=clock.now)


def build(settings: Settings, pin_factory: Any = None, camera: Camera | None = None,
          clock: Clock | None = None, simulated: bool = False) -> Controller:
    """Build a controller: strike locked first, then journal, core, camera, hardware callbacks."""
    hardware = DoorHardware(settings.gpio, pin_factory=pin_factory)   # strike driven locked here
    try:
        state_dir = Path(settings.storage.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        clock = clock or SystemClock()
        lock_file = hold_lock(state_dir)
        journal = open_journal(state_dir / JOURNAL_FILE, settings, clock)
        identity = JournalIdentity(identity_paths(state_dir, settings.source))
        lost = identity.check(journal.epoch, journal.created)
        if lost:
            log.error("JOURNAL LOST: %s; starting locked, unlocks refused until an admin accepts it", lost)
        ic = settings.intercom
        camera = camera or build_camera(settings.camera.kind, settings.camera.width,
                                        settings.camera.height, settings.camera.jpeg_quality,
                                        settings.site.door_name,
                                        (ic.width, ic.height) if ic.enabled else None, ic.fps)
        snapshots = SnapshotService(
            camera, state_dir / SNAPSHOT_DIR, journal, timeout=settings.camera.capture_timeout_seconds,
            retention_days=settings.storage.snapshot_retention_days,
            max_bytes=int(settings.storage.snapshot_max_mb * 1024 * 1024))
        lockdown_store = FileLockdownStore(state_dir / LOCKDOWN_FILE)
        reserve = DiskReserve(state_dir / RESERVE_FILE, RESERVE_BYTES)
        reserve.restore()              # best effort: a full disk at start-up still starts (locked)
        core = EntryCore(journal, hardware.strike, settings.door, clock=clock,
                         indicators=hardware.leds, on_ring=snapshots.request,
                         has_door_contact=hardware.door_contact is not None,
                         lockdown_store=lockdown_store, reserve=reserve,
                         on_press_again=snapshots.request_again)
        snapshots.on_done = core.photo_done
        snapshots.recorder = CountingRecorder(journal, core.lost_event)   # lost photos are counted
        panic = Panic(core, settings.panic.starts_lockdown, settings.door.debounce_ms, clock.monotonic)
    except Exception:
        hardware.close()
        raise
    return Controller(settings=settings, journal=journal, core=core, hardware=hardware,
                      snapshots=snapshots, clock=clock, simulated=simulated,
                      lockdown_store=lockdown_store, reserve=reserve, identity=identity,
                      journal_lost=lost, lock_file=lock_file, panic=panic)


def start(controller: Controller) -> None:
    """Journal the start, sync the door contact, start the camera and connect the inputs."""
    c = controller
    restored = restore_lockdown(c)
    c.journal.append(ev.CONTROLLER_STARTED, version=__version__,
                     previous_stop=previous_stop(c.journal, c.journal_lost is not None),
                     journal_lost=c.journal_lost is not None,
                     gpio_factory=factory_name(c.hardware.pin_factory), camera=c.snapshots.camera.name,
                     simulated=c.simulated, lockdown_restored=restored)
    close_open_pulse(c)
    if c.journal_lost:
        c.core.journal_lost(c.journal_lost, c.identity.previous() if c.identity else [])
    if c.hardware.door_is_open:
        c.core.door_changed(True)
    if c.hardware.tamper_active:
        c.core.tamper_changed(True)
    c.snapshots.start()
    c.hardware.connect(on_press=c.core.press, on_door=c.core.door_changed, on_tamper=c.core.tamper_changed,
                       on_exit_request=c.core.exit_requested,
                       on_panic=c.panic.press_button if c.panic is not None else None)


STOP_BUDGET_SECONDS = 2.5
"""How long services (MQTT link, panel, camera) get to stop, together, once the strike is locked.
Past it they are abandoned (their threads are daemon threads) and ``controller_stopped`` is
journaled anyway: a hung camera or broker must never hold the stop to systemd's kill."""


def _stop_all_within(jobs: list[tuple[str, Callable[[], Any]]], budget: float) -> list[str]:
    """Run every stop in its own daemon thread, at once; return the names still running at the deadline."""
    threads = []
    for name, fn in jobs:
        def call(name: str = name, fn: Callable[[], Any] = fn) -> None:
            try:
                fn()
            except Exception:
                log.exception("stopping %s failed", name)
        thread = threading.Thread(target=call, name=f"stop-{name}", daemon=True)
        thread.start()
        threads.append((name, thread))
    deadline = time.monotonic() + budget
    for _name, thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [name for name, thread in threads if thread.is_alive()]
    for name in stuck:
        log.error("stopping %s did not finish within %.1fs: abandoned", name, budget)
    return stuck


def stop(controller: Controller, reason: str, budget: float = STOP_BUDGET_SECONDS) -> None:
    """Every exit path: relock, stop services (bounded), journal controller_stopped, close. Never raises."""
    c = controller
    c.core.shutdown(reason)                       # the strike is locked (and journaled) first
    jobs: list[tuple[str, Callable[[], Any]]] = [(s.name, s.stop) for s in reversed(c.services)]
    jobs.append(("camera", c.snapshots.close))
    stuck = _stop_all_within(jobs, budget)
    try:
        extra: dict[str, Any] = {"unfinished": stuck} if stuck else {}
        c.journal.append(ev.CONTROLLER_STOPPED, reason=reason, **extra)
    except Exception:
        log.exception("could not journal controller_stopped")
    c.hardware.close()
    c.close_reader()
    c.journal.close()
    if c.lock_file is not None:
        c.lock_file.close()


def exit_now_if_stuck(code: int) -> int:
    """After ``run`` returns: if an abandoned non-daemon thread would keep the interpreter alive
    at exit (Python joins those), end the process now. The journal is closed by then."""
    others = [t.name for t in threading.enumerate()
              if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if others:
        log.error("exiting with threads still stuck: %s", ", ".join(others))
        logging.shutdown()
        import os
        import sys
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


ServiceFactory = Callable[[Controller], Service]


def run(settings: Settings, pin_factory: Any = None, camera: Camera | None = None,
        service_factories: list[ServiceFactory] | None = None, simulated: bool = False,
        on_ready: Callable[[Controller], None] | None = None,
        on_built: Callable[[Controller], None] | None = None,
        stop_event: threading.Event | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT (or stop_event). Returns the exit code.

    Services (MQTT link, panel) are the composition root's choice (entry_buzzer/compose.py)."""
    tune_malloc()
    stop_event = stop_event or threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        stop_event.set()

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    controller = build(settings, pin_factory=pin_factory, camera=camera, simulated=simulated)
    notifier = Notifier()
    loop = CoreLoop(controller.core, notifier, watchdog_interval())
    reason = "shutdown"
    try:
        if on_built is not None:
            on_built(controller)
        start(controller)
        loop.start()
        for make in service_factories or []:
            service = make(controller)
            controller.services.append(service)
            service.start()
        remember_strike(settings)
        notifier.ready(f"door {settings.site.campus}/{settings.site.door} locked, journal open")
        log.info("controller ready: %s/%s", settings.site.campus, settings.site.door)
        if on_ready is not None:
            on_ready(controller)
        while not stop_event.wait(0.5):
            pass
        reason = f"signal {received[0]}" if received else "stop requested"
    except Exception as exc:
        log.exception("controller failed")
        reason = f"fault: {exc}"
        return_code = 1
    else:
        return_code = 0
    finally:
        notifier.stopping()
        loop.stop()
        stop(controller, reason)
        log.info("controller stopped (%s)", reason)
    return return_code


def remember_strike(settings: Settings) -> None:
    """A successful start: keep the strike settings for relock when the config breaks later."""
    from .relock import save_last_good
    try:
        save_last_good(settings.gpio, Path(settings.storage.state_dir), settings.source)
    except OSError as exc:
        log.warning("could not save the last-known-good strike settings: %s", exc)
