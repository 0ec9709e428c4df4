"""District board bench: campus publish -> board update (p50/p99) under a school-morning load.

    .venv/bin/python -m bench.district_board              # N = 25 and 100 campuses
    .venv/bin/python -m bench.district_board --campuses 25 100 500 --samples 60

Everything real and private: PostgreSQL (initdb in a temp dir), Mosquitto on a free port, the
recorder (``entry-buzzer-district recorder``) and the board (``entry-buzzer-board serve``) as
their own processes. N simulated campuses (bench/district_campus.py: one door each, the
contract's payloads) keep a background load of one ring cycle per campus every 10 s (7 events,
a snapshot, 3 states: the assumed morning peak) while one probe door changes its door state;
the latency is from its publish to the first grid event on the board's live stream (/live, SSE,
signed in) that shows the change: broker -> recorder commit -> NOTIFY -> grid query -> SSE.
It is split where the bench itself hears the board's NOTIFY for the probe door (its own LISTEN
connection): publish -> NOTIFY is the recorder's share (broker, batch, commit), NOTIFY -> frame
the board's (listener, patch query, SSE). The stream reconnects if the board cuts it, as a
browser does (``live_streams`` counts the connections).
Raw baseline in the same run: publish -> a plain MQTT subscriber on the same broker.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import paho.mqtt.client as mqtt
import psycopg

from bench.district_campus import SimDoor
from bench.stats import free_port, summary_ms
from tests.support_mqtt import start_broker
from tests.support_pg import start_pg

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = "orbit-lantern-quietly-77-mauve"


class LiveGrid(threading.Thread):
    """Signed in to the board; records when each (door, state) first shows on /live."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.seen: dict[tuple[str, str], float] = {}
        self.streams = 0             # /live connections opened (more than 1: the board cut the stream, we reconnected)
        self.ended: list[str] = []   # how each stream ended (the last event seen)
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.conn: http.client.HTTPConnection | None = None
        self.cookie = self._sign_in()

    def _request(self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None) -> Any:
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.conn.request(method, path, body=body, headers=headers or {})
        return self.conn.getresponse()

    def _sign_in(self) -> str:
        r = self._request("GET", "/login")
        token = re.search(r'name="csrf_token" value="([^"]*)"', r.read().decode()).group(1)
        login_cookie = r.getheader("Set-Cookie").split(";")[0]
        self.close()
        r = self._request("POST", "/login", urlencode({"username": "bench", "password": PASSWORD,
                                                       "csrf_token": token, "next": "/"}),
                          {"Content-Type": "application/x-www-form-urlencoded", "Cookie": login_cookie})
        body = r.read()
        self.close()
        assert r.status == 303, body
        return next(c for c in r.headers.get_all("Set-Cookie") if c.startswith("district_session=")).split(";")[0]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def run(self) -> None:
        """Reads /live; when the board ends the stream, reconnects as a browser's EventSource does
        (the first frame of a new stream is the full grid)."""
        while not self.stop.is_set():
            try:
                last = self._read_stream()
            except (OSError, http.client.HTTPException) as exc:
                last = f"error: {exc!r}"
            finally:
                self.close()
            if self.stop.is_set():
                return
            self.ended.append(last)
            if last == "signed_out":
                return
            self.stop.wait(0.1)

    def _read_stream(self) -> str:
        r = self._request("GET", "/live", headers={"Cookie": self.cookie})
        self.streams += 1
        event = ""
        while True:
            line = r.readline()
            if not line:
                return event
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                event = text[7:]
            elif text.startswith("data: ") and event == "grid":
                now = time.time()
                grid = json.loads(text[6:])
                with self.cond:
                    for c in grid["campuses"]:
                        for d in c["doors"]:
                            self.seen.setdefault((f"{c['campus']}/{d['door']}", d["state"]), now)
                    self.cond.notify_all()

    def wait(self, key: tuple[str, str], after: float, timeout: float = 30.0) -> float | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                t = self.seen.get(key)
                if t is not None and t >= after:
                    return t
                if time.monotonic() > deadline:
                    return None
                self.cond.wait(0.05)

    def forget(self, key: tuple[str, str]) -> None:
        with self.cond:
            self.seen.pop(key, None)


class Committed(threading.Thread):
    """LISTENs on the board's channel like the board does: when the probe door's row change was
    committed and announced. Splits publish -> board into the recorder's part (publish -> NOTIFY
    heard) and the board's part (NOTIFY heard -> grid frame read from /live)."""

    def __init__(self, dsn: str, door: str):
        super().__init__(daemon=True)
        self.door = door
        self.heard: list[float] = []
        self.stop = threading.Event()
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute("LISTEN board_door")

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for note in self.conn.notifies(timeout=0.5):
                    if note.payload == self.door:
                        self.heard.append(time.time())
        except psycopg.Error:
            pass
        finally:
            self.conn.close()

    def first_after(self, t: float) -> float | None:
        return next((h for h in list(self.heard) if h >= t), None)


