"""The board bench's background load: many simulated campuses per process, one thread, plain
MQTT 3.1.1 packets on plain sockets.

Why not ``SimDoor`` (bench/district_campus.py) for the load: in the field the 500 campuses
are 500 Raspberry Pis, none of them on the district server; here the load runs on the same
2 cores as the system under test, so every CPU cycle it spends is taken from the recorder,
PostgreSQL and the board. ``SimDoor`` runs a paho client with its own network thread per door
(120 threads a process, each woken for every publish and every PUBACK) and keeps every event
it sent. ``WireDoor`` sends the same packets (the same topics, client ids, last will,
retained ``online`` and ``state``, QoS 1, the same JSON) with one ``send`` each from the
caller's thread, reads the broker's PUBACKs in bulk only to count them, and keeps nothing per
message. It speaks only what the load needs; the probe door and the tests keep ``SimDoor``.
"""

from __future__ import annotations

import hashlib
import json
import selectors
import socket
import struct
import time
import uuid
from typing import Any, Callable

from bench.district_campus import fake_jpeg, now_ts

KEEPALIVE = 60


def varint(n: int) -> bytes:
    """MQTT's variable byte integer (remaining length, property length): 7 bits per byte."""
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id: str, user: str, password: str, will_topic: str, will: bytes) -> bytes:
    """CONNECT, MQTT 3.1.1: clean session, will ``offline`` retained at QoS 1 (like SimDoor)."""
    flags = 0x02 | 0x04 | 0x08 | 0x20 | (0xC0 if user else 0)
    body = _text("MQTT") + bytes([4, flags]) + struct.pack("!H", KEEPALIVE)
    body += _text(client_id) + _text(will_topic) + _text(will)
    if user:
        body += _text(user) + _text(password)
    return b"\x10" + varint(len(body)) + body


def publish_packet(topic: bytes, payload: bytes, mid: int, retain: bool = False) -> bytes:
    """PUBLISH at QoS 1 (``topic`` already length-prefixed)."""
    return (bytes([0x32 | (0x01 if retain else 0)]) + varint(len(topic) + 2 + len(payload))
            + topic + struct.pack("!H", mid) + payload)


