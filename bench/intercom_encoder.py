"""The media engine's CPU for live video: software VP8 (Pi 5, simulated) against the camera's
hardware H.264 (Pi 4), one viewer, against raw baselines measured in the same run.

    .venv/bin/python -m bench.intercom_encoder            # about a minute
    .venv/bin/python -m bench.intercom_encoder --seconds 3 --json out.json

What it measures: CPU seconds per second of the intercom's own threads (``intercom-*``: the
media loop that packetizes and sends, the codec and frame-grab executors, the H.264 hand-over),
read per thread from /proc, while one aiortc office peer (in this process, its threads not
counted) receives 640x480 @ 15 fps.

- software: the production path (``SharedVideoEncoder``: grab the simulated frame, I420, VP8).
- hardware: ``HardwareH264Video`` fed by a stand-in for the VideoCore encoder that replays
  access units encoded with libx264 *before* the window (on a Pi 4 the encoding costs the CPU
  nothing), at 15 fps from its own thread (not counted). So the figure is the hand-over and
  packetizing the Pi's CPU still does.
- baselines (same run, same frames): raw libvpx encode of the frames alone (what the software
  path cannot avoid) and raw aiortc H.264 ``pack()`` of the access units alone.

This x86 machine is not a Pi: the ratios carry over, the absolute figures do not.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import threading
import time
from typing import Any

import av

from controller import config as cfg
from controller.live_frames import SimulatedLiveSource

W, H, FPS = 640, 480, 15
TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(prefix: str) -> float:
    """CPU seconds of this process's live threads whose Python name starts with prefix (read
    from /proc by native id: Python 3.11 does not name the OS threads)."""
    total = 0
    for t in threading.enumerate():
        if not t.name.startswith(prefix) or t.native_id is None:
            continue
        try:
            with open(f"/proc/self/task/{t.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])          # utime, stime
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / TICK


def frames(n: int) -> list[Any]:
    source = SimulatedLiveSource(W, H, "bench")
    out = []
    for _ in range(n):
        out.append(av.VideoFrame.from_image(source.grab().data).reformat(format="yuv420p"))
        time.sleep(0.04)                                          # the visitor sways between frames
    return out


def h264_units(video: list[Any]) -> list[tuple[bytes, bool]]:
    """The frames as a camera encoder would deliver them: constrained baseline, IDR each second."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = W, H, "yuv420p"
    codec.bit_rate, codec.gop_size, codec.profile = 600_000, FPS, "Baseline"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.options = {"tune": "zerolatency", "preset": "ultrafast"}
    units = []
    for i, frame in enumerate(video):
        frame.pts = i
        units += [(bytes(p), p.is_keyframe) for p in codec.encode(frame)]
    return units


def baseline_vp8(video: list[Any], seconds: float) -> float:
    """CPU seconds per second to encode the frames with the software path's VP8 settings at FPS."""
    from intercom.shared_video import SharedVideoEncoder
    enc = SharedVideoEncoder.__new__(SharedVideoEncoder)
    enc._codec, enc.encoded = None, 0
    n = int(seconds * FPS)
    t0 = time.thread_time()
    for i in range(n):
        frame = video[i % len(video)]
        frame.pts, frame.time_base = i * 6000, fractions.Fraction(1, 90_000)
        enc._encode(frame, i % (2 * FPS) == 0)
    return (time.thread_time() - t0) / (n / FPS)


def baseline_pack(units: list[tuple[bytes, bool]], seconds: float) -> float:
    from aiortc.codecs.h264 import H264Encoder
    enc = H264Encoder()
    n = int(seconds * FPS)
    t0 = time.thread_time()
    for i in range(n):
        packet = av.Packet(units[i % len(units)][0])
        packet.pts, packet.time_base = i * 6000, fractions.Fraction(1, 90_000)
        enc.pack(packet)
    return (time.thread_time() - t0) / (n / FPS)


