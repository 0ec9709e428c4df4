"""The paho client: TLS, the durable session, reconnect backoff and the one callback guard.

Why:
- A persistent session (the same client id every time, ``clean_start=False`` and a session
  expiry) makes the broker keep the door's command subscriptions and queue QoS 1 lockdown
  commands while the door is briefly offline; they are delivered on reconnect.
- The client id defaults to the MQTT username: brokers configured with
  ``use_username_as_clientid`` (the shipped examples) force that anyway, so another account
  cannot take the door's session over.
- paho's own backoff has no jitter; ours does, capped at a few seconds by default so the
  district sees a door again within seconds of a broker restart, without 23 campuses
  reconnecting in lockstep.
- paho's network thread runs our callbacks and an exception there kills the link, so every
  callback goes through ``guarded``.
- A publish from another thread (the core's change feed, the outbox worker) is written to
  the socket by that thread (``Client._packet_queue``) instead of waking paho's network
  thread through its socketpair for every message; that thread is woken only when the socket
  would block or it is busy writing itself. One lock serializes every socket read and write,
  so a TLS connection is never used by two threads at once.
- A successful MQTT 5 PUBACK (the message id and at most a success reason) is matched
  without building a ReasonCode and a Properties object per acknowledgement
  (``Client._handle_pubackcomp``; paho's decoding was a third of its network thread's time
  on a door); paho handles every other packet.
"""

from __future__ import annotations

import logging
import os
import random
import ssl
import struct
import threading
from functools import wraps
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .. import config as cfg

log = logging.getLogger("controller.mqtt")

QOS = 1


def topic_root(prefix: str, campus: str, door: str) -> str:
    return f"{prefix}/{campus}/{door}"


def client_id_for(settings: cfg.MqttSettings, campus: str, door: str) -> str:
    """Configured id, else the username (what use_username_as_clientid enforces), else a default."""
    return settings.client_id or settings.username or f"entry-{campus}-{door}"


