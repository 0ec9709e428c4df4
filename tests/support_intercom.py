"""Intercom fixtures: a media engine on a started controller, a Python WebRTC peer (aiortc, its
own loop on a thread) that plays the office side without a browser, and Chromium with fake
camera and microphone devices for the browser tests (``intercom_browser``: its own name, so
it never replaces the panel's and board's ``browser``; Playwright is imported only when it
starts, tests/support_browser.py)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterator

import pytest

from controller import config as cfg
from tests.support_browser import CHROMIUM_ARGS, launch_chromium

MEDIA_ARGS = CHROMIUM_ARGS + ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
"""Chromium's fake camera and microphone, allowed without a prompt: the office side of a live view."""


def intercom_settings(**overrides: Any) -> cfg.IntercomSettings:
    base = {"width": 320, "height": 240, "fps": 10, "connect_timeout_seconds": 4.0,
            "audio_in": "synthetic", "audio_out": "meter"}
    base.update(overrides)
    return cfg.from_dict({"intercom": base}).intercom


class LoopThread:
    """An asyncio loop on its own thread, for the test's own aiortc peers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 20.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        from intercom.engine import MediaEngine
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        MediaEngine._close_loop(self.loop)


@pytest.fixture
def peer_loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(scope="module")
def intercom_browser() -> Iterator[Any]:
    """Debian's Chromium with fake media devices, one per test module."""
    yield from launch_chromium(MEDIA_ARGS)


async def office_offer(audio: bool = True, talk_tone: bool = False) -> Any:
    """An office-side peer: receives video (and audio), optionally sends a tone as its mic."""
    from aiortc import RTCPeerConnection
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    if audio:
        if talk_tone:
            from intercom.tracks import SyntheticVoiceTrack
            pc.addTrack(SyntheticVoiceTrack())
        else:
            pc.addTransceiver("audio", direction="recvonly")
    received: dict[str, list[Any]] = {"video": [], "audio": []}

    @pc.on("track")
    def on_track(track: Any) -> None:
        async def pull() -> None:
            try:
                while True:
                    frame = await track.recv()
                    bucket = received[track.kind]
                    bucket.append(frame)
                    del bucket[:-50]
            except Exception:
                pass
        asyncio.ensure_future(pull())

    await pc.setLocalDescription(await pc.createOffer())
    pc.received = received  # type: ignore[attr-defined]
    return pc


async def accept(pc: Any, sdp: str) -> None:
    from aiortc import RTCSessionDescription
    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))


def add_intercom(controller: Any, load: bool = True, **overrides: Any) -> Any:
    """Start the intercom service on a built controller, as the daemon does (before the panel);
    ``load``: load the media engine now (the daemon loads it on the first live view)."""
    from intercom.service import IntercomService
    settings = cfg.with_overrides(controller.settings, intercom=intercom_settings(**overrides).__dict__)
    controller.settings = settings
    service = IntercomService(controller)
    controller.services.append(service)
    service.start()
    if load:
        service.engine_for_use()
    return service


def remove_intercom(controller: Any, service: Any) -> None:
    service.stop()
    controller.services.remove(service)
