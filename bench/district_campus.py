"""A simulated door that speaks the MQTT contract (docs/mqtt.md) to a district broker, for
the district load bench and the recorder tests: its own client id, ``offline`` as last will,
retained ``online`` and ``state``, seq-numbered ``events`` with one journal epoch, occasional
snapshots published just before their ``snapshot_captured`` event. No controller behind it:
it produces exactly the traffic a district sees, as fast as asked.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import paho.mqtt.client as mqtt

# A minimal valid JPEG header + filler: the recorder checks the JPEG magic and the size cap.
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"


def now_ts() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fake_jpeg(size: int, salt: str) -> bytes:
    body = hashlib.sha256(salt.encode()).digest() * (size // 32 + 1)
    return (JPEG_HEAD + body)[: max(size, len(JPEG_HEAD))]


class SimDoor:
    def __init__(self, host: str, port: int, campus: str, door: str = "main-entrance", user: str = "ctl",
                 password: str = "", prefix: str = "entry", epoch: str | None = None, connect: bool = True):
        self.campus, self.door = campus, door
        self.root = f"{prefix}/{campus}/{door}"
        self.epoch = epoch or uuid.uuid4().hex
        self.seq = 0
        self.sent: list[dict[str, Any]] = []          # every event built, in seq order
        self.published_at: dict[str, float] = {}      # event id -> wall-clock publish time
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ctl-{campus}-{door}",
                                  protocol=mqtt.MQTTv311, clean_session=True)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        if user:
            self.client.username_pw_set(user, password)
        self.client.will_set(f"{self.root}/status", "offline", qos=1, retain=True)
        self.client.on_connect = lambda c, u, f, r, p: (not r.is_failure) and self._online()
        self.host, self.port = host, port
        if connect:
            self.start()

    def start(self) -> "SimDoor":
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self

    def _online(self) -> None:
        self.client.publish(f"{self.root}/status", "online", qos=1, retain=True)
        self.publish_state()
        self.connected.set()

    def state(self, **changes: Any) -> dict[str, Any]:
        s = {"alarms": [], "camera_ok": True, "campus": self.campus, "door": "locked", "door_id": self.door,
             "epoch": self.epoch, "fault": None, "last_seq": self.seq, "lockdown": None, "outbox_depth": 0,
             "ringing": None, "ts": now_ts(), "version": "0.1.0"}
        s.update(changes)
        return s

    def publish_state(self, **changes: Any) -> mqtt.MQTTMessageInfo:
        return self.client.publish(f"{self.root}/state", json.dumps(self.state(**changes)), qos=1, retain=True)

    def make_event(self, type_: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            self.seq += 1
            e = {"campus": self.campus, "door": self.door, "epoch": self.epoch, "id": str(uuid.uuid4()),
                 "seq": self.seq, "ts": now_ts(), "type": type_, **fields}
            self.sent.append(e)
        return e

    def send(self, event: dict[str, Any]) -> mqtt.MQTTMessageInfo:
        """Publishes (or re-publishes) one event as the controller does: QoS 1, not retained."""
        self.published_at.setdefault(event["id"], time.time())
        return self.client.publish(f"{self.root}/events", json.dumps(event, sort_keys=True), qos=1)

    def event(self, type_: str = "door_opened", **fields: Any) -> dict[str, Any]:
        e = self.make_event(type_, **fields)
        self.send(e)
        return e

    def ring(self, snapshot_bytes: int = 0) -> list[dict[str, Any]]:
        """A press, optionally with its snapshot (published just before snapshot_captured)."""
        request_id = str(uuid.uuid4())
        out = [self.event("buzzer_pressed", request_id=request_id, presses=1)]
        if snapshot_bytes:
            jpeg = fake_jpeg(snapshot_bytes, request_id)
            self.client.publish(f"{self.root}/snapshot/{request_id}", jpeg, qos=1)
            out.append(self.event("snapshot_captured", request_id=request_id, size=len(jpeg),
                                  sha256=hashlib.sha256(jpeg).hexdigest(), content_type="image/jpeg",
                                  snapshot=1, press=1))
        return out

    def publish_raw(self, suffix: str, payload: bytes | str, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(f"{self.root}/{suffix}", payload, qos=1, retain=retain)

    def flush(self, timeout: float = 60.0) -> None:
        """Waits until the broker acknowledged everything published so far."""
        deadline = time.monotonic() + timeout
        while self.client._out_messages and time.monotonic() < deadline:  # noqa: SLF001 (paho has no public count)
            time.sleep(0.01)
        if self.client._out_messages:  # noqa: SLF001
            raise TimeoutError(f"{self.root}: {len(self.client._out_messages)} messages unacknowledged")

    def close(self) -> None:
        """A clean stop: 'offline' published by the door itself, then DISCONNECT."""
        self.client.publish(f"{self.root}/status", "offline", qos=1, retain=True).wait_for_publish(10)
        self.client.disconnect()
        self.client.loop_stop()

    def vanish(self) -> None:
        """Power cut: the TCP connection drops without DISCONNECT, so the broker sends the will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()
