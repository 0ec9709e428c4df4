"""Intercom benchmarks: glass-to-glass video latency, audio latency each way, press -> first
live frame, and the daemon's CPU, RSS and press -> MQTT latency while 0, 1 and 4 viewers watch.

    bash scripts/bench-intercom.sh            # a few minutes; markdown table + JSON
    bash scripts/bench-intercom.sh --smoke    # tiny n (the test suite runs it so it cannot rot)

Latencies run the daemon in this process (``compose.run``, the production wiring, mock pins,
simulated camera at 640x480 @ 15 fps, synthetic visitor voice) with Debian's Chromium as the
office. The footprint part runs the daemon as its own process (``entry-buzzer simulate``) with
a private Mosquitto, so its CPU and RSS are the daemon's alone, in two setups: "office", the
viewers' Chromium at nice 19 pinned to the last core (on site the viewers are the office PCs,
not the Pi), and "shared", the viewers' Chromium at normal priority on any core (everything on
one machine). The phases alternate in rounds within one run; medians. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from controller import config as cfg
from controller.simulate import SIM_GPIO, SimulatedPin, SimulatedStation
from entry_buzzer import compose

from . import intercom_js as js
from .chromium import OwnChromium
from .latency import ExternalSubscriber, start_broker
from .proc import DaemonProcess, cpu_seconds, rss_bytes
from .run import machine
from .stats import free_port, percentile

INTERCOM = {"width": 640, "height": 480, "fps": 15, "audio_in": "synthetic", "audio_out": "meter"}


def ms_summary(samples: list[float]) -> dict[str, Any]:
    return {"n": len(samples), "p50_ms": round(percentile(samples, 50), 1),
            "p95_ms": round(percentile(samples, 95), 1), "max_ms": round(max(samples), 1) if samples else None}


class ClickDetector:
    """The door speaker for the bench: the wall time of each click's onset (5 ms, 2 kHz)."""

    def __init__(self) -> None:
        self.onsets: list[float] = []
        self.frames = 0
        self.level = 0.0

    def play(self, frame: Any) -> None:
        arrived = time.time()
        self.frames += 1
        data = frame.to_ndarray().reshape(-1)
        channels = len(frame.layout.channels)
        loud = (abs(data.astype(int)) > 0.4 * 32768).nonzero()[0]
        if len(loud):
            at = arrived + (loud[0] // channels) / frame.sample_rate
            if not self.onsets or at - self.onsets[-1] > 0.5:
                self.onsets.append(at)

    def close(self) -> None:
        pass


class InProcessIntercom:
    """compose.run() in a thread: panel and intercom on, mock pins, simulated camera."""

    def __init__(self, state_dir: Path):
        self.port = free_port()
        settings = cfg.with_overrides(
            cfg.Settings(), site={"campus": "bench", "door": "main"}, gpio=SIM_GPIO,
            door={"unlock_seconds": 0.5, "debounce_ms": 0}, camera={"kind": "simulated", "width": 320, "height": 240},
            storage={"state_dir": state_dir}, mqtt={"enabled": False},
            web={"enabled": True, "host": "127.0.0.1", "port": self.port}, intercom=INTERCOM)
        self.factory = MockFactory(pin_class=SimulatedPin)
        self.station = SimulatedStation(self.factory, settings.gpio)
        self.stop_event = threading.Event()
        ready = threading.Event()
        self.controller: Any = None

        def on_ready(c: Any) -> None:
            self.controller = c
            ready.set()
        self.thread = threading.Thread(target=compose.run, daemon=True, kwargs=dict(
            settings=settings, pin_factory=self.factory, simulated=True, station=self.station, on_ready=on_ready,
            on_built=lambda _c: self.station.settle(), stop_event=self.stop_event))
        self.thread.start()
        if not ready.wait(60):
            raise RuntimeError("daemon did not become ready")
        self.url = f"http://127.0.0.1:{self.port}"
        self.service = next(s for s in self.controller.services if s.name == "intercom")
        web = next(s for s in self.controller.services if s.name == "web")
        store = web.app.extensions["panel_store"]
        store.add_user("bench", "unused-heron-pillow-5", "staff", "Bench Staff")
        self.store = store

    @property
    def engine(self) -> Any:
        return self.service.engine          # loaded by the first live view

    def cookie(self) -> dict[str, str]:
        token, _ = self.store.create_session(self.store.get_user("bench"), "127.0.0.1", "bench")
        return {"name": "eb_session", "value": token, "url": self.url}

    def deny_ring(self) -> None:
        ring = self.controller.status()["ring"]
        if ring:
            self.controller.deny(ring["request_id"], "Bench")

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)
        self.factory.reset()


