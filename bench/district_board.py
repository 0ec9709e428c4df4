"""District board bench: campus publish -> board update (p50/p99) under a school-morning load.

    .venv/bin/python -m bench.district_board              # N = 25 and 100 campuses
    .venv/bin/python -m bench.district_board --campuses 25 100 500 --samples 60

Everything real and private: PostgreSQL (initdb in a temp dir), Mosquitto on a free port, the
recorder (``entry-buzzer-district recorder``) and the board (``entry-buzzer-board serve``) as
their own processes. N simulated campuses (bench/campus_wire.py: one door each, the contract's
payloads, all from one thread of one process at ``--load-nice`` 10: in the field they are
Raspberry Pis elsewhere, here they share the 2 cores with the system under test) keep a
background load of one ring cycle per campus every 10 s (7 events, a snapshot, 2 states: the
assumed morning peak) while one probe door (a paho client, not niced) changes its state, each
change with its own mark (bench/board_probe.py): the latency is from its publish to the first
grid event on the board's live stream (/live, SSE, signed in) that shows that mark: broker ->
recorder commit -> NOTIFY -> grid query -> SSE. It is split where the bench itself hears a
NOTIFY naming the probe door (its own LISTEN, on the board's channels) and reads that the
committed row holds the mark: publish -> NOTIFY is the recorder's share (broker, batch,
commit), NOTIFY -> frame the board's (listener, patch query, SSE). A change not shown within
``--timeout`` is counted as not shown and as slower than every shown one in the percentiles;
``--give-up-after`` such changes in a row stop the case with an error (the chain is not
keeping up), so the bench never waits ``timeout`` x samples. Progress goes to stderr.
The stream reconnects if the board cuts it, as a browser does (``live_streams`` counts the
connections). CPU per wall second of the recorder, the board, PostgreSQL, the broker, the load
and the bench itself over the sampling; the load average; PostgreSQL checkpoints in the sampling.
Raw baseline in the same run: publish -> a plain MQTT subscriber on the same broker.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from bench.board_probe import Committed, CpuMeter, LiveGrid
from bench.campus_wire import WireDoor, run_load
from bench.district_campus import SimDoor
from bench.stats import free_port, summary_ms
from tests.support_mqtt import start_broker
from tests.support_pg import start_pg

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = "orbit-lantern-quietly-77-mauve"


LOAD_WORKERS = 1   # one thread sends the whole load (bench/campus_wire.py); the probe is not in it
# In the field the campuses' load comes from 500 Raspberry Pis, not from the district server:
# here it runs at a lower priority so it takes what the system under test leaves (README).
LOAD_NICE = 10


def load_worker(port: int, password: str, campuses: list[str], cycle_seconds: float, ready: Any, stop: Any,
                nice: int = 0) -> None:
    """A process of simulated campuses (plain-socket MQTT, one thread): connect them all,
    report, then run the background load until ``stop``. ``nice``: run at a lower scheduling
    priority (the field's load does not run on the district server at all)."""
    if nice:
        os.nice(nice)
    doors = [WireDoor("127.0.0.1", port, c, password=password) for c in campuses]
    ready.put(len(doors))
    cycles = run_load(doors, stop.is_set, cycle_seconds)
    for d in doors:
        try:
            d.close()
        except OSError:
            pass
    ready.put({"cycles": cycles, "published": sum(d.published for d in doors),
               "acknowledged": sum(d.acked for d in doors)})


def sample_board(probe: SimDoor, live: LiveGrid, committed: Committed, samples: int, timeout: float,
                 give_up_after: int, trace: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Publish -> board for ``samples`` probe changes, each with its own mark. A change not shown
    within ``timeout`` counts as not shown and, in the percentiles, as slower than every shown
    one (never dropped). After ``give_up_after`` in a row the chain is not keeping up: sampling
    stops with a clear error instead of waiting ``timeout`` for every remaining sample."""
    board: list[float] = []            # every sample sent: not shown = inf
    recorder_part: list[float] = []    # publish -> NOTIFY heard (the committed row holds the mark)
    board_part: list[float] = []       # NOTIFY heard -> frame on /live
    not_shown = committed_not_shown = in_a_row = 0
    error = None
    started = time.monotonic()
    for i in range(samples):
        mark = f"bench probe {i}"
        sent = time.time()
        info = probe.publish_state(door="open" if i % 2 == 0 else "locked", fault=mark)
        shown = live.wait(("probe/main-entrance", mark), timeout)
        heard = committed.when(mark, wait=1.0 if shown is not None else 0.0)
        if trace is not None:
            trace.append({"mark": mark, "sent": sent, "notify": heard, "shown": shown})
        if shown is None:
            not_shown += 1
            in_a_row += 1
            committed_not_shown += heard is not None
            board.append(float("inf"))
        else:
            in_a_row = 0
            board.append(shown - sent)
            if heard is not None:
                recorder_part.append(heard - sent)
                board_part.append(max(0.0, shown - heard))
        if (i + 1) % 20 == 0 or shown is None:
            print(f"  sample {i + 1}/{samples}: {not_shown} not shown within {timeout:g} s "
                  f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
        if in_a_row >= give_up_after:
            error = (f"gave up after {i + 1} of {samples} samples: {in_a_row} in a row not shown within "
                     f"{timeout:g} s ({committed_not_shown} of all {not_shown} not shown were committed and "
                     f"announced: the rest never got past the recorder)")
            print(f"  {error}", file=sys.stderr, flush=True)
            break
        info.wait_for_publish(timeout)
        time.sleep(0.5)
    b, rc, bp = summary_ms(board), summary_ms(recorder_part), summary_ms(board_part)
    return {"samples": samples, "sent": len(board), "not_shown": not_shown,
            "not_shown_but_committed": committed_not_shown, "error": error,
            "board_p50_ms": round(b["p50_ms"], 1), "board_p99_ms": round(b["p99_ms"], 1),
            "split_samples": len(recorder_part),
            "to_notify_p50_ms": round(rc["p50_ms"], 1), "to_notify_p99_ms": round(rc["p99_ms"], 1),
            "notify_to_frame_p50_ms": round(bp["p50_ms"], 1), "notify_to_frame_p99_ms": round(bp["p99_ms"], 1)}


def events_written(dsn: str) -> int:
    """Rows inserted into the events partitions so far (statistics: cheap, about a second late)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute("SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables "
                        "WHERE relname LIKE 'events%'").fetchone()
    return int(row[0]) if row else 0


def checkpoints(dsn: str) -> int:
    """PostgreSQL checkpoints so far (timed and requested): each one writes every dirty buffer
    out, and the WAL grows with full pages after it."""
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter").fetchone()
    return int(row[0]) if row else 0


def sample_raw(probe: SimDoor, broker: Any, n: int, samples: int, timeout: float = 10.0) -> dict[str, Any]:
    """The raw baseline: publish -> a plain subscriber, same broker, same load (bounded like the
    board's samples)."""
    raw: list[float] = []
    seen: dict[str, float] = {}
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-raw-{n}")
    sub.username_pw_set("district", broker.accounts["district"])
    sub.on_message = lambda _c, _u, m: seen.setdefault(m.payload.decode(), time.time())
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("entry/probe/+/state", qos=1)
    sub.loop_start()
    try:
        time.sleep(0.5)
        for i in range(samples):
            payload = json.dumps(probe.state(door="locked", ts=f"raw-{i}"))
            sent = time.time()
            probe.client.publish("entry/probe/main-entrance/state", payload, qos=1, retain=True)
            deadline = time.monotonic() + timeout
            while payload not in seen and time.monotonic() < deadline:
                time.sleep(0.001)
            raw.append(seen[payload] - sent if payload in seen else float("inf"))
            if raw[-1] == float("inf") and raw[-3:] == [float("inf")] * 3:
                break
            time.sleep(0.1)
    finally:
        sub.disconnect()
        sub.loop_stop()
    r = summary_ms(raw)
    return {"p50_ms": round(r["p50_ms"], 2), "p99_ms": round(r["p99_ms"], 2),
            "not_seen": sum(1 for x in raw if x == float("inf"))}


def run_case(n: int, samples: int, tmp: Path, cycle_seconds: float = 10.0, timeout: float = 10.0,
             give_up_after: int = 5, door_trigger: bool = True,
             trace_file: Path | None = None, load_nice: int = LOAD_NICE) -> dict[str, Any]:
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
        # PGAPPNAME: their PostgreSQL backends are told apart in pg_stat_activity (CPU per side)
        procs.append(subprocess.Popen([str(BIN / "entry-buzzer-district"), "recorder", "--config", str(conf)],
                                      stdout=log, stderr=log, env={**os.environ, "PGAPPNAME": "recorder"}))
        procs.append(subprocess.Popen([str(BIN / "entry-buzzer-board"), "--config", str(conf), "serve"],
                                      stdout=log, stderr=log, env={**os.environ, "PGAPPNAME": "board"}))
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
        chunks = [campuses[:-1][i::LOAD_WORKERS] for i in range(LOAD_WORKERS)]
        workers = [ctx.Process(target=load_worker, args=(broker.port, password, chunk, cycle_seconds, ready, mp_stop,
                                                         load_nice), daemon=True) for chunk in chunks]
        for w in workers:
            w.start()
        connected = sum(ready.get(timeout=180) for _ in workers)
        assert connected == n, f"only {connected} of {n} campuses connected"
        probe = SimDoor("127.0.0.1", broker.port, "probe", password=password)
        probe.connected.wait(30)
        live = LiveGrid(board_port, "bench", PASSWORD)
        live.start()
        committed = Committed(pg.dsn, "probe/main-entrance")
        committed.start()
        if not door_trigger:    # A/B: the board hears the recorder's per-commit NOTIFY only
            with psycopg.connect(pg.dsn, autocommit=True) as c:
                c.execute("DROP TRIGGER IF EXISTS board_doors_changed ON doors")
        time.sleep(3)                                   # the load runs before the first sample
        meter = CpuMeter({"recorder": procs[0].pid, "board": procs[1].pid, "postgres": pg.proc.pid,
                          "load": [w.pid for w in workers], "broker": broker.proc.pid, "bench": os.getpid()},
                         pg.dsn, own=("bench",))
        rows0, t0, ck0 = events_written(pg.dsn), time.monotonic(), checkpoints(pg.dsn)
        load_before = os.getloadavg()[0]
        trace: list[dict[str, Any]] = []
        result = sample_board(probe, live, committed, samples, timeout, give_up_after, trace)
        result["cpu_per_second"] = meter.read()
        result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        result["checkpoints"] = checkpoints(pg.dsn) - ck0
        if trace_file is not None:
            trace_file.write_text(json.dumps(trace))
        # the load actually recorded over the sampling (the generator's target is events_per_second)
        result["events_recorded_per_second"] = round((events_written(pg.dsn) - rows0) / (time.monotonic() - t0), 1)
        result["raw_mqtt"] = sample_raw(probe, broker, n, samples)
        probe.close()
        mp_stop.set()           # the load's own count: every message it sent was acknowledged
        sent = [ready.get(timeout=60) for _ in workers]
        result["load_sent"] = {k: sum(x[k] for x in sent) for k in ("cycles", "published", "acknowledged")}
        return {"campuses": n, "events_per_second": round(n * 7 / cycle_seconds, 1), "cycle_seconds": cycle_seconds,
                "door_trigger": door_trigger, "load_nice": load_nice, **result, "live_streams": live.streams,
                "streams_ended": live.ended[:5]}
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
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="a probe change not shown within this many seconds counts as not shown")
    ap.add_argument("--give-up-after", type=int, default=5,
                    help="stop sampling (with an error) after this many changes in a row not shown")
    ap.add_argument("--trace", type=Path, default=None,
                    help="write each sample's publish, NOTIFY heard and frame shown times (JSON) to this file")
    ap.add_argument("--load-nice", type=int, default=LOAD_NICE,
                    help="run the simulated campuses' process at this lower priority (os.nice; 0: as the rest); "
                         "never the probe or the system under test")
    ap.add_argument("--no-door-trigger", action="store_true",
                    help="drop the board's per-row trigger on doors after start: the board then hears only "
                         "the recorder's per-commit NOTIFY (to measure what the trigger costs)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))   # a stopped bench still stops its servers
    tmp = Path(tempfile.mkdtemp(prefix="bench-board-"))
    results = []
    try:
        for n in args.campuses:
            results.append(run_case(n, args.samples, tmp, args.cycle_seconds, args.timeout, args.give_up_after,
                                    door_trigger=not args.no_door_trigger,
                                    trace_file=args.trace.with_suffix(f".{n}.json") if args.trace else None,
                                    load_nice=args.load_nice))
            print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n| campuses | events/s (recorded) | publish -> board p50 | p99 | of which publish -> NOTIFY p50 / p99 | "
          "NOTIFY -> frame p50 / p99 | not shown | raw MQTT p50 / p99 | CPU s/s recorder / board / PostgreSQL / load "
          "| load average start / end |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        cpu = r["cpu_per_second"]
        print(f"| {r['campuses']} | {r['events_per_second']} ({r['events_recorded_per_second']}) | "
              f"{r['board_p50_ms']} ms | {r['board_p99_ms']} ms | "
              f"{r['to_notify_p50_ms']} / {r['to_notify_p99_ms']} ms | "
              f"{r['notify_to_frame_p50_ms']} / {r['notify_to_frame_p99_ms']} ms | "
              f"{r['not_shown']} of {r['sent']} | {r['raw_mqtt']['p50_ms']} / {r['raw_mqtt']['p99_ms']} ms | "
              f"{cpu['recorder']} / {cpu['board']} / {cpu['postgres']} / {cpu['load']} | "
              f"{r['load_average'][0]} / {r['load_average'][1]} |")
    for r in results:
        if r["error"]:
            print(f"error: {r['campuses']} campuses: {r['error']}", file=sys.stderr)
    return 1 if any(r["error"] for r in results) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
