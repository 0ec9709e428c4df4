"""The recorder's MQTT side: one paho client (MQTT v5, VERSION2 callbacks, manual ack).

Everything comes through shared subscriptions (``$share/<group>/...``), so several recorder
instances split the whole feed. Retained messages are never sent on shared subscriptions
(MQTT 5, 4.8.2), so a recorder starting with a fresh session (first start, or its session
expired) also subscribes plainly to ``state`` and ``status`` for a few seconds
(``retained_catchup_seconds``) to learn every door's current picture, then unsubscribes. The
session is persistent (clean start off, session expiry) so messages not yet acknowledged when
a recorder dies are delivered again when it returns. A message is acknowledged only by
``ack()`` after its row is committed; acknowledgements for a connection that has since dropped
are not sent (the broker re-sends those messages; the database dedupes them).
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from district.config import Broker
from district.recorder.wire import BufferedClient

log = logging.getLogger("district.recorder")

CATCHUP_ID = 7   # MQTT 5 subscription identifier of the plain catch-up subscription


@dataclass(slots=True)            # not frozen: made for every message on the network thread (see Event)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int           # which connection delivered it
    retained: bool = False    # a retained message (only the catch-up subscription gets those)
    copy: bool = False        # a live copy on the catch-up subscription: acknowledged, not written
    committed: bool = False   # its lane committed it (fastlane.AckOrder: acknowledged in arrival order)


class Inbox(Protocol):
    """Where the network thread puts each message: a queue, or the recorder's lane router."""

    def put(self, item: Message) -> None: ...


class RecorderLink:
    def __init__(self, settings: Broker, password: str, inbox: "Inbox | queue.Queue[Message]"):
        self.settings = settings
        self.inbox = inbox
        self.generation = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.catchup_done = threading.Event()
        self.catchup_since: datetime | None = None   # when the current retained catch-up began
        self._shared_mid: int | None = -1
        self._catchup_mid: int | None = -1
        self._lock = threading.Lock()
        c = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                           protocol=mqtt.MQTTv5, manual_ack=True)
        if settings.username:
            c.username_pw_set(settings.username, password)
        if settings.tls:
            c.tls_set(ca_certs=settings.ca_file or None, certfile=settings.cert_file or None,
                      keyfile=settings.key_file or None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_plain_publish = self._on_plain_publish
        self.client = c

    def topics(self) -> list[tuple[str, SubscribeOptions]]:
        p, g = self.settings.prefix, self.settings.share_group
        q1 = SubscribeOptions(qos=1)
        return [(f"$share/{g}/{p}/+/+/{kind}", q1) for kind in ("events", "snapshot/+", "state", "status")]

    def catchup_topics(self) -> list[str]:
        p = self.settings.prefix
        return [f"{p}/+/+/state", f"{p}/+/+/status"]

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_seconds
        props.ReceiveMaximum = self.settings.receive_maximum
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_seconds,
                                  clean_start=False, properties=props)
        self.client.loop_start()

    def stop(self, retire: bool = False) -> None:
        """Disconnects, keeping the session (and its queued messages) for the next start; with
        ``retire`` the broker ends the session: an instance taken out of service must retire,
        or the broker keeps queueing its share of the shared subscription for it."""
        props = None
        if retire:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self.client.disconnect(properties=props)
        self.client.loop_stop()

    def retire_session(self, timeout: float = 15.0) -> bool:
        """Ends this client id's session at the broker (connect with clean start, disconnect
        with session expiry 0), for an instance taken out of service while stopped."""
        done = threading.Event()
        def connected(c: Any, u: Any, f: Any, r: Any, p: Any) -> None:
            if not r.is_failure:
                done.set()
        self.client.on_connect = connected
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        try:
            self.client.connect(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_seconds,
                                clean_start=True, properties=props)
        except OSError as exc:
            log.error("cannot reach the district broker: %s", exc)
            return False
        self.client.loop_start()
        ok = done.wait(timeout)
        self.client.disconnect()
        self.client.loop_stop()
        return ok

    def ack(self, messages: list[Message]) -> None:
        """Acknowledges committed messages, in arrival order (MQTT requires it), the PUBACKs
        of one batch as one write."""
        with self._lock:
            current = self.generation if self.connected.is_set() else -1
        live = [m for m in messages if m.qos > 0 and m.generation == current]
        self.client.ack_many(m.mid for m in live if m.qos == 1)
        for m in live:
            if m.qos == 2:                      # never with the recorder's QoS 1 subscriptions
                self.client.ack(m.mid, m.qos)

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("district broker refused the recorder: %s", reason)
            return
        with self._lock:
            self.generation += 1
            self.connected.set()
        log.info("connected to the district broker (session present: %s)", flags.session_present)
        _rc, self._shared_mid = client.subscribe(self.topics())
        if flags.session_present:
            # the session kept every live message for us; a catch-up cut short by a crash ends here
            client.unsubscribe(self.catchup_topics())
            self.catchup_done.set()
        else:
            self.catchup_done.clear()
            self.catchup_since = datetime.now(timezone.utc)
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = CATCHUP_ID
            _rc, self._catchup_mid = client.subscribe([(t, SubscribeOptions(qos=1)) for t in self.catchup_topics()],
                                                      properties=props)

    def _end_catchup(self, generation: int) -> None:
        if generation == self.generation and self.connected.is_set():
            self.client.unsubscribe(self.catchup_topics())
            log.info("retained catch-up done: state and status now come through the shared subscription only")
        self.catchup_done.set()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, reasons: list[Any], _p: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("subscription refused by the broker: %s", ", ".join(refused))
        elif mid == self._catchup_mid:
            timer = threading.Timer(self.settings.retained_catchup_seconds, self._end_catchup, (self.generation,))
            timer.daemon = True
            timer.start()
        elif mid == self._shared_mid:
            log.info("subscribed: %s", ", ".join(t for t, _ in self.topics()))
            self.subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._lock:
            self.connected.clear()
            self.subscribed.clear()
        log.warning("disconnected from the district broker: %s", reason)

    def _on_plain_publish(self, topic: str, payload: bytes, mid: int, retain: bool) -> None:
        """The feed's ordinary message (QoS 1, no properties), parsed by the short path."""
        self.inbox.put(Message(topic, payload, mid, 1, self.generation, retain))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        # a live copy on the catch-up subscription (the shared one has it) is only acknowledged,
        # in its turn with the others (MQTT wants PUBACKs in arrival order)
        copy = not msg.retain and CATCHUP_ID in (getattr(msg.properties, "SubscriptionIdentifier", None) or [])
        self.inbox.put(Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self.generation, bool(msg.retain),
                               copy))