def _dashboard(browser: Any, base: str, cookie: dict[str, str] | None = None,
               password: str | None = None) -> Any:
    context = browser.new_context(base_url=base)
    context.set_default_timeout(30_000)
    if cookie:
        context.add_cookies([cookie])
    page = context.new_page()
    if password:
        page.goto("/login?next=/")
        page.fill("#username", "admin")
        page.fill("#password", password)
        page.click("#sign-in")
    page.goto("/")
    page.wait_for_selector("body[data-connected='yes']")
    return page


def _open_view(page: Any) -> None:
    page.click("#live-look")
    page.wait_for_selector("body[data-live='webrtc']", timeout=30_000)
    page.wait_for_function("document.getElementById('live-video').videoWidth > 0", timeout=30_000)


def latencies(browser: Any, smoke: bool) -> dict[str, Any]:
    n_frames, n_clicks, n_press = (20, 3, 2) if smoke else (300, 20, 10)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-intercom-") as tmp:
        d = InProcessIntercom(Path(tmp) / "state")
        try:
            page = _dashboard(browser, d.url, d.cookie())
            _open_view(page)
            video = page.evaluate(js.VIDEO_LATENCY, [n_frames, 120_000])
            out["glass_to_glass"] = ms_summary([float(x) for x in video])
            audio_in = page.evaluate(js.AUDIO_IN_LATENCY, [n_clicks, (n_clicks + 5) * 1000])
            out["audio_door_to_office"] = ms_summary([float(x) for x in audio_in])
            detector = ClickDetector()
            d.engine.speaker = detector
            first = page.evaluate(js.AUDIO_OUT_START, [n_clicks + 2]) * 1000.0
            time.sleep(n_clicks + 3)
            out["audio_office_to_door"] = ms_summary(
                [(t * 1000 - first) % 1000 for t in detector.onsets if t * 1000 >= first - 200])
            page.click("#live-close")
            page.wait_for_selector("body[data-live='off']")
            presses = []
            for _ in range(n_press):
                page.evaluate(js.FIRST_FRAME)
                pressed = time.time()
                d.station.press()
                shown = page.evaluate("window.__firstFrame")
                presses.append(shown - pressed * 1000)
                d.deny_ring()
                page.wait_for_selector("body[data-live='off']")
                time.sleep(0.5)
            out["press_to_first_frame"] = ms_summary(presses)
            page.context.close()
        finally:
            d.stop()
    return out


CONFIG = """
[door]
unlock_seconds = 0.5
debounce_ms = 0
[camera]
width = 320
height = 240
[mqtt]
enabled = true
host = "127.0.0.1"
port = {port}
username = "ctl"
password_file = "{password_file}"
[intercom]
width = 640
height = 480
fps = 15
audio_in = "synthetic"
audio_out = "meter"
max_viewers = 4
"""


