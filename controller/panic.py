"""The panic (duress) button: a hold-to-send control on the panel and an optional desk button.

Why a module of its own: a panic is not a door command. It raises the ``panic`` alarm at once
(journaled as ``alarm_raised`` with who or what pressed it, then published like every event,
QoS 1, and carried in the retained MQTT state's alarm list), and, unless
``panic.starts_lockdown = false``, starts a lockdown at the ``lockdown`` level (escalating a
``secure`` one). Only staff on the panel can acknowledge it (``EntryCore.acknowledge_alarm``);
no MQTT command clears it.

The desk button is a GPIO input debounced like the buzzer (``door.debounce_ms``): contact
bounce on one press must not be read as two panics. Pure module: no gpiozero here; the GPIO
adapter calls ``press_button``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

ALARM = "panic"
DESK_BUTTON = "desk_button"
PANEL = "panel"


class Panic:
    """Raise the panic alarm and (by config) start a lockdown, for the panel and the desk button."""

    def __init__(self, core: Any, starts_lockdown: bool = True, debounce_ms: int = 50,
                 monotonic: Callable[[], float] = time.monotonic):
        self._core = core
        self.starts_lockdown = starts_lockdown
        self._debounce = debounce_ms / 1000.0
        self._monotonic = monotonic
        self._last_button: float | None = None
        self._lock = threading.Lock()
        self.presses = 0

    def press_button(self) -> bool:
        """A press edge from the desk button (gpio.panic_pin). False when it was contact bounce."""
        now = self._monotonic()
        with self._lock:
            if self._last_button is not None and now - self._last_button < self._debounce:
                return False
            self._last_button = now
        self.trigger(DESK_BUTTON, "desk panic button")
        return True

    def trigger(self, source: str, by: str) -> bool:
        """Raise the alarm (journaled before anything else), then start the lockdown.

        True when this press raised the alarm; False when a panic was already active (the
        lockdown still escalates, so a second press is never lost)."""
        self.presses += 1
        raised = ALARM not in self._core.status()["alarms"]
        if raised:
            # a panel user is also the event's actor (History's Staff column, actor_username)
            who = {"actor": str(by)[:100]} if source == PANEL else {}
            self._core.set_alarm(ALARM, True, source=str(source)[:40], by=str(by)[:100], **who)
            log.critical("PANIC from %s (%s)", source, by)
        if self.starts_lockdown:
            decision = self._core.start_lockdown(str(by)[:100], "panic button", f"panic_{source}"[:40],
                                                 level="lockdown")
            if not decision.ok:
                log.error("panic: lockdown not started: %s", decision.reason)
        return raised

    def active(self) -> bool:
        return ALARM in self._core.status()["alarms"]

