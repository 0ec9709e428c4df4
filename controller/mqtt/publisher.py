"""Retained ``status`` (availability) and ``state``: at most one state publish per state change.

Why: the state comes from the core's change feed (the status each transition left), not from
re-reading status, and is published only when the door's picture changed (door, ring,
lockdown, alarms, fault, camera), on every (re)connect, and once more when the backlog sent
after a reconnect is through. Timer ticks, acknowledgements and new events alone publish nothing.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as mqtt

from .. import __version__
from .. import events as ev
from ..api import DoorApi
from .connection import QOS

VOLATILE = ("ts", "last_seq", "outbox_depth")   # carried along, never a reason to publish


class StatePublisher:
    def __init__(self, controller: DoorApi, topic_status: str, topic_state: str):
        self.controller = controller
        self.topic_status = topic_status
        self.topic_state = topic_state
        self._status: dict[str, Any] | None = None       # from the latest change
        self._published: dict[str, Any] | None = None    # comparable part of the last state sent
        self._backlog = False                            # last state sent with a backlog waiting
        self._dirty = True                               # something may have changed since
        self._lock = threading.Lock()                    # the change feed and the worker both publish
        self.state_publishes = 0

    def on_change(self, change: Any) -> None:
        self._status = change.status
        self._dirty = True

    def touch(self) -> None:
        """Something outside the core changed (the camera): compare again."""
        self._dirty = True

    def due(self) -> bool:
        """Worth building a payload: a change since the last look, or a backlog being sent."""
        return self._dirty or self._backlog

    def online(self, client: Any) -> None:
        client.publish(self.topic_status, "online", qos=QOS, retain=True)

    def offline(self, client: Any, timeout: float = 5.0) -> None:
        client.publish(self.topic_status, "offline", qos=QOS, retain=True).wait_for_publish(timeout=timeout)

    def payload(self, waiting: int) -> dict[str, Any]:
        c = self.controller
        status = self._status
        if status is None:                    # no change seen yet (just started): read it once
            status = self._status = c.status()
        epoch, last_seq = c.journal_position()
        return {"campus": c.settings.site.campus, "door_id": c.settings.site.door,
                "door": status["door"], "lockdown": status["lockdown"],
                "ringing": (status["ring"] or {}).get("request_id"),
                "last_seq": last_seq, "epoch": epoch, "outbox_depth": waiting,
                "camera_ok": bool(c.camera_state()[0]), "version": __version__,
                "alarms": sorted(status["alarms"]), "fault": status["fault"],
                "ts": ev.utc_iso(c.now())}

    def publish(self, client: Any, waiting: int, force: bool = False, locked: bool = True) -> bool:
        """Publish the state if it changed (or forced on connect, or the backlog is through).

        True when nothing is left to do. The change feed calls this with ``locked=False``: if
        the worker is publishing state at that moment it returns False and the worker goes on."""
        if not self._lock.acquire(blocking=locked):
            return False
        try:
            self._dirty = False
            state = self.payload(waiting)
            comparable = {k: v for k, v in state.items() if k not in VOLATILE}
            caught_up = self._backlog and waiting == 0
            if not force and not caught_up and comparable == self._published:
                return True
            payload = json.dumps(state, separators=(",", ":"), sort_keys=True)
            info = client.publish(self.topic_state, payload, qos=QOS, retain=True)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._dirty = True
                return False
            self._published = comparable
            self._backlog = waiting > 0 and (force or self._backlog)
            self.state_publishes += 1
            return True
        finally:
            self._lock.release()
