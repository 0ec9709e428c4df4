"""Intercom signalling and the MJPEG fallback, on the panel's HTTPS API.

Non-trickle WebRTC: the dashboard gathers all its ICE candidates, POSTs one complete offer
(staff session and CSRF token, like every panel action) and gets one complete answer.
Limits, each with a clear 4xx: the SDP size (413), offers per sign-in per minute (429), the
viewer limit (the engine drops the oldest idle viewer; 429 when every viewer is talking),
malformed offers (400). Every refusal is journaled (``intercom_refused``; a flood is
summarized as ``intercom_refusals``, see intercom_audit.py). Media never passes through here,
except the MJPEG fallback: one
JPEG stream per viewer over HTTPS (video only) for networks where WebRTC's UDP is blocked
or the config turns WebRTC off.

The door never waits on any of this: these handlers call the media engine (its own
thread, answers with a timeout), never the core's strike path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Iterator

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context

from intercom.errors import IntercomError
from intercom.service import service_of

from . import security as sec
from .intercom_audit import RefusalLog

log = logging.getLogger(__name__)
bp = Blueprint("intercom", __name__)

REASONS = ("ring", "look")
MAX_MEDIA_SECTIONS = 4          # the dashboard sends 2 (video, audio)
MAX_CANDIDATES = 40             # a desk PC gathers a handful
MAX_RATE_KEYS = 4096
BOUNDARY = "frame"


class OfferRate:
    """Offers per sign-in in the last minute (bounded memory: the oldest sessions forgotten)."""

    def __init__(self) -> None:
        self._times: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str, per_minute: int) -> float:
        """0 when allowed (and counted), else the seconds until the next offer is allowed."""
        now = time.monotonic()
        with self._lock:
            times = self._times.setdefault(key, deque())
            self._times.move_to_end(key)
            while times and now - times[0] >= 60.0:
                times.popleft()
            if len(times) >= per_minute:
                return 60.0 - (now - times[0])
            times.append(now)
            while len(self._times) > MAX_RATE_KEYS:
                self._times.popitem(last=False)
        return 0.0


def _settings() -> Any:
    return current_app.extensions["entry_controller"].settings.intercom


def _service() -> Any:
    return service_of(current_app.extensions["entry_controller"])


def _engine() -> Any:
    """The media engine if it is loaded (Talk, hang-up, station: nothing to do before)."""
    service = _service()
    return service.engine if service is not None else None


CATEGORIES = {400: "malformed", 404: "no_such_view", 409: "webrtc_off", 413: "too_large", 429: "viewer_limit",
              503: "engine_unavailable"}


def _refuse(status: int, message: str, category: str | None = None, **extra: Any) -> Response:
    """A clear 4xx/503 to the caller, journaled (summarized under a flood: intercom_audit)."""
    engine = _engine()
    if engine is not None:
        engine.refused += 1
    sess = sec.current_session()
    log.warning("intercom request refused (%d) for %s: %s", status, sess.user.username if sess else "-", message)
    current_app.extensions["intercom_refusals"].refused(
        category or CATEGORIES.get(status, "refused"), status, message,
        sess.user.display_name if sess else None, sess.user.username if sess else None)
    return sec.error(status, message, **extra)


def _who() -> tuple[str, str, str]:
    sess = sec.current_session()
    assert sess is not None  # guaranteed by @require
    return sess.user.display_name, sess.user.username, sess.id


def check_offer(sdp: str, max_bytes: int) -> tuple[int, str] | None:
    """Cheap checks before the media engine sees an offer: (status, reason) or None."""
    if not sdp:
        return 400, "sdp is required (a complete WebRTC offer)"
    if len(sdp.encode("utf-8", "replace")) > max_bytes:
        return 413, f"the offer is larger than {max_bytes} bytes"
    if not sdp.startswith("v=0") or "\nm=video " not in sdp:
        return 400, "the offer is not an SDP offer with a video section"
    if any(not (32 <= ord(ch) < 127 or ch in "\r\n") for ch in sdp):
        return 400, "the offer contains characters SDP does not allow"
    if sdp.count("\nm=") > MAX_MEDIA_SECTIONS:      # each would become a transceiver
        return 400, f"the offer has more than {MAX_MEDIA_SECTIONS} media sections"
    if sdp.count("a=candidate:") > MAX_CANDIDATES:     # each would get connectivity checks
        return 400, f"the offer has more than {MAX_CANDIDATES} ICE candidates"
    return None


@bp.get("/api/intercom")
@sec.require()
def info() -> Response:
    s = _settings()
    service, engine = _service(), _engine()
    usable = service is not None and (engine is None or engine.running)    # None: loads on first use
    return jsonify(enabled=service is not None, webrtc=bool(s.webrtc and usable),
                   mjpeg=service is not None, max_viewers=s.max_viewers, fps=s.fps,
                   connect_timeout_seconds=s.connect_timeout_seconds,
                   ice_servers=[u.strip() for u in s.stun_servers.split(",") if u.strip()])


@bp.post("/api/intercom/offer")
@sec.require()
def offer() -> Response:
    s = _settings()
    service = _service()
    if service is None:
        return sec.error(404, "the intercom is off on this controller")
    if not s.webrtc:
        return _refuse(409, "WebRTC is turned off in the config (intercom.webrtc); use the MJPEG live view")
    reason = request.form.get("reason", "look")
    if reason not in REASONS:
        return _refuse(400, "reason must be ring or look")
    problem = check_offer(request.form.get("sdp", ""), s.max_sdp_bytes)
    if problem:
        return _refuse(*problem)
    actor, username, session = _who()
    wait = current_app.extensions["intercom_rate"].allow(session, s.offers_per_minute)
    if wait:
        resp = _refuse(429, f"too many live-view offers; at most {s.offers_per_minute} a minute",
                       category="rate", retry_after=round(wait, 1))
        resp.headers["Retry-After"] = str(int(wait) + 1)
        return resp
    try:
        viewer, answer = service.engine_for_use().offer(request.form["sdp"], actor, username, session, reason)
    except IntercomError as exc:
        return _refuse(exc.status, exc.message)
    return jsonify(ok=True, viewer=viewer, type="answer", sdp=answer)


def _viewer_field() -> str:
    return request.form.get("viewer", "")[:32]


@bp.post("/api/intercom/talk")
@sec.require()
def talk() -> Response:
    engine = _engine()
    if engine is None:
        return sec.error(404, "no such live view on this sign-in (it may have ended)")
    on = request.form.get("on")
    if on not in ("0", "1"):
        return sec.error(400, "on must be 1 (talk) or 0 (stop)")
    try:
        talking = engine.talk(_viewer_field(), _who()[2], on == "1")
    except IntercomError as exc:
        return sec.error(exc.status, exc.message)
    return jsonify(ok=True, talking=talking)


@bp.post("/api/intercom/hangup")
@sec.require()
def hangup() -> Response:
    engine = _engine()
    if engine is None:
        return sec.error(404, "no such live view on this sign-in (it may have ended)")
    try:
        engine.close_viewer(engine.viewer(_viewer_field(), _who()[2]))
    except IntercomError as exc:
        return sec.error(exc.status, exc.message)
    return jsonify(ok=True)


@bp.get("/api/intercom/mjpeg")
@sec.require()
def mjpeg() -> Response:
    """The fallback live view: multipart JPEG frames at intercom.mjpeg_fps, one viewer place."""
    service = _service()
    if service is None:
        return sec.error(404, "the intercom is off on this controller")
    reason = request.args.get("reason", "look")
    if reason not in REASONS:
        return sec.error(400, "reason must be ring or look")
    actor, username, session = _who()
    try:
        engine = service.engine_for_use()
        from intercom.mjpeg import jpeg_of  # PyAV (I420 frames): loaded with the engine
        viewer = engine.open_mjpeg(actor, username, session, reason)
    except IntercomError as exc:
        return _refuse(exc.status, exc.message)
    interval = 1.0 / _settings().mjpeg_fps
    store = current_app.extensions["panel_store"]
    token = request.cookies.get(sec.SESSION_COOKIE)

    def frames() -> Iterator[bytes]:
        try:
            next_check = 0.0
            while not viewer.closed:
                started = time.monotonic()
                if started >= next_check:          # the view ends with the sign-in
                    if store.session(token) is None:
                        break
                    next_check = started + 5.0
                jpeg = jpeg_of(service.live_source.grab())
                yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                       .encode() + jpeg + b"\r\n")
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
        finally:
            engine.close_viewer(viewer)

    resp = Response(stream_with_context(frames()), mimetype=f"multipart/x-mixed-replace; boundary={BOUNDARY}")
    resp.headers["X-Intercom-Viewer"] = viewer.id
    return resp


def station_state(controller: Any) -> dict[str, Any]:
    """What the visitor station shows about the office (the /sim page polls it)."""
    service = service_of(controller)
    engine = service.engine if service is not None else None
    if engine is None:
        return {"watching": False, "listening": False, "talking": False, "office_level": 0.0, "viewers": 0}
    return engine.station()


def init_app(app: Any) -> None:
    app.extensions["intercom_rate"] = OfferRate()
    app.extensions["intercom_refusals"] = RefusalLog(app.extensions["entry_controller"].audit)
    app.register_blueprint(bp)