def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """The one callback guard: log and carry on, never let an exception reach paho's thread."""
    @wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception:
            log.exception("mqtt: %s failed", method.__name__)
            return None
    return wrapper


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the handshake fails (e.g. wrong CA).

    paho leaves that socket open and retries every few seconds, leaking one file
    descriptor per attempt on a misconfigured controller.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def tls_context(settings: cfg.MqttSettings) -> ssl.SSLContext:
    """A client TLS context: verify the broker against the CA file, TLS 1.2 at least."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)        # check_hostname + CERT_REQUIRED
    ctx.sslsocket_class = _ClosingSSLSocket
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if settings.tls_min_version == "1.3" \
        else ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=cfg.secret_path(settings.tls_ca_file))
    if settings.tls_cert_file:
        ctx.load_cert_chain(certfile=cfg.secret_path(settings.tls_cert_file),
                            keyfile=cfg.secret_path(settings.tls_key_file))
    return ctx


# PUBACK reason -> the (reason, properties) pair handed to on_publish: success, no matching subscribers
_PUBACK_OK = {code: (ReasonCode(PacketTypes.PUBACK, identifier=code), Properties(PacketTypes.PUBACK))
              for code in (0x00, 0x10)}


class Client(mqtt.Client):
    """paho's client, remembering why the last connection attempt failed (e.g. a wrong CA).

    paho swallows the exception behind on_connect_fail; the operator needs the text.
    """

    on_attempt_error: Callable[[BaseException], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._io_lock = threading.RLock()      # one socket user at a time (TLS is not thread-safe)
        self.direct_writes = 0                 # packets a publishing thread wrote itself
        self.loop_wakes = 0                    # times paho's network thread was woken to write

    def _sock_recv(self, bufsize: int) -> bytes:
        with self._io_lock:
            return super()._sock_recv(bufsize)

    def _packet_write(self) -> mqtt.MQTTErrorCode:
        with self._io_lock:
            return super()._packet_write()

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: mqtt.MQTTMessageInfo | None = None) -> mqtt.MQTTErrorCode:
        """Queue a packet and, from any thread but paho's own, write it right here.

        paho's version always wakes its network thread (one byte through a socketpair, a
        select() wake-up and a context switch per message); on a door that is 12 wake-ups per
        ring/approve cycle. Writing here keeps paho's order (one queue, one lock) and falls back
        to waking it when the lock is taken or the socket would block."""
        loop = self._thread
        wake = self._sockpairW
        if loop is None or wake is None or loop is threading.current_thread() or self._sock is None:
            return super()._packet_queue(command, packet, mid, qos, info)
        self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0,
                                 "to_process": len(packet), "packet": packet, "info": info})
        if self._io_lock.acquire(blocking=False):
            try:
                rc = self._packet_write()
            finally:
                self._io_lock.release()
            if rc == mqtt.MQTT_ERR_SUCCESS and not self._out_packet:
                self.direct_writes += 1
                return mqtt.MQTT_ERR_SUCCESS
        # left over (the socket would block, an error, or the network thread is writing): let
        # paho's thread finish it, and notice a broken connection, exactly as paho does
        self.loop_wakes += 1
        try:
            wake.send(mqtt.sockpair_data)
        except (BlockingIOError, OSError):
            pass
        return mqtt.MQTT_ERR_SUCCESS

    def _handle_pubackcomp(self, cmd: Any) -> mqtt.MQTTErrorCode:
        """A successful PUBACK (only the message id, or it and "success" / "no matching
        subscribers" without properties) without paho's per-packet ReasonCode and Properties
        objects: one shared, unchanging pair per reason is passed on. Anything else: paho."""
        packet = self._in_packet["packet"]
        reason = _PUBACK_OK.get(packet[2] if len(packet) == 3 else 0) if cmd == "PUBACK" else None
        if reason is None or len(packet) not in (2, 3):
            return super()._handle_pubackcomp(cmd)
        mid, = struct.unpack("!H", packet[:2])
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, *reason)
        return mqtt.MQTT_ERR_SUCCESS

    def reconnect(self) -> mqtt.MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:
            if self.on_attempt_error is not None:
                guarded(self.on_attempt_error)(exc)
            raise


def hand_cpu_to_broker() -> None:
    """Give the CPU away once, right after a live event was written to the broker's socket.

    Linux treats the broker's wake-up by a socket write as a "sync" wake-up: it queues the
    broker on the writer's own CPU, expecting the writer to block next. The ring's thread does
    not block: it goes on with the ring (photo request, indicators, the retained state), so a
    broker on the same machine (``--with-mosquitto``, and the bench's) waited behind it. On the
    bench the event then took 0.48-0.50 ms from our write to the subscriber instead of the
    0.37-0.39 ms of a bare paho publish; with this, 0.34-0.37 ms. With nothing else runnable
    on this CPU it returns at once (one syscall)."""
    os.sched_yield()


class Backoff:
    """Exponential backoff with jitter: the n-th consecutive failure waits uniformly in
    [c/2, c], c = min(max, min * 2**(n-1))."""

    def __init__(self, min_seconds: float, max_seconds: float, rng: Callable[[], float] = random.random):
        self.min_seconds, self.max_seconds, self.rng = min_seconds, max_seconds, rng
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        cap = min(self.max_seconds, self.min_seconds * 2 ** min(self.failures - 1, 20))
        return cap / 2 + self.rng() * cap / 2

    def reset(self) -> None:
        self.failures = 0

    def schedule(self, client: Any) -> float:
        """Tell paho how long to wait before its next attempt (it waits min_delay next)."""
        delay = self.next_delay()
        client.reconnect_delay_set(delay, delay)
        return delay


def new_client(settings: cfg.MqttSettings, campus: str, door: str) -> Client:
    """manual_ack: a lockdown command is acknowledged to the broker only once it is handled,
    so a crash in between gets it re-delivered from the session."""
    return Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id_for(settings, campus, door),
                  protocol=mqtt.MQTTv5, manual_ack=True)


def configure(client: Client, settings: cfg.MqttSettings, status_topic: str, window: int) -> None:
    """Credentials, TLS, last will, window. Raises OSError/ValueError on unusable files."""
    if settings.username:
        password = cfg.read_secret(settings.password_file) if settings.password_file else None
        client.username_pw_set(settings.username, password)
    if settings.tls_ca_file:
        client.tls_set_context(tls_context(settings))
    client.will_set(status_topic, "offline", qos=QOS, retain=True)
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(settings.reconnect_min_seconds, settings.reconnect_min_seconds)  # type: ignore[arg-type]


def connect(client: Client, settings: cfg.MqttSettings) -> None:
    """Start connecting with a persistent session (kept session_expiry_seconds after a drop)."""
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = int(settings.session_expiry_seconds)
    client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_seconds,
                         clean_start=False, properties=properties)
