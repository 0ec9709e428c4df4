"""The ``mqtt`` service of the daemon: paho callbacks (tiny, guarded) and one worker thread.

Callbacks in paho's network thread only validate commands and hand facts over; the worker
answers commands, marks acknowledged events delivered, drains the outbox and publishes state.
"""

from __future__ import annotations

import logging
import random
import threading
from functools import partial
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from .. import config as cfg
from .. import events as ev
from .. import visitor
from ..api import DoorApi
from ..vocabulary import Alarm
from . import connection as conn
from .answers import answer_commands
from .commands import CommandIntake, Pending
from .connection import QOS, guarded
from .discovery import Discovery
from .outbox import WINDOW, Outbox
from .publisher import StatePublisher

log = logging.getLogger("controller.mqtt")


class MqttLink:
    name = "mqtt"

    def __init__(self, controller: DoorApi, rng: Callable[[], float] = random.random):
        self.controller = controller
        self.settings: cfg.MqttSettings = controller.settings.mqtt
        site = controller.settings.site
        s = self.settings
        self.root = conn.topic_root(s.prefix, site.campus, site.door)
        self.command_topics = (f"{self.root}/cmd/lockdown", f"{s.prefix}/all/cmd/lockdown")
        self.client_id = conn.client_id_for(s, site.campus, site.door)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = False
        self._subscribed = False               # the broker granted the command subscriptions
        self._generation = 0                   # connection number: acks never cross connections
        self._reset_pending = False
        self.backoff = conn.Backoff(s.reconnect_min_seconds, s.reconnect_max_seconds, rng)
        self.outbox = Outbox(controller.outbox(), f"{self.root}/events", lambda rid: f"{self.root}/snapshot/{rid}",
                             controller.snapshot_path, s.publish_snapshots, self._wake.set, self._refused,
                             partial(visitor.mqtt_text, publish_names=s.publish_visitor_names))
        self.state = StatePublisher(controller, f"{self.root}/status", f"{self.root}/state")
        self.discovery = Discovery.for_link(controller, self.root)      # Home Assistant (off by default)
        self.intake = CommandIntake(self.command_topics, s.allow_remote_lockdown_end)
        self.last_error: str | None = None
        self._logged_error: str | None = None
        self.connects = 0
        self.commands_accepted = 0
        self.backlog_alarm = False
        self._client: conn.Client | None = None
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        s = self.settings
        site = self.controller.settings.site
        client = conn.new_client(s, site.campus, site.door)
        client.on_attempt_error = self._on_attempt_error
        self.controller.subscribe_events(self._on_journal_event)
        self.controller.subscribe_changes(self._on_change)
        self._worker = threading.Thread(target=self._run_worker, name="mqtt-outbox", daemon=True)
        self._worker.start()          # runs even without a broker: it keeps the backlog alarm honest
        try:
            conn.configure(client, s, self.state.topic_status, WINDOW)
        except (OSError, ValueError) as exc:
            # A broken MQTT setup must never take the door down: report it, keep journaling.
            self._set_error(f"not connecting: MQTT credentials or TLS files unusable ({exc})")
            return
        for name in ("connect", "connect_fail", "disconnect", "publish", "message", "subscribe"):
            setattr(client, f"on_{name}", getattr(self, f"_on_{name}"))
        self._client = self.outbox.client = client
        conn.connect(client, s)
        client.loop_start()
        log.info("mqtt: connecting to %s:%d as %r, client id %r (tls %s), topic root %s", s.host, s.port,
                 s.username or "<anonymous>", self.client_id, "on" if s.tls_ca_file else "off", self.root)

    def stop(self) -> None:
        """Clean stop: publish the retained ``offline`` before disconnecting (no last will then)."""
        self._stopping.set()
        self._wake.set()
        self.controller.unsubscribe_events(self._on_journal_event)
        if self._worker is not None:
            self._worker.join(timeout=10)
        client = self._client
        if client is None:
            return
        try:
            if self._connected:
                self.state.offline(client)
        except Exception as exc:   # stopping must go on; the broker then sends the last will
            log.warning("mqtt: could not publish offline on stop: %s", exc)
        try:
            client.disconnect()
        finally:
            client.loop_stop()
            self._connected = self.outbox.connected = False

    @property
    def connected(self) -> bool:
        """Connected to the broker now (the panel shows it with every state change)."""
        return self._connected

    def health(self) -> dict[str, Any]:
        return {"connected": self._connected, "subscribed": self._subscribed,
                "broker": f"{self.settings.host}:{self.settings.port}", "client_id": self.client_id,
                "tls": bool(self.settings.tls_ca_file), "topic_root": self.root,
                "last_error": self.last_error, "outbox_depth": self.outbox.depth(),
                "inflight": self.outbox.inflight, "published_count": self.outbox.published_count,
                "delivered_count": self.outbox.delivered_count, "connects": self.connects,
                "backlog_alarm": self.backlog_alarm, "commands_received": self.intake.received,
                "commands_accepted": self.commands_accepted, "commands_rejected": self.intake.rejected,
                "state_publishes": self.state.state_publishes}

    # ------------------------------------------------------------ paho callbacks (network thread)
    @guarded
    def _on_connect(self, client: mqtt.Client, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._set_error(f"broker refused the connection: {reason}")
            return
        self._generation += 1
        self._connected = self.outbox.connected = True
        self._reset_pending = True
        self.connects += 1
        self.backoff.reset()
        client.subscribe([(t, SubscribeOptions(qos=QOS, retainAsPublished=True, noLocal=True))
                          for t in self.command_topics])
        self.state.online(client)
        self.discovery.publish(client)
        if self.last_error:
            log.info("mqtt: connected to %s:%d (previous error: %s)", self.settings.host,
                     self.settings.port, self.last_error)
        self.last_error = self._logged_error = None
        self._wake.set()

    @guarded
    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        failed = [str(r) for r in reasons if getattr(r, "is_failure", False)]
        self._subscribed = not failed
        if failed:
            self._set_error(f"broker refused the command subscriptions ({', '.join(failed)}); "
                            "lockdown commands cannot arrive (check the ACL)")

    @guarded
    def _on_connect_fail(self, client: mqtt.Client, _u: Any) -> None:
        self.backoff.schedule(client)

    @guarded
    def _on_disconnect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        was = self._connected
        self._connected = self._subscribed = self.outbox.connected = False
        if self._stopping.is_set():
            return
        if was:
            self._set_error(f"connection lost: {reason}")
        elif not (self.last_error or "").startswith("broker refused"):
            self._set_error(f"the broker closed the connection before accepting it ({reason}); "
                            "check host, port and TLS settings")
        self.backoff.schedule(client)
        self._wake.set()

    @guarded
    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        self.outbox.on_ack(mid, not getattr(reason, "is_failure", False), str(reason))

    @guarded
    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        generation = self._generation
        for mid, qos, gen in self.intake.offer(str(message.topic), bytes(message.payload), bool(message.retain),
                                               message.mid, message.qos, generation):
            if gen == generation:
                client.ack(mid, qos)       # refused or superseded: its answer is the journal's job now
        self._wake.set()

    def _on_attempt_error(self, exc: BaseException) -> None:
        self._set_error(f"cannot connect to {self.settings.host}:{self.settings.port}: {exc}")

    # ------------------------------------------------------------ journal and core feeds
    @guarded
    def _on_journal_event(self, event: ev.Event) -> None:
        """Right after each commit (maybe under the core lock): send it or leave it to the worker."""
        if event.type in (ev.SNAPSHOT_CAPTURED, ev.CAMERA_FAILED):
            self.state.touch()                 # camera_ok may have changed
        # Send it at once when it is next in order (the common case), from the committing thread:
        # handing it to the worker costs a GIL hand-off (about 0.5 ms p50 measured on a press,
        # while the core starts the snapshot thread); the publish is a socket write of ~50 us.
        # Anything not sent here (out of order, window full, a snapshot) the worker drains.
        sent = self.outbox.publish_now((event,))
        self.outbox.on_journal_event(event, sent=sent)
        if sent:
            conn.hand_cpu_to_broker()          # let a local broker forward it before we go on

    @guarded
    def _on_change(self, change: Any) -> None:
        """After the core's lock: send the change's events and the state right here when they
        are next in order (the common case); otherwise the worker does it."""
        self.state.on_change(change)
        client = self._client
        if (self.outbox.publish_now(change.events) and client is not None and self._connected
                and not self._reset_pending and self.state.publish(client, self.outbox.waiting(), locked=False)):
            return
        self._wake.set()

    # ------------------------------------------------------------ helpers
    def _set_error(self, text: str) -> None:
        self.last_error = text
        if text != self._logged_error:       # log each new error once, not every retry
            self._logged_error = text
            log.error("mqtt: %s", text)

    def _refused(self, reason: str) -> None:
        self._set_error(f"broker refused event publish: {reason} (check the ACL for {self.root}/#)")

    def _ack(self, pending: Pending) -> None:
        client = self._client
        if client is not None and pending.generation == self._generation and self._connected:
            client.ack(pending.mid, pending.qos)

    # ------------------------------------------------------------ worker
    def _run_worker(self) -> None:
        while not self._stopping.is_set():
            due = self.outbox.ack_wait()
            self._wake.wait(1.0 if due is None else min(1.0, due + 0.001))
            self._wake.clear()
            try:
                if self._stopping.is_set():
                    answer_commands(self, final=True)
                    break
                self._step()
            except Exception as exc:     # the journal failed or paho misbehaved: keep going
                log.exception("mqtt: outbox worker step failed")
                self.last_error = f"outbox worker: {exc}"
                self._stopping.wait(1.0)

    def _step(self) -> None:
        answer_commands(self)
        self.outbox.handle_acks()
        reset, self._reset_pending = self._reset_pending, False
        if reset:
            self.outbox.reset()
        if self._connected:
            self.outbox.drain()
        self._check_backlog()
        if self._connected and self._client is not None and (reset or self.state.due()):
            self.state.publish(self._client, self.outbox.waiting(), force=reset)

    def _check_backlog(self) -> None:
        """Raise the outbox_backlog alarm above the configured depth; clear it at 80% (no flapping)."""
        depth = self.outbox.depth()
        limit = self.settings.outbox_alarm_depth
        if not self.backlog_alarm and depth > limit:
            self.backlog_alarm = True
            log.error("mqtt: outbox backlog %d events exceeds %d; still recording", depth, limit)
            self.controller.set_alarm(Alarm.OUTBOX_BACKLOG, True, depth=depth, limit=limit)
        elif self.backlog_alarm and depth <= limit * 8 // 10:
            self.backlog_alarm = False
            log.info("mqtt: outbox backlog down to %d events", depth)
            self.controller.set_alarm(Alarm.OUTBOX_BACKLOG, False)
