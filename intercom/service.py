"""The intercom as a daemon service: the live source and, on the first live view, the media
engine; its events are journaled through the controller (like the panel's sign-ins).

Why the engine loads lazily: aiortc, PyAV and numpy add about 70 MB to the daemon's memory
and 0.2 s (x86; more on a Pi) to its start; a door nobody watches should not pay that. The
first live view (or the MJPEG fallback) loads it, once, and it then stays.

Started after the core and the MQTT link, before the panel (which finds it by name)."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from controller.live_frames import live_source_for
from controller.live_h264 import encoder_name, hardware_h264_for

from .errors import IntercomError

log = logging.getLogger(__name__)

SWITCH_INTERVAL_SECONDS = 0.0005
"""The media engine shares the interpreter with the door. CPython hands the GIL to a waiting
thread only after this interval (default 5 ms); while video is encoded, each hop of a press
(GPIO callback, core, journal, MQTT) could wait that long. 0.5 ms lets the door's threads in
within half a millisecond (bench/intercom.py measures press -> MQTT with 0, 1 and 4 viewers)."""


class IntercomService:
    name = "intercom"

    def __init__(self, controller: Any, **engine_kw: Any):
        self.controller = controller
        ic = controller.settings.intercom
        camera = controller.live_camera()
        self.live_source = live_source_for(camera, ic.width, ic.height)
        # the camera's H.264 encoder where the Pi has one (Pi 4), else software VP8 (Pi 5, simulated)
        self.h264_stream = hardware_h264_for(camera, ic.encoder, ic.fps)
        log.info("intercom live video: %s", encoder_name(self.h264_stream))
        self._engine_kw = engine_kw
        self._engine: Any = None
        self._lock = threading.Lock()
        self._stopped = False
        self.error: str | None = None

    @classmethod
    def for_controller(cls, controller: Any) -> "IntercomService":
        return cls(controller)

    @property
    def engine(self) -> Any:
        """The media engine, or None before the first live view."""
        return self._engine

    def engine_for_use(self) -> Any:
        """The media engine, loaded and started on first use. Raises IntercomError(503)."""
        with self._lock:
            if self._engine is not None:
                return self._engine
            if self._stopped:
                raise IntercomError(503, "the controller is stopping")
            try:
                from .engine import MediaEngine  # aiortc, PyAV: only now
                engine = MediaEngine(self.controller.settings.intercom, self.live_source,
                                     self.controller.audit, h264_stream=self.h264_stream, **self._engine_kw)
                engine.start()
            except Exception as exc:   # never stops the daemon: the door works without live video
                self.error = f"intercom did not start: {exc}"
                log.error("%s", self.error)
                raise IntercomError(503, "the intercom's media engine is not available on this controller "
                                         f"({type(exc).__name__}); see the controller log") from exc
            self._engine = engine
            return engine

    def start(self) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            engine = self._engine
        if engine is not None:
            engine.stop()

    def health(self) -> dict[str, Any]:
        if self._engine is None:
            return {"running": False, "loaded": False, "error": self.error, "viewers": 0}
        return {"loaded": True, **self._engine.health()}


def service_of(controller: Any) -> IntercomService | None:
    """The running controller's intercom service, or None when the intercom is off."""
    return next((s for s in getattr(controller, "services", []) if s.name == "intercom"), None)