def _press_to_mqtt(d: DaemonProcess, sub: Any, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        d.command("press", "pressed")
        samples.append((sub.next_of("buzzer_pressed") - started) * 1000)
        d.command("deny", '"code":')
        time.sleep(0.1)
    return samples


def office_prefix() -> list[str]:
    """How the "office" viewers run here: at nice 19 and pinned to the last core, so the door
    gets the CPU first, as on site where the viewers are the office PCs, not the Pi."""
    cores = os.cpu_count() or 1
    return (["taskset", "-c", str(cores - 1)] if cores > 1 else []) + ["nice", "-n", "19"]


# (name, browser, dashboards open, of which watching live video)
PHASES = [("idle", None, 0, 0), ("office_1", "office", 1, 1), ("office_4", "office", 4, 4),
          ("niced_1", "niced", 1, 1), ("niced_4", "niced", 4, 4),
          ("shared_1", "shared", 1, 1), ("shared_4", "shared", 4, 4)]


TARGET_ROWS = ("office_1", "office_4", "office_1_paused", "office_4_paused")


def footprint(browsers: dict[str, Any], smoke: bool) -> dict[str, Any]:
    """The phases alternate in one run (``reps`` rounds, one daemon): a shared, noisy machine
    drifts, so each round compares its phases under about the same load; medians are reported."""
    reps, window, n = (1, 1.0, 5) if smoke else (3, 8.0, 40)
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in PHASES}
    with tempfile.TemporaryDirectory(prefix="bench-intercom-fp-") as tmp:
        broker = start_broker(Path(tmp) / "broker")
        pages: list[Any] = []
        try:
            config = CONFIG.format(port=broker.port, password_file=broker.password_file("ctl"))
            port = free_port()
            d = DaemonProcess(Path(tmp) / "state", config, ["--port", str(port), "--mqtt-port", str(broker.port)])
            try:
                line = d.expect("panel sign-in: admin / ")
                password = re.search(r"admin / (\S+)", line).group(1)  # type: ignore[union-attr]
                sub = ExternalSubscriber(broker, "entry/+/+/events")
                try:
                    time.sleep(2.0)
                    for _ in range(reps):
                        for name, which, dashboards, videos in PHASES:
                            while pages:
                                pages.pop().context.close()
                            for i in range(dashboards):
                                page = _dashboard(browsers[str(which)], f"http://127.0.0.1:{port}", password=password)
                                pages.append(page)
                                if i < videos:
                                    _open_view(page)
                            time.sleep(2.0)
                            cpu0, t0 = cpu_seconds(d.pid), time.monotonic()
                            time.sleep(window)
                            cpu = 100 * (cpu_seconds(d.pid) - cpu0) / (time.monotonic() - t0)
                            press = _press_to_mqtt(d, sub, n)
                            raw[name].append({"cpu_percent": cpu, "rss_mb": rss_bytes(d.pid) / 1e6,
                                              "p50_ms": percentile(press, 50), "p95_ms": percentile(press, 95),
                                              "load_1min": os.getloadavg()[0]})
                            if which == "office" and videos:
                                # The daemon's own share: the renderers stopped (SIGSTOP), so
                                # nothing decodes or reacts to the ring here; the daemon still
                                # encodes and sends every stream (short: ICE consent lasts ~30 s).
                                browsers["office"].pause_renderers(True)
                                try:
                                    time.sleep(0.5)
                                    cpu0, t0 = cpu_seconds(d.pid), time.monotonic()
                                    press = _press_to_mqtt(d, sub, n)
                                    cpu = 100 * (cpu_seconds(d.pid) - cpu0) / (time.monotonic() - t0)
                                finally:
                                    browsers["office"].pause_renderers(False)
                                raw.setdefault(f"{name}_paused", []).append(
                                    {"cpu_percent": cpu, "rss_mb": rss_bytes(d.pid) / 1e6,
                                     "p50_ms": percentile(press, 50), "p95_ms": percentile(press, 95),
                                     "load_1min": os.getloadavg()[0]})
                finally:
                    sub.close()
            finally:
                for page in pages:
                    page.context.close()
                d.stop()
        finally:
            broker.stop()
    out: dict[str, Any] = {"rounds": reps, "presses_per_phase": n, "cpu_window_s": window,
                           "office_prefix": " ".join(office_prefix()),
                           "load_1min_median": round(statistics.median(
                               r["load_1min"] for rows in raw.values() for r in rows), 1)}
    for name, rows in raw.items():
        out[name] = {k: round(statistics.median(r[k] for r in rows), 1 if k != "p50_ms" else 2)
                     for k in ("cpu_percent", "rss_mb", "p50_ms", "p95_ms")}
        out[name]["p50_by_round"] = [round(r["p50_ms"], 2) for r in rows]
    base = out["idle"]["p50_ms"]
    for name in raw:
        out[name]["ratio"] = round(out[name]["p50_ms"] / base, 2)
    return out