class ReplayEncoder:
    """Stands in for picamera2's hardware H264Encoder: replays pre-encoded units at FPS."""

    def __init__(self, units: list[tuple[bytes, bool]]):
        self.units = units
        self.width, self.height = W, H
        self._stop = threading.Event()
        self._key = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: Any) -> None:
        self._stop.clear()

        def run() -> None:
            i, t0 = 0, time.monotonic()
            # start at a keyframe, like a starting encoder
            while not self._stop.wait(max(0.0, t0 + i / FPS - time.monotonic())):
                data, key = self.units[i % len(self.units)]
                sink(data, key, int(i * 1_000_000 / FPS))
                i += 1
        self._thread = threading.Thread(target=run, name="camera-encoder", daemon=True)
        self._thread.start()

    def request_keyframe(self) -> bool:
        return False                                           # the replay's IDR comes each second

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def engine_cpu(mode: str, units: list[tuple[bytes, bool]], seconds: float) -> dict[str, Any]:
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from intercom.engine import MediaEngine
    settings = cfg.from_dict({"intercom": {"width": W, "height": H, "fps": FPS, "audio_in": "none",
                                           "audio_out": "meter"}}).intercom
    stream = ReplayEncoder(units) if mode == "hardware" else None
    engine = MediaEngine(settings, SimulatedLiveSource(W, H, "bench"), lambda *a, **k: None, h264_stream=stream)
    engine.start()
    loop = asyncio.new_event_loop()
    peer = threading.Thread(target=loop.run_forever, name="office-peer", daemon=True)
    peer.start()
    received = [0]

    async def office() -> Any:
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")

        @pc.on("track")
        def on_track(track: Any) -> None:
            async def pull() -> None:
                try:
                    while True:
                        await track.recv()
                        received[0] += 1
                except Exception:
                    pass
            asyncio.ensure_future(pull())
        await pc.setLocalDescription(await pc.createOffer())
        return pc
    try:
        pc = asyncio.run_coroutine_threadsafe(office(), loop).result(20)
        _, answer = engine.offer(pc.localDescription.sdp, "bench", "bench", "s", "look")
        asyncio.run_coroutine_threadsafe(pc.setRemoteDescription(RTCSessionDescription(answer, "answer")),
                                         loop).result(20)
        deadline = time.monotonic() + 20
        while received[0] < FPS and time.monotonic() < deadline:    # warm: connected and decoding
            time.sleep(0.1)
        frames0, cpu0, t0 = received[0], thread_cpu("intercom"), time.monotonic()
        time.sleep(seconds)
        cpu, wall, got = thread_cpu("intercom") - cpu0, time.monotonic() - t0, received[0] - frames0
        codec = engine.viewers()[0]["codec"] if engine.viewers() else "?"
        asyncio.run_coroutine_threadsafe(pc.close(), loop).result(10)
        return {"mode": mode, "codec": codec, "cpu_per_s": round(cpu / wall, 4),
                "fps_received": round(got / wall, 1)}
    finally:
        engine.stop()
        loop.call_soon_threadsafe(loop.stop)
        peer.join(5)
        MediaEngine._close_loop(loop)                 # the peer's tasks cancelled, its sockets closed


def run(seconds: float, repeats: int) -> dict[str, Any]:
    video = frames(2 * FPS)
    units = h264_units(video)
    rows: dict[str, list[float]] = {"vp8_raw": [], "pack_raw": [], "software": [], "hardware": []}
    fps: dict[str, list[float]] = {"software": [], "hardware": []}
    for _ in range(repeats):
        rows["vp8_raw"].append(baseline_vp8(video, seconds / 2))
        rows["pack_raw"].append(baseline_pack(units, seconds / 2))
        for mode in ("software", "hardware"):
            r = engine_cpu(mode, units, seconds)
            assert r["codec"] == ("H264" if mode == "hardware" else "VP8"), r
            rows[mode].append(r["cpu_per_s"])
            fps[mode].append(r["fps_received"])
    med = {k: sorted(v)[len(v) // 2] for k, v in rows.items()}
    return {"seconds": seconds, "repeats": repeats, "median_cpu_per_s": med, "runs": rows,
            "fps_received": fps,
            "ratios": {"software_to_vp8_raw": round(med["software"] / med["vp8_raw"], 2),
                       "hardware_to_software": round(med["hardware"] / med["software"], 3),
                       "hardware_to_pack_raw": round(med["hardware"] / med["pack_raw"], 2)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.intercom_encoder", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    result = run(args.seconds, args.repeats)
    m, r = result["median_cpu_per_s"], result["ratios"]
    print(f"| path (one viewer, {W}x{H} @ {FPS} fps) | CPU (core-s per s, median of {args.repeats}) |\n| --- | --- |")
    print(f"| raw libvpx VP8 encode of the frames (baseline) | {m['vp8_raw']:.3f} |")
    print(f"| software path: intercom threads (grab, VP8, send) | {m['software']:.3f} "
          f"({r['software_to_vp8_raw']}x the raw encode) |")
    print(f"| raw aiortc H.264 pack() of the units (baseline) | {m['pack_raw']:.4f} |")
    print(f"| hardware path: intercom threads (hand-over, send) | {m['hardware']:.4f} "
          f"({r['hardware_to_software']}x the software path) |")
    print(f"frames received per s: {result['fps_received']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
