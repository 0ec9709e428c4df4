"""The intercom as a daemon service: builds the media engine from config and the running
controller, and journals its events through the controller (like the panel's sign-ins).

Started after the core and the MQTT link, before the panel (which finds it by name)."""

from __future__ import annotations

import sys
from typing import Any

from controller.live_frames import live_source_for

from .engine import MediaEngine


SWITCH_INTERVAL_SECONDS = 0.0005
"""The media engine shares the interpreter with the door. CPython hands the GIL to a waiting
thread only after this interval (default 5 ms); while video is encoded, each hop of a press
(GPIO callback, core, journal, MQTT) could wait that long. 0.5 ms lets the door's threads in
within half a millisecond (bench/intercom.py measures press -> MQTT with 0, 1 and 4 viewers)."""


class IntercomService:
    name = "intercom"

    def __init__(self, controller: Any, **engine_kw: Any):
        ic = controller.settings.intercom
        source = live_source_for(controller.snapshots.camera, ic.width, ic.height)
        self.engine = MediaEngine(ic, source, controller.core.audit, **engine_kw)

    @classmethod
    def for_controller(cls, controller: Any) -> "IntercomService":
        return cls(controller)

    def start(self) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        try:
            self.engine.start()
        except Exception as exc:   # never stops the daemon: the door works without live video
            self.engine.error = f"intercom did not start: {exc}"

    def stop(self) -> None:
        self.engine.stop()

    def health(self) -> dict[str, Any]:
        return self.engine.health()


def engine_of(controller: Any) -> MediaEngine | None:
    """The running controller's media engine, or None when the intercom is off."""
    service = next((s for s in getattr(controller, "services", []) if s.name == "intercom"), None)
    return service.engine if service is not None else None
