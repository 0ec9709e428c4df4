"""Publishes lockdown commands to the district broker with the operator account from config.

Only lockdown commands, only on ``{prefix}/{campus}/{door}/cmd/lockdown`` or the district-wide
``{prefix}/all/cmd/lockdown`` (docs/mqtt.md): there is no unlock topic anywhere in the contract
and this module can build no other topic. A district-wide lockdown is ONE message on the
district-wide topic, not one per door the database knows: every door subscribes to it and every
campus bridge carries it in, so a door the district has never heard from (new, or its rows
lost) is locked down too. A one-campus lockdown is one message per known door of that campus:
the contract has no campus-wide topic (see docs/district-board.md).
QoS 1, never retained (a retained command is refused by every door). One short-lived
connection per operator action: lockdowns are rare, and a connection that exists only while
publishing cannot be left half-broken between them. The result says which doors the broker
acknowledged (PUBACK); doors that are offline get the command from their persistent session
when they return.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from typing import Iterable

import paho.mqtt.client as mqtt

from controller.config import read_secret

from .config import SLUG, BrokerAccount, MqttSettings

ACTIONS = ("start", "end")
LEVELS = ("lockdown", "secure")    # docs/mqtt.md: 'level' only with start; lockdown is the default


class PublishError(RuntimeError):
    """The broker could not be reached or refused the operator account; the message says which."""


@dataclass
class PublishResult:
    command_id: str
    topics: list[str]
    acknowledged: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [t for t in self.topics if t not in self.acknowledged]


def command_topic(prefix: str, campus: str, door: str) -> str:
    if not SLUG.match(campus) or not SLUG.match(door) or campus == "all":
        raise ValueError(f"not a door: {campus!r}/{door!r}")
    return f"{prefix}/{campus}/{door}/cmd/lockdown"


def district_topic(prefix: str) -> str:
    """Every door of every bridged campus subscribes to this one (controller/mqtt/link.py)."""
    if not SLUG.match(prefix):
        raise ValueError(f"not a topic prefix: {prefix!r}")
    return f"{prefix}/all/cmd/lockdown"


def command(action: str, command_id: str, by: str, reason: str, level: str = "lockdown") -> bytes:
    """The command JSON. ``level`` is sent only when it is not the default, so doors that know
    no levels still accept a plain lockdown (they refuse unknown fields)."""
    if action not in ACTIONS:
        raise ValueError(f"action: use one of {', '.join(ACTIONS)}")
    if level not in LEVELS:
        raise ValueError(f"level: use one of {', '.join(LEVELS)}")
    body = {"action": action, "id": command_id[:64], "by": by[:100]}
    if reason:
        body["reason"] = reason[:200]
    if action == "start" and level != "lockdown":
        body["level"] = level
    return json.dumps(body, separators=(",", ":")).encode()


def new_command_id() -> str:
    return f"board-{uuid.uuid4().hex[:20]}"


class LockdownPublisher:
    def __init__(self, settings: MqttSettings, accounts: dict[str, BrokerAccount] | None = None):
        self.settings = settings
        self.accounts = accounts or {}

    def account_for(self, board_user: str) -> tuple[str, str]:
        """(broker username, password file): the operator's own account when configured."""
        own = self.accounts.get(board_user)
        if own is not None:
            return own.username, own.password_file
        return self.settings.username, self.settings.password_file

    def publish(self, action: str, doors: Iterable[tuple[str, str]], by: str, reason: str,
                command_id: str | None = None, level: str = "lockdown", board_user: str = "",
                district_wide: bool = False) -> PublishResult:
        """``district_wide``: one message on the district-wide topic (``doors`` is then ignored);
        otherwise one message per door in ``doors``."""
        s = self.settings
        command_id = command_id or new_command_id()
        payload = command(action, command_id, by, reason, level)
        username, password_file = self.account_for(board_user)
        topics = ([district_topic(s.prefix)] if district_wide
                  else [command_topic(s.prefix, campus, door) for campus, door in doors])
        result = PublishResult(command_id, topics)
        if not topics:
            return result
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"district-board-{uuid.uuid4().hex[:12]}",
                             protocol=mqtt.MQTTv5)
        if username:
            try:
                password = read_secret(password_file) if password_file else None
            except OSError as exc:
                raise PublishError(f"the broker password file for {username!r} cannot be read "
                                   f"({exc.strerror or exc})") from None
            client.username_pw_set(username, password)
        if s.tls_ca_file:
            client.tls_set(ca_certs=s.tls_ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        connected = threading.Event()
        refused: list[str] = []

        def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
            if reason.is_failure:
                refused.append(str(reason))
            connected.set()

        client.on_connect = on_connect
        try:
            client.connect(s.host, s.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise PublishError(f"the district broker {s.host}:{s.port} cannot be reached ({exc})") from None
        client.loop_start()
        try:
            if not connected.wait(s.timeout_seconds):
                raise PublishError(f"the district broker {s.host}:{s.port} did not answer")
            if refused:
                raise PublishError(f"the district broker refused the account {username!r} ({refused[0]})")
            infos = [(t, client.publish(t, payload, qos=1, retain=False)) for t in topics]
            for topic, info in infos:
                try:
                    info.wait_for_publish(timeout=s.timeout_seconds)
                except (RuntimeError, ValueError):
                    continue
                if info.is_published() and info.rc == mqtt.MQTT_ERR_SUCCESS:
                    result.acknowledged.append(topic)
        finally:
            client.disconnect()
            client.loop_stop()
        return result
