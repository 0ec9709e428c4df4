"""The media engine: aiortc peer connections on their own thread and asyncio loop.

Why its own loop: aiortc does ICE, DTLS, RTP and (through PyAV) encoding in asyncio
tasks and executor threads; a hostile peer or a stuck encoder must cost the live view
only. The viewer registry (limits, who is talking) is guarded by a plain lock, so callers
(the panel's signalling requests) never wait on the loop except for the answer itself,
and that wait has a timeout. The door core never calls in here.

Signalling is non-trickle: the browser sends a complete offer, the engine answers with a
complete answer (all host candidates; STUN/TURN from config for routed networks). A peer
that does not complete ICE/DTLS within ``connect_timeout_seconds`` is closed and freed. What
each viewer is sent (which shared encoder, which codecs the answer names) and when its office
microphone reaches the door is viewer_media.py's job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from .door_audio import AlsaSpeaker, MeterSpeaker
from .errors import IntercomError
from .hw_video import HardwareH264Video
from .shared_audio import SharedAudioEncoder
from .shared_video import SharedVideoEncoder
from .tracks import AlsaMicrophone, LiveFeed, SyntheticVoiceTrack
from .viewer_media import add_shared_media, play_office_audio

log = logging.getLogger(__name__)

ANSWER_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 2.0
MEDIA_NICE = 10
"""The media threads (loop, encoders, frame grabs) run at a lower CPU priority than the door's:
on a busy Pi the scheduler gives a press, an approval or a relock the CPU first."""


def lower_priority() -> None:
    """Lower this thread's CPU priority (Linux: nice is per thread). Best effort."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), MEDIA_NICE))
    except (OSError, AttributeError):
        pass


@dataclass
class Viewer:
    id: str
    mode: str                      # "webrtc" | "mjpeg"
    actor: str
    username: str
    session: str
    reason: str                    # "ring" | "look"
    started: float = field(default_factory=time.monotonic)
    talking_since: float | None = None
    connected: bool = False
    codec: str = ""                # the video codec sent: "H264" (camera encoder) or "VP8" (software)
    closed: bool = False
    announced: bool = False        # live_view_started journaled (then live_view_ended will be)
    pc: Any = None
    tasks: list[Any] = field(default_factory=list)


Audit = Callable[..., Any]          # audit(event_type, actor=..., **data)