class WireDoor:
    """One campus door of the load, connected at construction (blocking, bounded by ``timeout``)."""

    def __init__(self, host: str, port: int, campus: str, door: str = "main-entrance", user: str = "ctl",
                 password: str = "", prefix: str = "entry", timeout: float = 30.0):
        self.campus, self.door = campus, door
        root = f"{prefix}/{campus}/{door}"
        self.topics = {k: _text(f"{root}/{k}") for k in ("status", "state", "events")}
        self.snapshot_root = f"{root}/snapshot/"
        self.epoch = uuid.uuid4().hex
        self.seq = 0
        self.mid = 0
        self.published = self.acked = 0
        self.last_sent = time.monotonic()
        self._in = b""
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(connect_packet(f"ctl-{campus}-{door}", user, password, f"{root}/status", b"offline"))
        connack = b""
        while len(connack) < 4:
            chunk = self.sock.recv(4 - len(connack))
            if not chunk:
                raise ConnectionError(f"{root}: the broker closed the connection")
            connack += chunk
        if connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"{root}: CONNACK refused ({connack[3]})")
        self.sock.setblocking(False)
        self.publish("status", b"online", retain=True)
        self.publish_state()

    # ------------------------------------------------------------------ sending
    def _send(self, packet: bytes) -> None:
        view = memoryview(packet)
        while view:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:           # the broker is behind: read its acks, then wait for it
                self.drain()
                self.sock.settimeout(30)
                try:
                    self.sock.sendall(view)
                finally:
                    self.sock.setblocking(False)
                break
        self.last_sent = time.monotonic()

    def publish(self, kind: str, payload: bytes, retain: bool = False, topic: bytes | None = None) -> None:
        self._send(self.packet(kind, payload, retain, topic))

    def packet(self, kind: str, payload: bytes, retain: bool = False, topic: bytes | None = None) -> bytes:
        """One PUBLISH (QoS 1), counted as published; the caller sends it."""
        self.mid = self.mid % 0xFFFF + 1
        self.published += 1
        return publish_packet(topic or self.topics[kind], payload, self.mid, retain)

    def state(self, ts: str | None = None, **changes: Any) -> bytes:
        s = {"alarms": [], "camera_ok": True, "campus": self.campus, "door": "locked", "door_id": self.door,
             "epoch": self.epoch, "fault": None, "last_seq": self.seq, "lockdown": None, "outbox_depth": 0,
             "ringing": None, "ts": ts or now_ts(), "version": "0.1.0"}
        s.update(changes)
        return json.dumps(s).encode()

    def publish_state(self, **changes: Any) -> None:
        self.publish("state", self.state(**changes), retain=True)

    def event(self, ts: str, type_: str, **fields: Any) -> bytes:
        """The PUBLISH of the door's next event."""
        self.seq += 1
        e = {"campus": self.campus, "door": self.door, "epoch": self.epoch, "id": str(uuid.uuid4()),
             "seq": self.seq, "ts": ts, "type": type_, **fields}
        return self.packet("events", json.dumps(e, sort_keys=True).encode())

    def cycle(self, snapshot_bytes: int = 30_000) -> None:
        """One ring cycle, as the board bench's load always sent it: a press with its snapshot,
        ringing state, approval, the door's unlock/open/close/lock, the quiet state (7 events,
        1 snapshot, 2 states), back to back as one write (one timestamp: they leave within
        the same millisecond anyway)."""
        ts, rid = now_ts(), str(uuid.uuid4())
        jpeg = fake_jpeg(snapshot_bytes, rid)
        out = [self.event(ts, "buzzer_pressed", request_id=rid, presses=1),
               self.packet("snapshot", jpeg, topic=_text(self.snapshot_root + rid)),
               self.event(ts, "snapshot_captured", request_id=rid, size=len(jpeg),
                          sha256=hashlib.sha256(jpeg).hexdigest(), content_type="image/jpeg", snapshot=1, press=1),
               self.packet("state", self.state(ts, ringing=None), retain=True),
               self.event(ts, "entry_approved", request_id=rid, actor="Office")]
        out += [self.event(ts, t) for t in ("door_unlocked", "door_opened", "door_closed", "door_locked")]
        out.append(self.packet("state", self.state(ts), retain=True))
        self._send(b"".join(out))

    # ------------------------------------------------------------------ receiving
    def drain(self) -> None:
        """Reads what the broker sent (PUBACKs, PINGRESPs) without waiting; counts the acks."""
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                raise ConnectionError(f"{self.campus}/{self.door}: the broker closed the connection")
            self._in += data
        buf, at = self._in, 0
        while len(buf) - at >= 2:
            kind, length, shift, i = buf[at] >> 4, 0, 0, at + 1
            while i < len(buf):
                length |= (buf[i] & 0x7F) << shift
                shift += 7
                i += 1
                if not buf[i - 1] & 0x80:
                    break
            else:
                break
            if len(buf) - i < length:
                break
            self.acked += kind == 4          # PUBACK
            at = i + length
        self._in = buf[at:]

    def ping_if_quiet(self, now: float) -> None:
        if now - self.last_sent > KEEPALIVE / 2:
            self._send(b"\xc0\x00")

    def close(self, timeout: float = 10.0) -> None:
        """A clean stop: ``offline`` published by the door itself, acknowledged, then DISCONNECT."""
        self.publish("status", b"offline", retain=True)
        deadline = time.monotonic() + timeout
        while self.acked < self.published and time.monotonic() < deadline:
            time.sleep(0.01)
            self.drain()
        self._send(b"\xe0\x00")
        self.sock.close()


def run_load(doors: list[WireDoor], stopped: Callable[[], bool], cycle_seconds: float = 10.0,
             clock: Callable[[], float] = time.monotonic,
             wait: Callable[[float], None] | None = None) -> int:
    """One ring cycle per campus every ``cycle_seconds``, spread evenly over the doors, on a
    fixed schedule (each cycle due at ``start + i * gap``: the time a cycle takes does not
    stretch the period; waiting a fixed gap after each cycle delivered only 78-85 % of the
    10x rate), in this thread; between cycles ``wait`` reads the broker's acks. Returns the
    cycles sent."""
    sel = selectors.DefaultSelector()
    if wait is None:
        for d in doors:
            sel.register(d.sock, selectors.EVENT_READ, d)

        def wait(timeout: float) -> None:
            for key, _ in sel.select(timeout):
                key.data.drain()
    gap = cycle_seconds / max(1, len(doors))
    started = next_ping = clock()
    i = 0
    try:
        while not stopped():
            now = clock()
            due = started + i * gap
            if due > now:
                wait(min(due - now, 0.05))
                continue
            doors[i % len(doors)].cycle()
            i += 1
            if now >= next_ping:
                next_ping = now + 5
                for d in doors:
                    d.ping_if_quiet(now)
    finally:
        sel.close()
    return i
