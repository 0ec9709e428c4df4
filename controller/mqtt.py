"""The MQTT link to district monitoring: status, state, the event feed and lockdown commands.

Why it is shaped like this:
- The SQLite journal is the outbox. One worker thread publishes undelivered
  events in seq order and marks them delivered only when the broker's PUBACK
  for that message id arrives. Nothing is deleted; after any disconnect (or a
  restart, even after SIGKILL) everything not acknowledged is sent again, so
  delivery is at least once and consumers dedupe by ``id``.
- paho's network thread runs our callbacks; an exception there kills the
  link, so every callback is tiny, guarded, and only hands work to the worker.
- Commands arriving over the bus are hostile until proven otherwise: retained,
  oversized, malformed or not-allowed commands change nothing and are journaled
  as ``command_rejected``. The only command is lockdown. There is no unlock
  topic, and nothing in this module or the config can add one.
- Reconnects use exponential backoff with random jitter (paho's own backoff has
  none) so 23 campuses coming back after a district outage do not stampede.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import ssl
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from . import config as cfg
from . import events as ev

log = logging.getLogger(__name__)

QOS = 1
WINDOW = 100                 # events in flight (published, not yet acknowledged) at most
COMMAND_MAX_BYTES = 1024
COMMAND_QUEUE = 100          # commands waiting for the worker; more are dropped (and counted)
COMMAND_FIELDS = {"action": 64, "id": 64, "reason": 200, "by": 100}   # field -> max length
COMMAND_REQUIRED = ("action", "id", "by")
REFUSED_RETRY_SECONDS = 5.0  # after the broker refused an event publish (e.g. ACL), wait before resending


def topic_root(prefix: str, campus: str, door: str) -> str:
    return f"{prefix}/{campus}/{door}"


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
    ctx.load_verify_locations(cafile=cfg._secret_path(settings.tls_ca_file))
    if settings.tls_cert_file:
        ctx.load_cert_chain(certfile=cfg._secret_path(settings.tls_cert_file),
                            keyfile=cfg._secret_path(settings.tls_key_file))
    return ctx


class CommandError(ValueError):
    """A command that must be refused; the message is the journaled reason."""


def parse_command(payload: bytes, allow_end: bool) -> dict[str, str]:
    """Validate a lockdown command strictly. Returns the fields or raises CommandError."""
    if len(payload) > COMMAND_MAX_BYTES:
        raise CommandError(f"too large: {len(payload)} bytes (limit {COMMAND_MAX_BYTES})")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CommandError(f"malformed: not UTF-8 JSON ({str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise CommandError("malformed: the command must be a JSON object")
    unknown = sorted(set(data) - set(COMMAND_FIELDS))
    if unknown:
        raise CommandError(f"invalid: unknown field(s) {', '.join(k[:40] for k in unknown[:5])}")
    for key in COMMAND_REQUIRED:
        if key not in data:
            raise CommandError(f"invalid: missing field {key!r}")
    for key, limit in COMMAND_FIELDS.items():
        value = data.get(key, "")
        if not isinstance(value, str):
            raise CommandError(f"invalid: {key!r} must be a string")
        if len(value) > limit:
            raise CommandError(f"invalid: {key!r} longer than {limit} characters")
        if key in COMMAND_REQUIRED and not value.strip():
            raise CommandError(f"invalid: {key!r} must not be empty")
    if data["action"] not in ("start", "end"):
        raise CommandError(f"invalid: unknown action {data['action'][:40]!r}; expected 'start' or 'end'")
    if data["action"] == "end" and not allow_end:
        raise CommandError("not allowed: ending a lockdown over MQTT is disabled "
                           "(mqtt.allow_remote_lockdown_end); end it from the panel")
    return {"action": data["action"], "id": data["id"], "reason": data.get("reason", ""),
            "by": data["by"].strip()}


class _Client(mqtt.Client):
    """paho's client, remembering why the last connection attempt failed (e.g. a wrong CA).

    paho swallows the exception behind on_connect_fail; the operator needs the text.
    """

    on_attempt_error: Callable[[BaseException], None] | None = None

    def reconnect(self) -> mqtt.MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:
            if self.on_attempt_error is not None:
                try:
                    self.on_attempt_error(exc)
                except Exception:
                    log.exception("recording a connection error failed")
            raise


class MqttLink:
    """The ``mqtt`` service of the daemon."""

    name = "mqtt"

    def __init__(self, controller: Any, rng: Callable[[], float] = random.random):
        self.controller = controller
        self.settings: cfg.MqttSettings = controller.settings.mqtt
        site = controller.settings.site
        s = self.settings
        self.root = topic_root(s.prefix, site.campus, site.door)
        self.topic_status = f"{self.root}/status"
        self.topic_state = f"{self.root}/state"
        self.topic_events = f"{self.root}/events"
        self.command_topics = (f"{self.root}/cmd/lockdown", f"{s.prefix}/all/cmd/lockdown")
        self._rng = rng

        self._lock = threading.Lock()          # guards everything below that callbacks touch
        # Held while publishing events and recording their mids, and while matching acks to
        # mids, so an ack can never be matched before its mid is recorded. Never held by paho
        # callbacks (on_publish only takes _lock), so publishing under it cannot deadlock.
        self._publish_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = False
        self._subscribed = False               # the broker granted the command subscriptions
        self._reset_pending = False            # a new connection: resend everything unacknowledged
        self._state_dirty = True
        self._acks: list[tuple[int, bool, str]] = []      # (mid, ok, reason) from on_publish
        self._inflight: OrderedDict[int, int] = OrderedDict()   # mid -> seq, in publish order
        self._sent_upto = 0                    # highest seq published on this connection
        self._refused_until = 0.0
        self._commands: queue.Queue[tuple[str, bytes, bool]] = queue.Queue(COMMAND_QUEUE)
        self._failures = 0
        self.last_error: str | None = None
        self._logged_error: str | None = None
        self.delivered_count = 0
        self.published_count = 0
        self.connects = 0
        self.commands_accepted = 0
        self.commands_rejected = 0
        self.commands_dropped = 0
        self.backlog_alarm = False
        self._depth: int | None = None
        self._last_state: dict[str, Any] | None = None
        self._client: _Client | None = None
        self._worker: threading.Thread | None = None

    @classmethod
    def for_controller(cls, controller: Any) -> "MqttLink":
        return cls(controller)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        s = self.settings
        site = self.controller.settings.site
        client = _Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=s.client_id or f"entry-{site.campus}-{site.door}",
                         protocol=mqtt.MQTTv5)
        client.on_attempt_error = self._on_attempt_error
        self.controller.journal.subscribe(self._on_journal_event)
        self.controller.core.add_listener(self._on_core_change)
        self._worker = threading.Thread(target=self._run_worker, name="mqtt-outbox", daemon=True)
        self._worker.start()          # runs even without a broker: it keeps the backlog alarm honest
        try:
            if s.username:
                client.username_pw_set(s.username, cfg.read_secret(s.password_file) if s.password_file else None)
            if s.tls_ca_file:
                client.tls_set_context(tls_context(s))
        except (OSError, ValueError) as exc:
            # A broken MQTT setup must never take the door down: report it, keep journaling.
            self._set_error(f"not connecting: MQTT credentials or TLS files unusable ({exc})")
            return
        client.will_set(self.topic_status, "offline", qos=QOS, retain=True)
        client.max_inflight_messages_set(WINDOW)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(s.reconnect_min_seconds, s.reconnect_max_seconds)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        client.connect_async(s.host, s.port, keepalive=s.keepalive_seconds, clean_start=True)
        client.loop_start()
        log.info("mqtt: connecting to %s:%d as %r (tls %s), topic root %s", s.host, s.port,
                 s.username or "<anonymous>", "on" if s.tls_ca_file else "off", self.root)

    def stop(self) -> None:
        """Clean stop: publish the retained ``offline`` before disconnecting (no last will then)."""
        self._stopping.set()
        self._wake.set()
        self.controller.journal.unsubscribe(self._on_journal_event)
        if self._worker is not None:
            self._worker.join(timeout=10)
        client = self._client
        if client is None:
            return
        try:
            if self._connected:
                info = client.publish(self.topic_status, "offline", qos=QOS, retain=True)
                info.wait_for_publish(timeout=5)
        except Exception as exc:   # stopping must go on; the broker then sends the last will
            log.warning("mqtt: could not publish offline on stop: %s", exc)
        try:
            client.disconnect()
        finally:
            client.loop_stop()
            self._connected = False

    def health(self) -> dict[str, Any]:
        with self._lock:
            inflight = len(self._inflight)
        return {"connected": self._connected, "subscribed": self._subscribed,
                "broker": f"{self.settings.host}:{self.settings.port}",
                "tls": bool(self.settings.tls_ca_file), "topic_root": self.root,
                "last_error": self.last_error, "outbox_depth": self._depth, "inflight": inflight,
                "published_count": self.published_count, "delivered_count": self.delivered_count,
                "connects": self.connects, "backlog_alarm": self.backlog_alarm,
                "commands_accepted": self.commands_accepted, "commands_rejected": self.commands_rejected,
                "commands_dropped": self.commands_dropped}

    # ------------------------------------------------------------ paho callbacks (tiny, guarded)
    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                    _properties: Any) -> None:
        try:
            if reason.is_failure:
                self._set_error(f"broker refused the connection: {reason}")
                return
            with self._lock:
                self._connected = True
                self._reset_pending = True
                self._state_dirty = True
                self._failures = 0
                self.connects += 1
            client.reconnect_delay_set(self.settings.reconnect_min_seconds,   # type: ignore[arg-type]
                                       self.settings.reconnect_max_seconds)   # type: ignore[arg-type]
            client.subscribe([(t, SubscribeOptions(qos=QOS, retainAsPublished=True, noLocal=True))
                              for t in self.command_topics])
            client.publish(self.topic_status, "online", qos=QOS, retain=True)
            if self.last_error:
                log.info("mqtt: connected to %s:%d (previous error: %s)", self.settings.host,
                         self.settings.port, self.last_error)
            self.last_error = None
            self._logged_error = None
            self._wake.set()
        except Exception:
            log.exception("mqtt: on_connect failed")

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any,
                      _properties: Any) -> None:
        try:
            failed = [str(r) for r in reasons if getattr(r, "is_failure", False)]
            self._subscribed = not failed
            if failed:
                self._set_error(f"broker refused the command subscriptions ({', '.join(failed)}); "
                                "lockdown commands cannot arrive (check the ACL)")
        except Exception:
            log.exception("mqtt: on_subscribe failed")

    def _on_connect_fail(self, client: mqtt.Client, _userdata: Any) -> None:
        try:
            self._schedule_retry(client)
        except Exception:
            log.exception("mqtt: on_connect_fail failed")

    def _on_disconnect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _properties: Any) -> None:
        try:
            was = self._connected
            self._connected = False
            self._subscribed = False
            if self._stopping.is_set():
                return
            if was:
                self._set_error(f"connection lost: {reason}")
            elif not (self.last_error or "").startswith("broker refused"):
                self._set_error(f"the broker closed the connection before accepting it ({reason}); "
                                "check host, port and TLS settings")
            self._schedule_retry(client)
            self._wake.set()
        except Exception:
            log.exception("mqtt: on_disconnect failed")

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, reason: Any,
                    _properties: Any) -> None:
        try:
            failed = bool(getattr(reason, "is_failure", False))
            with self._lock:
                self._acks.append((mid, not failed, str(reason)))
            self._wake.set()
        except Exception:
            log.exception("mqtt: on_publish failed")

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._commands.put_nowait((str(message.topic), bytes(message.payload), bool(message.retain)))
            self._wake.set()
        except queue.Full:
            self.commands_dropped += 1
            log.warning("mqtt: command queue full; dropped a message on %s", message.topic)
        except Exception:
            log.exception("mqtt: on_message failed")

    def _on_attempt_error(self, exc: BaseException) -> None:
        self._set_error(f"cannot connect to {self.settings.host}:{self.settings.port}: {exc}")

    # ------------------------------------------------------------ controller listeners
    def _on_journal_event(self, event: ev.Event) -> None:
        """Called right after the commit. Publish at once when this event is next in order
        (the common case), so the district hears a press before the snapshot thread even
        starts competing for the CPU; otherwise the worker drains it from the journal."""
        self._state_dirty = True
        try:
            self._publish_next(event)
        except Exception:
            log.exception("mqtt: immediate publish failed; the worker will send it")
        self._wake.set()

    def _publish_next(self, event: ev.Event) -> None:
        client = self._client
        if (client is None or not self._connected or self._stopping.is_set()
                or event.type == ev.SNAPSHOT_CAPTURED            # its JPEG goes first: worker's job
                or time.monotonic() < self._refused_until):
            return
        if not self._publish_lock.acquire(blocking=False):    # the worker is draining: it will
            return                                            # pick this event up in order
        try:
            with self._lock:
                if (self._reset_pending or self._sent_upto != event.seq - 1
                        or len(self._inflight) >= WINDOW):
                    return
            info = client.publish(self.topic_events, event.to_json(), qos=QOS)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return
            with self._lock:
                self._inflight[info.mid] = event.seq
                self._sent_upto = event.seq
            self.published_count += 1
        finally:
            self._publish_lock.release()

    def _on_core_change(self) -> None:
        self._state_dirty = True
        self._wake.set()

    # ------------------------------------------------------------ helpers
    def _set_error(self, text: str) -> None:
        self.last_error = text
        if text != self._logged_error:       # log each new error once, not every retry
            self._logged_error = text
            log.error("mqtt: %s", text)

    def _schedule_retry(self, client: mqtt.Client) -> None:
        """Exponential backoff with jitter: wait uniformly in [cap/2, cap], cap doubling per failure."""
        s = self.settings
        self._failures += 1
        cap = min(s.reconnect_max_seconds, s.reconnect_min_seconds * 2 ** min(self._failures - 1, 20))
        delay = cap / 2 + self._rng() * cap / 2
        client.reconnect_delay_set(delay, delay)   # type: ignore[arg-type]  # paho waits min_delay next

    # ------------------------------------------------------------ worker
    def _run_worker(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self._step()
            except Exception as exc:     # the journal failed or paho misbehaved: keep going
                log.exception("mqtt: outbox worker step failed")
                self.last_error = f"outbox worker: {exc}"
                self._stopping.wait(1.0)

    def _step(self) -> None:
        self._handle_commands()
        self._handle_acks()
        with self._publish_lock, self._lock:
            reset, self._reset_pending = self._reset_pending, False
            if reset:
                self._inflight.clear()
                self._sent_upto = 0
        if self._connected:
            self._drain()
        self._check_backlog()
        if self._connected and (self._state_dirty or reset):
            self._state_dirty = False
            self._publish_state(force=reset)

    def _handle_acks(self) -> None:
        with self._publish_lock, self._lock:
            acks, self._acks = self._acks, []
            delivered: list[int] = []
            refused: list[str] = []
            for mid, ok, reason in acks:
                seq = self._inflight.pop(mid, None)
                if seq is None:
                    continue           # status/state/snapshot, or a message of an earlier connection
                if ok:
                    delivered.append(seq)
                else:
                    refused.append(reason)
            if refused:
                # Keep order: resend from the first undelivered event once the refusal may be fixed.
                self._inflight.clear()
                self._sent_upto = 0
                self._refused_until = time.monotonic() + REFUSED_RETRY_SECONDS
        if refused:
            self._set_error(f"broker refused event publish: {refused[0]} (check the ACL for {self.root}/#)")
        if delivered:
            self.controller.journal.mark_delivered(delivered)
            self.delivered_count += len(delivered)
            self._state_dirty = True

    def _drain(self) -> None:
        with self._publish_lock:
            self._drain_locked()

    def _drain_locked(self) -> None:
        client = self._client
        if client is None or time.monotonic() < self._refused_until:
            return                     # the worker wakes at least every second and retries then
        with self._lock:
            room = WINDOW - len(self._inflight)
            after = self._sent_upto
        if room <= 0:
            return
        for event in self.controller.journal.undelivered(limit=room, after_seq=after):
            if not self._connected or self._stopping.is_set():
                return
            if event.type == ev.SNAPSHOT_CAPTURED and self.settings.publish_snapshots and event.request_id:
                self._publish_snapshot(client, event.request_id)
            info = client.publish(self.topic_events, event.to_json(), qos=QOS)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return                 # not connected any more: the reconnect resends from the journal
            with self._lock:
                self._inflight[info.mid] = event.seq
                self._sent_upto = event.seq
            self.published_count += 1

    def _publish_snapshot(self, client: mqtt.Client, request_id: str) -> None:
        """The JPEG goes out just before its event (best effort: the event carries size and sha256)."""
        path = self.controller.snapshots.path_for(request_id)
        if path is None:
            return
        try:
            data = path.read_bytes()
        except OSError as exc:
            log.warning("mqtt: snapshot %s unreadable: %s", request_id, exc)
            return
        client.publish(f"{self.root}/snapshot/{request_id}", data, qos=QOS)

    def _check_backlog(self) -> None:
        """Raise the outbox_backlog alarm above the configured depth; clear it at 80% (no flapping)."""
        depth = self.controller.journal.outbox_depth()
        self._depth = depth
        limit = self.settings.outbox_alarm_depth
        if not self.backlog_alarm and depth > limit:
            self.backlog_alarm = True
            log.error("mqtt: outbox backlog %d events exceeds %d; still recording", depth, limit)
            self.controller.core.set_alarm("outbox_backlog", True, depth=depth, limit=limit)
        elif self.backlog_alarm and depth <= limit * 8 // 10:
            self.backlog_alarm = False
            log.info("mqtt: outbox backlog down to %d events", depth)
            self.controller.core.set_alarm("outbox_backlog", False)

    def state_payload(self) -> dict[str, Any]:
        status = self.controller.status()
        return {"campus": status["campus"], "door_id": status["door_id"], "door": status["door"],
                "lockdown": status["lockdown"],
                "ringing": (status["ring"] or {}).get("request_id"),
                "last_seq": status["last_seq"], "epoch": status.get("epoch"), "outbox_depth": self._depth if self._depth is not None
                else self.controller.journal.outbox_depth(),
                "camera_ok": bool(status["camera_ok"]), "version": status["version"],
                "alarms": sorted(status["alarms"]), "fault": status["fault"],
                "ts": ev.utc_iso(self.controller.clock.now())}

    def _publish_state(self, force: bool = False) -> None:
        """Publish state when it differs from the last one sent (ts aside), or on every connect.

        Core listeners also fire on timer ticks that change nothing; those must not flood the bus.
        """
        client = self._client
        if client is None:
            return
        state = self.state_payload()
        comparable = {k: v for k, v in state.items() if k != "ts"}
        if not force and comparable == self._last_state:
            return
        payload = json.dumps(state, separators=(",", ":"), sort_keys=True)
        info = client.publish(self.topic_state, payload, qos=QOS, retain=True)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self._last_state = comparable

    # ------------------------------------------------------------ commands
    def _handle_commands(self) -> None:
        while True:
            try:
                topic, payload, retained = self._commands.get_nowait()
            except queue.Empty:
                return
            self.handle_command(topic, payload, retained)

    def handle_command(self, topic: str, payload: bytes, retained: bool) -> None:
        """Act on one command message, or refuse and journal why. Never raises."""
        actor = None
        try:
            if topic not in self.command_topics:
                raise CommandError(f"unknown topic {topic[:120]!r}")
            if retained:
                raise CommandError("retained: retained commands are never acted on")
            command = parse_command(payload, self.settings.allow_remote_lockdown_end)
            actor = command["by"]
            act = self.controller.start_lockdown if command["action"] == "start" \
                else self.controller.end_lockdown
            decision = act(actor=actor, reason=command["reason"] or "mqtt command", source="mqtt",
                           command_id=command["id"])
            if decision.code != "ok":   # 'already' or 'fault': still answer the command with an event
                raise CommandError(f"{decision.code}: {decision.reason}")
            self.commands_accepted += 1
            log.warning("mqtt: lockdown %s by %r (command %s)", command["action"], actor, command["id"])
        except CommandError as exc:
            self.commands_rejected += 1
            log.warning("mqtt: command on %s refused: %s", topic[:120], exc)
            self._reject(topic, str(exc), actor, payload)
        except Exception:
            self.commands_rejected += 1
            log.exception("mqtt: command on %s failed", topic[:120])
            self._reject(topic, "error: the command could not be processed", actor, payload)

    def _reject(self, topic: str, reason: str, actor: str | None, payload: bytes) -> None:
        command_id = None
        try:
            data = json.loads(payload.decode("utf-8")) if len(payload) <= COMMAND_MAX_BYTES else None
            if isinstance(data, dict) and isinstance(data.get("id"), str):
                command_id = data["id"][:64]
        except (UnicodeDecodeError, ValueError):
            pass
        try:
            self.controller.journal.append(ev.COMMAND_REJECTED, actor=actor, source="mqtt",
                                           topic=topic[:200], reason=reason[:300], command_id=command_id,
                                           size=len(payload))
        except Exception:
            log.exception("mqtt: could not journal command_rejected")
