"""District load bench: N simulated campuses -> district Mosquitto -> recorder -> PostgreSQL.

    bash scripts/bench.sh district            # full run (several minutes), markdown + JSON
    bash scripts/bench.sh district --smoke    # tiny, seconds

Everything is real and private: a PostgreSQL cluster (initdb in a temp dir, default
durability: fsync on), a Mosquitto on a free port, the recorder as its own process
(``entry-buzzer-district recorder``). Each simulated campus is one door speaking the contract
(bench/district_campus.py): own client id, last will, retained status and state,
seq-numbered events, a snapshot with every ring.

Assumed school-morning peak, per campus: one ring cycle every 10 s (drop-off and late
arrivals at the main entrance): buzzer_pressed, a 30 KB snapshot + snapshot_captured,
entry_approved, door_unlocked, door_opened, door_closed, door_locked = 7 events, 1 snapshot and
3 retained states per cycle. "10x" is one cycle per second per campus.

Measured per case: messages offered and recorded, 0 lost / 0 duplicated, campus publish ->
row written p50/p99 (the row's clock_timestamp() at insert; its commit follows in the same
batch), recorder peak RSS. Capacity: a backlog queued at the broker while the recorder is
stopped, then drained: rows/s against raw PostgreSQL writes of the same rows in the same run
(plain INSERTs and COPY, 500 events per commit, no validation or dedupe; see raw_baseline),
``--pairs`` drains per size (5; 1 with --smoke), each followed by its own baselines, the
median ratio reported with every drain's (a single drain's ratio swings with the
neighbours' load, the baseline's as much as the recorder's); then two recorder instances
against one (three alternating pairs, medians). SIGKILL: the
recorder killed mid-load and restarted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import percentile
from tests.support_pg import PgCluster, start_pg
from tests.support_recorder import RecorderProcess, district_broker, recorder_settings, write_config

CYCLE_EVENTS = 7
SNAPSHOT_BYTES = 30_000


# ---------------------------------------------------------------- load generator (worker processes)

def _cycle(door: Any, snapshot_bytes: int) -> int:
    ring = door.ring(snapshot_bytes=snapshot_bytes)
    rid = ring[0]["request_id"]
    door.publish_state(ringing=rid)
    door.event("entry_approved", request_id=rid, actor="Office", presses=1, snapshot=1)
    door.event("door_unlocked", reason="approved", seconds=5)
    door.publish_state(door="unlocked")
    door.event("door_opened")
    door.event("door_closed")
    door.event("door_locked", reason="timer")
    door.publish_state()
    return 1


def _worker(port: int, password: str, campuses: list[str], period: float, duration: float, start_at: float,
            snapshot_bytes: int, out: str, cycles_each: int) -> None:
    from bench.district_campus import SimDoor

    doors = [SimDoor("127.0.0.1", port, c, "main-entrance", password=password) for c in campuses]
    for d in doors:
        if not d.connected.wait(60):
            raise SystemExit(f"{d.root} did not connect")
    cycles = 0
    if cycles_each:                         # backlog mode: a fixed number of cycles, as fast as possible
        for _ in range(cycles_each):
            for d in doors:
                cycles += _cycle(d, snapshot_bytes)
            for d in doors:
                d.flush(120)
    else:                                   # paced mode: one cycle per door per period, phases spread
        rng = random.Random(hash(tuple(campuses)))
        next_at = {d.root: start_at + rng.uniform(0, period) for d in doors}
        while time.time() < start_at:
            time.sleep(0.01)
        end = start_at + duration
        while True:
            now = time.time()
            if now >= end:
                break
            due = [d for d in doors if next_at[d.root] <= now]
            for d in due:
                cycles += _cycle(d, snapshot_bytes)
                next_at[d.root] += period
            time.sleep(max(0.0, min(0.02, min(next_at.values()) - time.time())))
    for d in doors:
        d.flush(180)
    with open(out, "w") as fh:
        json.dump({"cycles": cycles, "events": sum(d.seq for d in doors),
                   "published": [[i, t] for d in doors for i, t in d.published_at.items()]}, fh)
    for d in doors:
        d.close()


def start_delay(n: int) -> float:
    """Seconds the generator gives its clients to connect before the paced load starts."""
    return 3.0 + n * 0.02


def generate(port: int, password: str, campuses: list[str], period: float, duration: float, workdir: Path,
             snapshot_bytes: int = SNAPSHOT_BYTES, cycles_each: int = 0, start_at: float = 0.0) -> dict[str, Any]:
    nproc = max(1, min(4, len(campuses) // 25))
    slices = [campuses[i::nproc] for i in range(nproc)]
    start_at = start_at or time.time() + start_delay(len(campuses))
    outs = [str(workdir / f"gen-{i}.json") for i in range(nproc)]
    procs = [mp.get_context("fork").Process(target=_worker, args=(port, password, s, period, duration, start_at,
                                                                  snapshot_bytes, o, cycles_each))
             for s, o in zip(slices, outs, strict=False)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"load generator failed ({p.exitcode})")
    published: dict[str, float] = {}
    cycles = events = 0
    for o in outs:
        data = json.loads(Path(o).read_text())
        cycles += data["cycles"]
        events += data["events"]
        published.update({i: t for i, t in data["published"]})
    return {"cycles": cycles, "events": events, "published": published, "started": start_at}


# ---------------------------------------------------------------- measuring

def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (robust to a busy machine, unlike rates)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_rows(pg: PgCluster, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        with pg.connect() as conn:
            n = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        if n >= expected:
            time.sleep(0.5)
            with pg.connect() as conn:
                return conn.execute("SELECT count(*) FROM events").fetchone()[0]
        time.sleep(0.2)
    return n


def _check(pg: PgCluster, gen: dict[str, Any]) -> dict[str, Any]:
    with pg.connect() as conn:
        rows = conn.execute("SELECT id::text, extract(epoch FROM received_at) FROM events").fetchall()
        snapshots = conn.execute("SELECT count(*) FROM snapshots").fetchone()[0]
        rejected = conn.execute("SELECT coalesce(sum(count), 0) FROM rejected_totals").fetchone()[0]
    ids = [r[0] for r in rows]
    sent = gen["published"]
    lat = [float(r[1]) - sent[r[0]] for r in rows if r[0] in sent]
    return {"events_sent": gen["events"], "rows": len(ids), "lost": len(set(sent) - set(ids)),
            "duplicated": len(ids) - len(set(ids)), "snapshots": snapshots, "rejected": int(rejected),
            "latency_p50_ms": round(percentile(lat, 50) * 1000, 1),
            "latency_p99_ms": round(percentile(lat, 99) * 1000, 1)}


class Rig:
    """One private PostgreSQL + district broker for the whole run; fresh tables per case."""

    def __init__(self, workdir: Path, max_campuses: int):
        self.workdir = workdir
        self.max_campuses = max_campuses
        self.pg = start_pg(durable=True)
        self.pg.apply_schema()
        self.broker = district_broker(workdir / "broker")
        self.password = self.broker.accounts["ctl"]

    def reset(self) -> None:
        """Empty tables; every campus of the run registered (retained state of an earlier,
        larger case is still on the broker and must not count as unknown)."""
        self.pg.reset()
        with self.pg.connect() as conn:
            conn.execute("INSERT INTO campuses (campus) SELECT unnest(%s::text[])", (campuses_of(self.max_campuses),))

    def recorder(self, name: str, client_id: str, wait_for: str = "subscribed") -> RecorderProcess:
        settings = recorder_settings(self.pg, self.broker, client_id=client_id, gap_delay_seconds=30.0,
                                     gap_scan_seconds=5.0)
        config = write_config(self.workdir / f"{name}.toml", settings)
        log = self.workdir / f"{name}.log"
        log.write_text("")
        proc = RecorderProcess(config, log).start()
        deadline = time.monotonic() + 60
        while wait_for not in log.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError(f"recorder did not subscribe:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        return proc

    def close(self) -> None:
        self.broker.stop()
        self.pg.destroy()


def campuses_of(n: int) -> list[str]:
    return [f"campus-{i:03d}" for i in range(n)]


def paced(rig: Rig, n: int, period: float, duration: float, kill_at: float | None = None) -> dict[str, Any]:
    campuses = campuses_of(n)
    rig.reset()
    rec = rig.recorder(f"paced-{n}-{period}", f"bench-rec-{n}-{period}-{kill_at}")
    killer = None
    start_at = time.time() + start_delay(n)
    if kill_at is not None:
        import threading

        def kill_and_restart() -> None:
            time.sleep(max(0.0, start_at + kill_at - time.time()))
            rec.kill()
            time.sleep(1.0)
            rec.start()
        killer = threading.Thread(target=kill_and_restart, daemon=True)
        killer.start()
    gen = generate(rig.broker.port, rig.password, campuses, period, duration, rig.workdir, start_at=start_at)
    if killer is not None:
        killer.join()
    _wait_rows(rig.pg, gen["events"], timeout=120 + gen["events"] / 200)
    result = _check(rig.pg, gen)
    assert rec.proc is not None
    result.update(n=n, offered_events_per_s=round(gen["events"] / duration, 1),
                  rss_mb=round(_rss_kb(rec.proc.pid) / 1024, 1))
    rec.stop()
    rec.retire()
    return result


def backlog(rig: Rig, n: int, cycles_each: int, instances: int) -> dict[str, Any]:
    """Queue a backlog at the broker with the recorder(s) stopped, then time the drain."""
    campuses = campuses_of(n)
    rig.reset()
    ids = [f"bench-drain-{n}-{instances}-{i}" for i in range(instances)]
    # sessions exist, past their first start's retained catch-up (as for a recorder in service) ...
    recs = [rig.recorder(f"drain-{n}-{i}", cid, wait_for="retained catch-up done") for i, cid in enumerate(ids)]
    for r in recs:
        r.stop()                                                                # ... but are offline
    gen = generate(rig.broker.port, rig.password, campuses, 0.0, 0.0, rig.workdir, cycles_each=cycles_each)
    t0 = time.monotonic()
    recs, cpu0 = [], 0.0
    for i, cid in enumerate(ids):     # each one's CPU counted from its own start (they start in turn)
        recs.append(rig.recorder(f"drain-{n}-{i}", cid))
        cpu0 += _cpu_seconds(recs[-1].proc.pid) if recs[-1].proc is not None else 0.0
    got = _wait_rows(rig.pg, gen["events"], timeout=600)
    cpu = sum(_cpu_seconds(r.proc.pid) for r in recs if r.proc is not None) - cpu0
    wall = time.monotonic() - t0
    with rig.pg.connect() as conn:   # the recorders' working time: first row to last row written
        span = conn.execute("SELECT extract(epoch FROM max(received_at) - min(received_at)) FROM events").fetchone()[0]
    seconds = max(float(span or 0), 0.001)
    rss = max(_rss_kb(r.proc.pid) for r in recs if r.proc is not None)
    for r in recs:
        r.stop()
        r.retire()
    result = _check(rig.pg, gen)
    result.update(n=n, instances=instances, drain_seconds=round(seconds, 2), wall_seconds_with_start=round(wall, 2),
                  recorder_rows_per_s=round(got / seconds, 1), rss_mb=round(rss / 1024, 1),
                  recorder_cpu_ms_per_1000=round(cpu * 1e6 / max(got, 1), 1))
    return result


DRAIN_FIGURES = ("recorder_rows_per_s", "raw_insert_rows_per_s", "raw_copy_rows_per_s", "ratio_to_raw_insert",
                 "ratio_to_raw_copy", "recorder_cpu_ms_per_1000", "load_average")


def drain_pairs(rig: Rig, n: int, cycles_each: int, pairs: int) -> dict[str, Any]:
    """``pairs`` drains of the same backlog, each followed at once by its own raw baselines
    (drain, baselines, drain, baselines, ...: the neighbours' load drifts within minutes, and
    it moves the baselines as much as the recorder). Every figure is the median over the
    drains, each drain's own ratio (not a ratio of medians), with every drain's values in
    ``runs``; lost and duplicated are summed over all drains."""
    runs = []
    for _ in range(pairs):
        load = os.getloadavg()[0]
        d = backlog(rig, n, cycles_each, 1)
        d.update(raw_baseline(rig))
        d["ratio_to_raw_insert"] = round(d["recorder_rows_per_s"] / d["raw_insert_rows_per_s"], 2)
        d["ratio_to_raw_copy"] = round(d["recorder_rows_per_s"] / d["raw_copy_rows_per_s"], 2)
        d["load_average"] = round(load, 2)                  # 1-minute, as the drain started
        runs.append(d)
    out = dict(runs[-1])
    for key in DRAIN_FIGURES:
        out[key] = round(statistics.median(r[key] for r in runs), 2)
    out.update(pairs=pairs, lost=sum(r["lost"] for r in runs), duplicated=sum(r["duplicated"] for r in runs),
               rss_mb=max(r["rss_mb"] for r in runs), runs={key: [r[key] for r in runs] for key in DRAIN_FIGURES})
    return out


EVENT_COLUMNS = "id, campus, door, epoch, seq, type, ts, request_id, actor, data"
SNAPSHOT_COLUMNS = "campus, door, request_id, sha256, size, data"


def raw_baseline(rig: Rig, batch: int = 500) -> dict[str, Any]:
    """The same event and snapshot rows as the last drain, written straight into a fresh schema
    (no validation, no dedupe ledger, no door rows, no MQTT), ``batch`` events per commit, two
    ways: ``executemany`` of plain INSERTs (psycopg pipelines them: one round trip per batch,
    but the server plans and runs each row's statement) and ``COPY`` (PostgreSQL's bulk path:
    one stream per batch). The recorder itself writes each batch with a few array statements,
    so the COPY figure is the like-for-like batched baseline; both are reported."""
    with rig.pg.connect() as conn:
        events = conn.execute(f"SELECT {EVENT_COLUMNS.replace('data', 'data::text')}"
                              " FROM events ORDER BY received_at").fetchall()
        snaps = conn.execute(f"SELECT {SNAPSHOT_COLUMNS} FROM snapshots").fetchall()
    per_batch = max(1, len(snaps) * batch // max(1, len(events)))
    out: dict[str, Any] = {"rows": len(events), "snapshots": len(snaps)}
    for mode in ("insert", "copy"):
        rig.pg.reset()
        with rig.pg.connect() as conn:
            conn.execute("SELECT district_ensure_month(now())")
            conn.commit()
            t0 = time.perf_counter()
            with conn.cursor() as cur:
                for i in range(0, max(len(events), 1), batch):   # the last batch takes the snapshots left
                    s = i // batch * per_batch
                    more = snaps[s:s + per_batch] if i + batch < len(events) else snaps[s:]
                    with conn.transaction():
                        _raw_write(cur, mode, events[i:i + batch], more)
            seconds = time.perf_counter() - t0
        out[f"raw_{mode}_seconds"] = round(seconds, 2)
        out[f"raw_{mode}_rows_per_s"] = round(len(events) / seconds, 1)
    return out


def _raw_write(cur: Any, mode: str, events: list[Any], snaps: list[Any]) -> None:
    if mode == "insert":
        if events:
            cur.executemany(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
                            " %s::jsonb)", events)
        if snaps:
            cur.executemany(f"INSERT INTO snapshots ({SNAPSHOT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)", snaps)
        return
    for table, columns, rows in (("events", EVENT_COLUMNS, events), ("snapshots", SNAPSHOT_COLUMNS, snaps)):
        if rows:
            with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)


# ---------------------------------------------------------------- the run

def run(smoke: bool = False, sizes: tuple[int, ...] = (25, 100, 500), duration: float = 20.0,
        pairs: int = 5) -> dict[str, Any]:
    if smoke:
        sizes, duration, pairs = (3,), 3.0, 1
    out: dict[str, Any] = {"assumed_peak": "1 ring cycle per campus per 10 s = 0.7 events/s, 0.1 snapshots "
                           f"({SNAPSHOT_BYTES // 1000} KB)/s, 0.3 states/s per campus; 10x = 1 cycle/s",
                           "cpus": os.cpu_count(), "paced": [], "drain": [], "kill": None}
    with tempfile.TemporaryDirectory(prefix="district-bench-") as tmp:
        rig = Rig(Path(tmp), max(sizes))
        try:
            for n in sizes:
                for label, period in (("peak", 10.0), ("10x", 1.0)):
                    r = paced(rig, n, period, duration)
                    r["rate"] = label
                    out["paced"].append(r)
                    print(json.dumps(r), flush=True)
            for n in sizes:
                cycles = 2 if smoke else max(2, 2000 // n)
                d = drain_pairs(rig, n, cycles, pairs)
                out["drain"].append(d)
                print(json.dumps(d), flush=True)
            n2 = sizes[min(1, len(sizes) - 1)]
            cycles = 2 if smoke else max(2, 2000 // n2)
            pairs = []                      # alternating 1 / 2 instances: the neighbours' load drifts
            for _ in range(1 if smoke else 3):
                pairs.append((backlog(rig, n2, cycles, 1), backlog(rig, n2, cycles, 2)))
            one_rates = sorted(p[0]["recorder_rows_per_s"] for p in pairs)
            two_rates = sorted(p[1]["recorder_rows_per_s"] for p in pairs)
            two = dict(pairs[len(pairs) // 2][1], recorder_rows_per_s=two_rates[len(two_rates) // 2],
                       one_instance_rows_per_s=one_rates[len(one_rates) // 2], one_runs=one_rates, two_runs=two_rates)
            two["lost"] = sum(p[0]["lost"] + p[1]["lost"] for p in pairs)
            two["duplicated"] = sum(p[0]["duplicated"] + p[1]["duplicated"] for p in pairs)
            two["two_vs_one"] = round(two["recorder_rows_per_s"] / two["one_instance_rows_per_s"], 2)
            out["drain"].append(two)
            print(json.dumps(two), flush=True)
            k = paced(rig, n2, 1.0, duration, kill_at=duration / 3)
            k["rate"] = "10x, SIGKILL at 1/3"
            out["kill"] = k
            print(json.dumps(k), flush=True)
        finally:
            rig.close()
    return out


def table(results: dict[str, Any]) -> str:
    lines = ["| campuses | rate | events offered/s | rows | lost | dup | publish->row p50 | p99 | recorder RSS |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["paced"] + ([results["kill"]] if results["kill"] else []):
        lines.append(f"| {r['n']} | {r['rate']} | {r['offered_events_per_s']} | {r['rows']} | {r['lost']} | "
                     f"{r['duplicated']} | {r['latency_p50_ms']} ms | {r['latency_p99_ms']} ms | {r['rss_mb']} MB |")
    lines += ["", "| campuses | instances | backlog events | recorder events/s | raw INSERT events/s | ratio |"
              " raw COPY events/s | ratio | recorder CPU per 1000 events | lost | dup |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in results["drain"]:
        def cell(key: str, d: dict[str, Any] = d) -> str:     # the median, then every drain's value
            runs = d.get("runs", {}).get(key)
            value = d.get(key, "-")
            return f"**{value}** ({', '.join(str(v) for v in runs)})" if runs and len(runs) > 1 else str(value)
        rate = cell("recorder_rows_per_s")
        if "two_vs_one" in d:
            rate = f"{rate} (median of {d['two_runs']}; one instance alternately {d['one_runs']}: {d['two_vs_one']}x)"
        lines.append(f"| {d['n']} | {d['instances']} | {d['rows']} | {rate} | "
                     f"{cell('raw_insert_rows_per_s')} | {cell('ratio_to_raw_insert')} | "
                     f"{cell('raw_copy_rows_per_s')} | {cell('ratio_to_raw_copy')} | "
                     f"{cell('recorder_cpu_ms_per_1000')} ms | {d['lost']} | {d['duplicated']} |")
    loads = [v for d in results["drain"] for v in d.get("runs", {}).get("load_average", [])]
    if loads:
        lines.append(f"\nDrains per size: {results['drain'][0].get('pairs', 1)}, each followed by its own baselines"
                     f" (medians, every drain in brackets); load average as they started {min(loads)}-{max(loads)}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--sizes", default="25,100,500", help="campus counts, comma separated")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per paced case")
    parser.add_argument("--pairs", type=int, default=5, help="drains (each with its own baselines) per size")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    results = run(args.smoke, tuple(int(s) for s in args.sizes.split(",")), args.duration, args.pairs)
    print(table(results))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