def run(smoke: bool) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright
    results: dict[str, Any] = {"machine": machine(), "smoke": smoke, "video": "640x480 @ 15 fps"}
    with sync_playwright() as pw:
        browsers = {"shared": OwnChromium(pw)}
        try:
            browsers["office"] = OwnChromium(pw, office_prefix())
            browsers["niced"] = OwnChromium(pw, ["nice", "-n", "19"])
            results["latency"] = latencies(browsers["shared"], smoke)
            results["footprint"] = footprint(browsers, smoke)
        finally:
            for browser in browsers.values():
                browser.close()
    return results


def _lat(r: dict[str, Any]) -> str:
    return f"p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms (n={r['n']})"


def table(r: dict[str, Any]) -> str:
    lat, fp = r["latency"], r["footprint"]
    rows = [
        ("glass-to-glass video (simulated camera -> frame shown in Chromium)", _lat(lat["glass_to_glass"]),
         "p50 <= 150 ms", lat["glass_to_glass"]["p50_ms"] <= 150),
        ("audio door -> office (click in the visitor voice -> onset in Chromium)",
         _lat(lat["audio_door_to_office"]), "p50 <= 150 ms", lat["audio_door_to_office"]["p50_ms"] <= 150),
        ("audio office -> door (click from the office -> onset at the door speaker)",
         _lat(lat["audio_office_to_door"]), "p50 <= 150 ms", lat["audio_office_to_door"]["p50_ms"] <= 150),
        ("press -> first live frame on an open dashboard", _lat(lat["press_to_first_frame"]), "p50 <= 1 s",
         lat["press_to_first_frame"]["p50_ms"] <= 1000),
    ]
    labels = {
        "idle": "daemon, no viewer (no dashboard open)",
        "office_1": "1 viewer, office setup (viewers' Chromium at nice 19 on one core)",
        "office_4": "4 viewers, office setup",
        "office_1_paused": "1 viewer streamed, the viewer's renderer stopped (the daemon's own share)",
        "office_4_paused": "4 viewers streamed, their renderers stopped (the daemon's own share)",
        "niced_1": "1 viewer, its Chromium at nice 19 on any core (not pinned)",
        "niced_4": "4 viewers, their Chromium at nice 19 on any core",
        "shared_1": "1 viewer, all on one machine (viewers' Chromium at normal priority, any core)",
        "shared_4": "4 viewers, all on one machine",
    }
    for name, label in labels.items():
        f = fp[name]
        rows.append((f"{label}: daemon CPU, RSS, press -> MQTT p50 (p95)",
                     f"{f['cpu_percent']} % of one core, {f['rss_mb']} MB, {f['p50_ms']} ms ({f['p95_ms']} ms)"
                     + ("" if name == "idle" else f"; {f['ratio']} x idle"),
                     "<= 1.10 x idle" if name in TARGET_ROWS else "reported",
                     f["ratio"] <= 1.10 if name in TARGET_ROWS else None))
    lines = ["| measure | result | target | met |", "|---|---|---|---|"]
    for name, result, target, met in rows:
        lines.append(f"| {name} | {result} | {target} | {'—' if met is None else ('yes' if met else '**no**')} |")
    m = r["machine"]
    lines.append("")
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['date']}; "
                 f"{fp['rounds']} rounds of the footprint phases, load average (1 min) median "
                 f"{fp['load_1min_median']} during them.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.intercom", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny n: seconds, for the test suite")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    results = run(args.smoke)
    print(table(results))
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

