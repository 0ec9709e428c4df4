"""Does the media engine slow the door's threads inside the daemon's interpreter, and does the
GIL switch interval the intercom sets (0.5 ms) help or hurt?

    .venv/bin/python -m bench.intercom_gil [viewers] [rounds]

The real ``MediaEngine`` (simulated camera, 640x480 @ 15 fps, synthetic voice) streams to N
aiortc office peers in their own process at nice 19 (their decoding is not the daemon's),
while this process times a door-like path: a hop to another thread over a socket pair, a
SQLite insert there (no fsync: the disk is not what is measured), and a hop back: the shape
of press -> journal -> outbox. The switch interval alternates (5 ms, CPython's default, and
0.5 ms) every few seconds within one run, so both see the same machine load; medians of the
rounds. Run it with 0 viewers too: the engine loaded but idle is the baseline.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

INTERVALS = (0.005, 0.0005)


async def _peers(n: int) -> None:
    """The office side (the child process): offers on stdout, answers from stdin; frames dropped."""
    from aiortc import RTCPeerConnection, RTCSessionDescription
    loop = asyncio.get_running_loop()
    pcs = []
    for _ in range(n):
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")

        @pc.on("track")
        def _track(track: Any) -> None:
            async def drain() -> None:
                while True:
                    await track.recv()
            asyncio.ensure_future(drain())
        await pc.setLocalDescription(await pc.createOffer())
        print(json.dumps(pc.localDescription.sdp), flush=True)
        answer = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        pcs.append(pc)
    while True:
        await asyncio.sleep(3600)


def _door_path(seconds: float) -> list[float]:
    a, b = socket.socketpair()
    db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    db.execute("CREATE TABLE t(x)")

    def other() -> None:
        while (m := b.recv(16)):
            db.execute("INSERT INTO t VALUES (1)")
            b.send(m)
    thread = threading.Thread(target=other, daemon=True)
    thread.start()
    samples, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        a.send(b"x")
        a.recv(16)
        samples.append((time.perf_counter() - t) * 1000)
        time.sleep(0.005)
    a.close()
    thread.join(2)
    b.close()
    return samples


def run(viewers: int, rounds: int, seconds: float = 4.0) -> dict[str, Any]:
    from controller import config as cfg
    from controller.live_frames import SimulatedLiveSource
    from intercom.engine import MediaEngine
    settings = cfg.from_dict({"intercom": {"width": 640, "height": 480, "fps": 15, "audio_in": "synthetic",
                                           "audio_out": "meter"}}).intercom
    engine = MediaEngine(settings, SimulatedLiveSource(640, 480), lambda *a, **k: None)
    engine.start()
    peers = None
    before = sys.getswitchinterval()
    try:
        if viewers:
            peers = subprocess.Popen(["nice", "-n", "19", sys.executable, "-m", "bench.intercom_gil", "--peers",
                                      str(viewers)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert peers.stdin is not None and peers.stdout is not None
            for i in range(viewers):
                _, answer = engine.offer(json.loads(peers.stdout.readline()), "bench", "bench", f"s{i}", "look")
                peers.stdin.write(json.dumps(answer) + "\n")
                peers.stdin.flush()
        time.sleep(3.0)
        p50: dict[float, list[float]] = {i: [] for i in INTERVALS}
        p95: dict[float, list[float]] = {i: [] for i in INTERVALS}
        for _ in range(rounds):
            for interval in INTERVALS:
                sys.setswitchinterval(interval)
                samples = sorted(_door_path(seconds))
                p50[interval].append(statistics.median(samples))
                p95[interval].append(samples[int(len(samples) * 0.95)])
        encoded = engine.video.encoded if engine.video else 0
    finally:
        sys.setswitchinterval(before)
        if peers is not None:
            peers.kill()
            peers.wait()
        engine.stop()
    return {"viewers": viewers, "rounds": rounds, "frames_encoded": encoded,
            **{f"interval_{i * 1000:g}ms": {"p50_ms": round(statistics.median(p50[i]), 3),
                                             "p95_ms": round(statistics.median(p95[i]), 3)} for i in INTERVALS}}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--peers"]:
        asyncio.run(_peers(int(argv[1])))
        return 0
    viewers = int(argv[0]) if argv else 4
    rounds = int(argv[1]) if len(argv) > 1 else 3
    print(json.dumps(run(viewers, rounds), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