class MediaEngine:
    """Viewers, limits and peer connections. Thread-safe public methods; see module doc."""

    def __init__(self, settings: Any, live_source: Any, audit: Audit,
                 mic_opener: Callable[..., Any] | None = None, speaker_opener: Callable[..., Any] | None = None,
                 h264_stream: Any = None):
        self.settings = settings
        self.live_source = live_source
        self._audit_fn = audit
        self._lock = threading.Lock()
        self._viewers: dict[str, Viewer] = {}
        self._audit_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intercom-audit")
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        self.feed: LiveFeed | None = None
        self.video: SharedVideoEncoder | None = None
        self.h264_stream = h264_stream          # the camera's hardware encoder (Pi 4), or None
        self.hw_video: HardwareH264Video | None = None
        self.audio: SharedAudioEncoder | None = None     # made on the first viewer with audio
        self._pcs: set[Any] = set()           # every peer connection not yet closed (loop thread only)
        kw = {"opener": mic_opener} if mic_opener else {}
        self.mic = AlsaMicrophone(settings.alsa_capture_device, **kw) if settings.audio_in == "alsa" else None
        kw = {"opener": speaker_opener} if speaker_opener else {}
        self.speaker: MeterSpeaker = (AlsaSpeaker(settings.alsa_playback_device, **kw)
                                      if settings.audio_out == "alsa" else MeterSpeaker())
        self.refused = 0

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="intercom-media", daemon=True)
        self._thread.start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        try:
            lower_priority()
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            # aiortc encodes in the loop's default executor: those threads are media threads too
            self.loop.set_default_executor(ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="intercom-codec", initializer=lower_priority))
            self.feed = LiveFeed(self.live_source, self.settings.fps, initializer=lower_priority)
            self.video = SharedVideoEncoder(self.feed, self.settings.fps)
            if self.h264_stream is not None:
                self.hw_video = HardwareH264Video(self.h264_stream, self.loop)
            ready.set()
            self.loop.run_forever()
        except BaseException as exc:     # the media thread ends; the door never notices
            self.error = f"media loop failed: {exc}"
            log.exception("intercom media loop failed")
        finally:
            ready.set()
            if self.error is None:
                self.error = "media loop stopped"
            if self.loop is not None:
                if self._pcs:                     # e.g. the loop was stuck while stop() waited
                    try:
                        self.loop.run_until_complete(asyncio.wait_for(asyncio.gather(
                            *(pc.close() for pc in list(self._pcs)), return_exceptions=True),
                            CLOSE_TIMEOUT_SECONDS))
                    except Exception:
                        log.warning("intercom peers did not close at the end of the media loop")
                self._close_loop(self.loop)

    @staticmethod
    def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
        """Cancel what is left (bounded) and close the loop: sockets and executors freed."""
        try:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_SECONDS))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        except Exception:
            log.exception("intercom media loop did not close cleanly")
        finally:
            loop.close()

    @property
    def running(self) -> bool:
        return (self._thread is not None and self._thread.is_alive() and self.loop is not None
                and self.loop.is_running())

    def stop(self) -> None:
        """Close every viewer (journaled as ended: shutdown), stop the loop. Bounded."""
        with self._lock:
            viewers = list(self._viewers.values())
        for viewer in viewers:          # journaled in order, after what is already queued
            self._end(viewer, "shutdown", close=False)
        loop = self.loop
        if loop is not None and self.running:
            fut = asyncio.run_coroutine_threadsafe(self._close_all_pcs(viewers), loop)
            try:
                fut.result(CLOSE_TIMEOUT_SECONDS)
            except Exception:
                log.warning("intercom peers did not close in time")
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT_SECONDS)
        if self.feed is not None:
            self.feed.close()
        for encoder in (self.video, self.audio):
            if encoder is not None and self.loop is not None and not self.loop.is_closed():
                self.loop.call_soon_threadsafe(encoder.close)
        if self.hw_video is not None:
            self.hw_video.close()
        if self.mic is not None:
            self.mic.close()
        self.speaker.close()
        self._audit_pool.shutdown(wait=True)

    async def _close_all_pcs(self, viewers: list[Viewer]) -> None:
        pcs = {v.pc for v in viewers if v.pc is not None} | self._pcs
        await asyncio.gather(*(self._close(pc) for pc in pcs), return_exceptions=True)

    async def _close(self, pc: Any) -> None:
        await pc.close()
        self._pcs.discard(pc)

    # ------------------------------------------------------------ viewers
    def _admit(self, mode: str, actor: str, username: str, session: str, reason: str) -> Viewer:
        """Reserve a place; at the limit the oldest idle (not talking) viewer is dropped."""
        victim = None
        with self._lock:
            live = [v for v in self._viewers.values() if not v.closed]
            if len(live) >= self.settings.max_viewers:
                idle = sorted((v for v in live if v.talking_since is None), key=lambda v: v.started)
                if not idle:
                    self.refused += 1
                    raise IntercomError(429, f"all {self.settings.max_viewers} live views are talking; "
                                             "try again when one ends")
                victim = idle[0]
                victim.closed = True
            viewer = Viewer(secrets.token_hex(8), mode, actor, username, session, reason)
            self._viewers[viewer.id] = viewer
        if victim is not None:
            self._end(victim, "dropped", already_closed=True)
        return viewer

    def _announce(self, viewer: Viewer) -> None:
        viewer.announced = True
        self._audit("live_view_started", viewer, mode=viewer.mode, reason=viewer.reason)

    def _end(self, viewer: Viewer, reason: str, close: bool = True, already_closed: bool = False) -> None:
        """Mark a viewer ended once (journaled), and close its connection on the loop."""
        with self._lock:
            if viewer.closed and not already_closed:
                return
            viewer.closed = True
            self._viewers.pop(viewer.id, None)
            talking = viewer.talking_since
            viewer.talking_since = None
        if talking is not None and viewer.announced:
            self._audit("talk_ended", viewer, reason="view_ended",
                        seconds=round(time.monotonic() - talking, 1))
        if viewer.announced:
            self._audit("live_view_ended", viewer, mode=viewer.mode, reason=reason,
                        seconds=round(time.monotonic() - viewer.started, 1))
        if viewer.pc is not None and self.loop is not None and self.running and close:
            asyncio.run_coroutine_threadsafe(self._close_pc(viewer), self.loop)

    async def _close_pc(self, viewer: Viewer) -> None:
        for task in viewer.tasks:
            task.cancel()
        try:
            await asyncio.wait_for(self._close(viewer.pc), CLOSE_TIMEOUT_SECONDS)
        except Exception:
            log.warning("viewer %s did not close cleanly", viewer.id)

    def viewer(self, viewer_id: str, session: str) -> Viewer:
        with self._lock:
            viewer = self._viewers.get(viewer_id)
        if viewer is None or viewer.closed or viewer.session != session:
            raise IntercomError(404, "no such live view on this sign-in (it may have ended)")
        return viewer

    def viewers(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"id": v.id, "mode": v.mode, "actor": v.actor, "connected": v.connected,
                     "talking": v.talking_since is not None, "codec": v.codec} for v in self._viewers.values()]

    # ------------------------------------------------------------ WebRTC
    def offer(self, sdp: str, actor: str, username: str, session: str, reason: str) -> tuple[str, str]:
        """Answer a browser's complete offer: (viewer id, complete answer SDP)."""
        loop = self.loop
        if loop is None or not self.running:
            raise IntercomError(503, "the intercom's media engine is not running; use the MJPEG live view")
        viewer = self._admit("webrtc", actor, username, session, reason)
        fut = asyncio.run_coroutine_threadsafe(self._answer(viewer, sdp), loop)
        try:
            answer = fut.result(ANSWER_TIMEOUT_SECONDS)
        except IntercomError:
            self._end(viewer, "refused")
            raise
        except Exception as exc:
            fut.cancel()
            self._end(viewer, "media_fault")
            if isinstance(exc, TimeoutError):
                raise IntercomError(503, "the media engine did not answer in time; use the MJPEG live view") from None
            raise IntercomError(503, f"the media engine failed: {type(exc).__name__}") from exc
        self._announce(viewer)
        return viewer.id, answer

    async def _answer(self, viewer: Viewer, sdp: str) -> str:
        ice = [RTCIceServer(urls=u.strip()) for u in self.settings.stun_servers.split(",") if u.strip()]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=ice))
        viewer.pc = pc
        self._pcs.add(pc)

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState == "connected":
                viewer.connected = True
            elif pc.connectionState in ("failed", "closed") and not viewer.closed:
                self._end(viewer, "peer_closed" if pc.connectionState == "closed" else "failed")

        @pc.on("track")
        def _track(track: Any) -> None:
            if track.kind == "audio":
                viewer.tasks.append(asyncio.ensure_future(play_office_audio(viewer, track, lambda: self.speaker)))

        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except Exception as exc:
                raise IntercomError(400, f"the offer is not a usable SDP offer ({type(exc).__name__})") from exc
            assert self.video is not None
            viewer.codec = add_shared_media(pc, sdp, self.video, self.hw_video,
                                            self._shared_audio if self.settings.audio_in != "none" else None)
            await pc.setLocalDescription(await pc.createAnswer())
            if viewer.closed:        # the caller gave up (a stalled loop) or the viewer was dropped
                raise IntercomError(503, "the live view ended before it was answered")
        except BaseException:        # refused, failed or cancelled: nothing of this peer stays open
            await asyncio.shield(self._close(pc))
            raise
        asyncio.get_running_loop().call_later(self.settings.connect_timeout_seconds, self._check_connected, viewer)
        return pc.localDescription.sdp

    def _shared_audio(self) -> SharedAudioEncoder:
        """One Opus encode for every viewer (shared_audio.py), made on the first viewer with audio."""
        if self.audio is None:
            self.audio = SharedAudioEncoder(self.mic.track() if self.mic is not None else SyntheticVoiceTrack())
        return self.audio

    def _check_connected(self, viewer: Viewer) -> None:
        if not viewer.connected and not viewer.closed:
            log.warning("live view %s never completed ICE/DTLS: freed", viewer.id)
            self._end(viewer, "connect_timeout")

    # ------------------------------------------------------------ MJPEG fallback
    def open_mjpeg(self, actor: str, username: str, session: str, reason: str) -> Viewer:
        viewer = self._admit("mjpeg", actor, username, session, reason)
        self._announce(viewer)
        return viewer

    def close_viewer(self, viewer: Viewer, reason: str = "hangup") -> None:
        self._end(viewer, reason)

    # ------------------------------------------------------------ talk
    def talk(self, viewer_id: str, session: str, on: bool) -> bool:
        viewer = self.viewer(viewer_id, session)
        if viewer.mode != "webrtc":
            raise IntercomError(409, "Talk needs the WebRTC live view (the MJPEG view has no audio)")
        with self._lock:
            was = viewer.talking_since
            if on and was is None:
                viewer.talking_since = time.monotonic()
            elif not on and was is not None:
                viewer.talking_since = None
            changed = (was is None) == on
        if changed and on:
            self._audit("talk_started", viewer)
        elif changed:
            started = was if was is not None else time.monotonic()
            self._audit("talk_ended", viewer, reason="released", seconds=round(time.monotonic() - started, 1))
        return on

    def station(self) -> dict[str, Any]:
        """What the visitor station shows: watching, listening (the office hears the door),
        talking (the office speaks through the door), and the level reaching the speaker."""
        with self._lock:
            live = [v for v in self._viewers.values() if not v.closed]
        webrtc = [v for v in live if v.mode == "webrtc" and v.connected]
        talking = any(v.talking_since is not None for v in webrtc)
        return {"watching": bool(live), "listening": bool(webrtc) and self.settings.audio_in != "none",
                "talking": talking, "office_level": round(self.speaker.level, 4) if talking else 0.0,
                "viewers": len(live)}

    def health(self) -> dict[str, Any]:
        return {"running": self.running, "error": None if self.running else self.error,
                "viewers": len(self._viewers), "refused": self.refused,
                "camera_stalls": self.feed.stalls if self.feed else 0,
                "video_encoder": "hardware" if self.hw_video is not None else "software",
                "video_encoder_error": self.hw_video.error if self.hw_video is not None else None}

    # ------------------------------------------------------------ audit
    def audit_drained(self, timeout: float = 5.0) -> None:
        """Wait until every event handed to the journal so far is written (tests, shutdown)."""
        self._audit_pool.submit(lambda: None).result(timeout)

    def _audit(self, kind: str, viewer: Viewer, **data: Any) -> None:
        """Journal off the media loop (a slow disk never stalls media), in order."""
        def write() -> None:
            try:
                self._audit_fn(kind, actor=viewer.actor, actor_username=viewer.username, viewer=viewer.id, **data)
            except Exception:
                log.exception("could not journal %s", kind)
        try:
            self._audit_pool.submit(write)
        except RuntimeError:       # shutting down: write it here
            write()