def background(doors: list[SimDoor], stop: threading.Event, cycle_seconds: float = 10.0) -> None:
    """One ring cycle per campus every ``cycle_seconds``, spread evenly over the doors."""
    i = 0
    gap = cycle_seconds / max(1, len(doors))
    while not stop.wait(gap):
        d = doors[i % len(doors)]
        i += 1
        d.ring(snapshot_bytes=30_000)
        d.publish_state(ringing=None)
        for t in ("entry_approved", "door_unlocked", "door_opened", "door_closed", "door_locked"):
            d.event(t)
        d.publish_state()


DOORS_PER_WORKER = 120      # paho uses select(): keep every process far below 1024 descriptors


def load_worker(port: int, password: str, campuses: list[str], cycle_seconds: float, ready: Any, stop: Any) -> None:
    """A process of simulated campuses: connect them all, report, then run the background load."""
    doors = [SimDoor("127.0.0.1", port, c, password=password) for c in campuses]
    for d in doors:
        d.connected.wait(60)
    ready.put(sum(1 for d in doors if d.connected.is_set()))
    background(doors, stop, cycle_seconds)
    for d in doors:
        try:
            d.close()
        except Exception:
            pass


def run_case(n: int, samples: int, tmp: Path, cycle_seconds: float = 10.0) -> dict[str, Any]:
    pg = start_pg(durable=True)
    broker = start_broker(tmp / f"broker-{n}")
    # as the shipped district broker (systemd/mosquitto/district.conf): Mosquitto's default of
    # 1000 queued messages per client drops QoS 1 messages once the recorder is that far behind
    broker.conf.write_text(broker.conf.read_text() + "max_queued_messages 100000\n")
    broker.restart()
    procs: list[subprocess.Popen[bytes]] = []
    committed: Committed | None = None
    live: LiveGrid | None = None
    stack = contextlib.ExitStack()
    workers: list[Any] = []
    mp_stop: Any = None
    stop = threading.Event()
    try:
        campuses = [f"c{i:03d}" for i in range(n)] + ["probe"]
        pg.apply_schema()
        board_port = free_port()
        conf = tmp / f"district-{n}.toml"
        conf.write_text(
            f'[database]\ndsn = "{pg.dsn}"\n'
            f'[broker]\nhost = "127.0.0.1"\nport = {broker.port}\nusername = "district"\n'
            f'password_file = "{broker.password_file("district")}"\nclient_id = "bench-rec-{n}"\n'
            f'[recorder]\ncampuses = {json.dumps(campuses)}\n'
            f'[board.web]\nlisten = "tcp"\nport = {board_port}\nthreads = 16\n')
        pw = tmp / "bench.pw"
        pw.write_text(PASSWORD + "\n")
        added = subprocess.run([str(BIN / "entry-buzzer-board"), "--config", str(conf), "user", "add", "bench",
                                "--role", "viewer", "--password-file", str(pw)], capture_output=True, text=True)
        assert added.returncode == 0, added.stderr
        log = stack.enter_context(open(tmp / f"procs-{n}.log", "ab"))
        procs.append(subprocess.Popen([str(BIN / "entry-buzzer-district"), "recorder", "--config", str(conf)],
                                      stdout=log, stderr=log))
        procs.append(subprocess.Popen([str(BIN / "entry-buzzer-board"), "--config", str(conf), "serve"],
                                      stdout=log, stderr=log))
        deadline = time.monotonic() + 60
        while True:
            ready = http.client.HTTPConnection("127.0.0.1", board_port, timeout=2)
            try:
                ready.request("GET", "/login")
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp / f"procs-{n}.log").read_text()[-2000:]
                time.sleep(0.2)
            finally:
                ready.close()
        password = broker.accounts["ctl"]
        ctx = mp.get_context("spawn")
        ready, mp_stop = ctx.Queue(), ctx.Event()
        chunks = [campuses[:-1][i:i + DOORS_PER_WORKER] for i in range(0, n, DOORS_PER_WORKER)]
        workers = [ctx.Process(target=load_worker, args=(broker.port, password, chunk, cycle_seconds, ready, mp_stop),
                               daemon=True) for chunk in chunks]
        for w in workers:
            w.start()
        connected = sum(ready.get(timeout=180) for _ in workers)
        assert connected == n, f"only {connected} of {n} campuses connected"
        probe = SimDoor("127.0.0.1", broker.port, "probe", password=password)
        probe.connected.wait(30)
        live = LiveGrid(board_port)
        live.start()
        committed = Committed(pg.dsn, "probe/main-entrance")
        committed.start()
        raw: list[float] = []
        raw_seen: dict[str, float] = {}
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-raw-{n}")
        sub.username_pw_set("district", broker.accounts["district"])
        sub.on_message = lambda _c, _u, m: raw_seen.setdefault(m.payload.decode(), time.time())
        sub.connect("127.0.0.1", broker.port)
        sub.subscribe("entry/probe/+/state", qos=1)
        sub.loop_start()
        time.sleep(3)                                   # the load runs before the first sample
        board: list[float] = []
        recorder_part: list[float] = []    # publish -> NOTIFY heard
        board_part: list[float] = []       # NOTIFY heard -> frame on /live
        lost = 0
        for i in range(samples):
            state = "open" if i % 2 == 0 else "locked"
            key = ("probe/main-entrance", state)
            live.forget(key)
            sent = time.time()
            info = probe.publish_state(door=state)
            shown = live.wait(key, sent)
            if shown is None:
                lost += 1
            else:
                board.append(shown - sent)
                heard = committed.first_after(sent)
                if heard is not None and heard <= shown + 0.05:
                    recorder_part.append(heard - sent)
                    board_part.append(max(0.0, shown - heard))
            info.wait_for_publish(10)
            time.sleep(0.5)
        # raw baseline: publish -> a plain subscriber, same broker, same load
        for i in range(samples):
            payload = json.dumps(probe.state(door="locked", ts=f"raw-{i}"))
            sent = time.time()
            probe.client.publish("entry/probe/main-entrance/state", payload, qos=1, retain=True)
            deadline = time.monotonic() + 10
            while payload not in raw_seen and time.monotonic() < deadline:
                time.sleep(0.001)
            if payload in raw_seen:
                raw.append(raw_seen[payload] - sent)
            time.sleep(0.1)
        sub.disconnect()
        sub.loop_stop()
        probe.close()
        b, r = summary_ms(board), summary_ms(raw)
        rc, bp = summary_ms(recorder_part), summary_ms(board_part)
        return {"campuses": n, "samples": samples, "not_shown": lost, "board_p50_ms": round(b["p50_ms"], 1),
                "board_p99_ms": round(b["p99_ms"], 1), "raw_mqtt_p50_ms": round(r["p50_ms"], 2),
                "raw_mqtt_p99_ms": round(r["p99_ms"], 2),
                "to_notify_p50_ms": round(rc["p50_ms"], 1), "to_notify_p99_ms": round(rc["p99_ms"], 1),
                "notify_to_frame_p50_ms": round(bp["p50_ms"], 1), "notify_to_frame_p99_ms": round(bp["p99_ms"], 1),
                "events_per_second": round(n * 7 / cycle_seconds, 1), "cycle_seconds": cycle_seconds,
                "live_streams": live.streams, "streams_ended": live.ended[:5]}
    finally:
        stop.set()
        if live is not None:     # the board is stopped below: the stream's end is not a cut
            live.stop.set()
        if committed is not None:
            committed.stop.set()
            committed.join(timeout=5)
        if mp_stop is not None:
            mp_stop.set()
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if live is not None:
            live.join(timeout=10)
        broker.stop()
        pg.destroy()
        stack.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campuses", type=int, nargs="+", default=[25, 100])
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--cycle-seconds", type=float, default=10.0,
                    help="one ring cycle per campus this often (10: the assumed peak; 1: ten times that)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))   # a stopped bench still stops its servers
    tmp = Path(tempfile.mkdtemp(prefix="bench-board-"))
    results = []
    try:
        for n in args.campuses:
            results.append(run_case(n, args.samples, tmp, args.cycle_seconds))
            print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n| campuses | events/s | publish -> board p50 | p99 | of which publish -> NOTIFY p50 / p99 | "
          "NOTIFY -> frame p50 / p99 | not shown | raw MQTT p50 / p99 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['campuses']} | {r['events_per_second']} | {r['board_p50_ms']} ms | {r['board_p99_ms']} ms | "
              f"{r['to_notify_p50_ms']} / {r['to_notify_p99_ms']} ms | "
              f"{r['notify_to_frame_p50_ms']} / {r['notify_to_frame_p99_ms']} ms | "
              f"{r['not_shown']} of {r['samples']} | {r['raw_mqtt_p50_ms']} / {r['raw_mqtt_p99_ms']} ms |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
