"""The district board bench's two observers of the probe door, and its process CPU meter.

Each sample gives the probe door a unique mark (its state's ``fault`` text, shown on the grid),
so a change is matched to its own sample only: a late change of an earlier sample (the chain
fell behind, that sample timed out) can never be taken for a later one, which would report a
short latency for a sample that was in fact slow.

``LiveGrid`` is signed in to the board and reads /live as a browser does; ``Committed`` hears
the NOTIFYs the board listens to and reads which mark the committed row holds: publish ->
NOTIFY is the recorder's share, NOTIFY -> frame the board's.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg

from bench.proc import cpu_seconds

CHANNELS = ("board_door", "district")   # the board's trigger channel and the recorder's per-commit one


class LiveGrid(threading.Thread):
    """Signed in to the board; records when each (door, mark) first shows on /live."""

    def __init__(self, port: int, username: str, password: str):
        super().__init__(daemon=True)
        self.port = port
        self.seen: dict[tuple[str, str], float] = {}
        self.streams = 0             # /live connections opened (more than 1: the board cut the stream, we reconnected)
        self.ended: list[str] = []   # how each stream ended (the last event seen)
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.conn: http.client.HTTPConnection | None = None
        self.cookie = self._sign_in(username, password)

    def _request(self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None) -> Any:
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.conn.request(method, path, body=body, headers=headers or {})
        return self.conn.getresponse()

    def _sign_in(self, username: str, password: str) -> str:
        r = self._request("GET", "/login")
        token = re.search(r'name="csrf_token" value="([^"]*)"', r.read().decode()).group(1)
        login_cookie = r.getheader("Set-Cookie").split(";")[0]
        self.close()
        r = self._request("POST", "/login", urlencode({"username": username, "password": password,
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
            elif text.startswith("data: ") and event == "grid" and '"fault":"' in text:
                # only a frame with a door's fault text can show a mark: the others (nearly all,
                # under load) are not parsed, so this observer costs little next to the board
                now = time.time()
                grid = json.loads(text[6:])
                with self.cond:
                    for c in grid["campuses"]:
                        for d in c["doors"]:
                            if d.get("fault"):
                                self.seen.setdefault((f"{c['campus']}/{d['door']}", d["fault"]), now)
                    self.cond.notify_all()

    def wait(self, key: tuple[str, str], timeout: float) -> float | None:
        """When ``key`` first showed, or None if it did not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while key not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.05))
            return self.seen[key]


class Committed(threading.Thread):
    """LISTENs on the board's channels like the board does; for each notification naming the
    probe door, reads the mark its committed row holds (on a second connection) and records when
    that notification was heard: the first time each mark was announced as committed."""

    def __init__(self, dsn: str, door: str):
        super().__init__(daemon=True)
        self.door = door
        self.campus, _, self.door_name = door.partition("/")
        self.heard: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.reader = psycopg.connect(dsn, autocommit=True)
        for channel in CHANNELS:
            self.conn.execute(f"LISTEN {channel}")

    def _names_probe(self, channel: str, payload: str) -> bool:
        if channel != "district":
            return payload in (self.door, f"{self.campus}/")
        try:
            doors = json.loads(payload).get("doors", [])
        except (ValueError, AttributeError):
            return True
        return doors == "*" or self.door in doors or f"{self.campus}/*" in doors

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for note in self.conn.notifies(timeout=0.5):
                    if self._names_probe(note.channel, note.payload):
                        t = time.time()
                        row = self.reader.execute("SELECT state->>'fault' FROM doors WHERE campus = %s AND door = %s",
                                                  (self.campus, self.door_name)).fetchone()
                        if row and row[0]:
                            with self.lock:
                                self.heard.setdefault(row[0], t)
        except psycopg.Error:
            pass
        finally:
            self.conn.close()
            self.reader.close()

    def when(self, mark: str, wait: float = 0.0) -> float | None:
        """When ``mark`` was announced committed. ``wait``: a mark the board already showed was
        announced before, but this thread may still be reading the row (the time recorded is
        the notification's, so waiting for it does not change it)."""
        deadline = time.monotonic() + wait
        while True:
            with self.lock:
                t = self.heard.get(mark)
            if t is not None or time.monotonic() >= deadline:
                return t
            time.sleep(0.005)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc: no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process tree, including its children that already exited (cutime + cstime):
    PostgreSQL's backends are children of the postmaster, which reaps them."""
    total = 0.0
    for p in descendants(pid):
        try:
            total += cpu_seconds(p)
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    return total


def backend_cpu_seconds(dsn: str) -> dict[tuple[str, int], float]:
    """CPU of each PostgreSQL backend of the recorder and the board (the bench starts them with
    PGAPPNAME): the database work each side causes."""
    with psycopg.connect(dsn, autocommit=True) as c:
        rows = c.execute("SELECT application_name, pid FROM pg_stat_activity WHERE application_name IN "
                         "('recorder', 'board')").fetchall()
    out: dict[tuple[str, int], float] = {}
    for app, pid in rows:
        try:
            out[(f"pg_{app}", pid)] = cpu_seconds(pid)
        except OSError:
            continue
    return out


class CpuMeter:
    """CPU seconds per wall second of named process trees (one pid or several: the load
    workers) over a window (2.0 = both cores), and of the PostgreSQL backends serving the
    recorder and the board (``pg_recorder``, ``pg_board``: part of ``postgres``; a backend that
    exits within the window loses its share)."""

    def __init__(self, pids: dict[str, int | list[int]], dsn: str | None = None, own: tuple[str, ...] = ()):
        self.pids = {name: p if isinstance(p, list) else [p] for name, p in pids.items()}
        self.own = own           # names measured without their children (the bench's own process)
        self.dsn = dsn
        self.t0 = time.monotonic()
        self.c0 = {name: self._cpu(name) for name in self.pids}
        self.b0 = backend_cpu_seconds(dsn) if dsn else {}

    def _cpu(self, name: str) -> float:
        if name in self.own:
            return sum(cpu_seconds(pid) for pid in self.pids[name])
        return sum(tree_cpu_seconds(pid) for pid in self.pids[name])

    def read(self) -> dict[str, float]:
        wall = max(1e-6, time.monotonic() - self.t0)
        out = {name: round((self._cpu(name) - self.c0[name]) / wall, 2) for name in self.pids}
        if self.dsn:
            b1 = backend_cpu_seconds(self.dsn)
            for side in ("pg_recorder", "pg_board"):
                used = sum(c - self.b0.get(key, 0.0) for key, c in b1.items() if key[0] == side)
                out[side] = round(used / wall, 2)
        return out
