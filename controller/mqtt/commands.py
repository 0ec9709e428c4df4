"""Lockdown commands: hostile until proven otherwise, and never lost in a flood.

Why:
- Validation is cheap (at most 1 KiB of JSON), so it runs in paho's network thread as each
  message arrives: junk never queues up in front of a real command.
- A valid command goes into a slot per action (start / end); the newest valid command of an
  action replaces an older one not yet handled (that one is answered ``superseded``). So
  whatever else arrives, a valid lockdown is applied and answered.
- Every refusal is journaled as ``command_rejected`` up to a rate (a few per interval); beyond
  it they are counted per reason and journaled once per interval as ``commands_rejected``,
  so a flood cannot fill the journal either. Memory is bounded the same way.
- JSON objects with a repeated key are refused: other tools may read them the other way.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

COMMAND_MAX_BYTES = 1024
COMMAND_FIELDS = {"action": 64, "id": 64, "reason": 200, "by": 100, "level": 16}   # field -> max length
LEVELS = ("secure", "lockdown")     # events.LOCKDOWN_LEVELS (the Standard Response Protocol)
DEFAULT_LEVEL = "lockdown"
COMMAND_REQUIRED = ("action", "id", "by")
DETAIL_PER_INTERVAL = 20     # command_rejected events per interval; beyond: counted
INTERVAL_SECONDS = 10.0


class CommandError(ValueError):
    """A command that must be refused; the message is the journaled reason, its first word(s)
    before ':' the category counted in ``commands_rejected``."""

    @property
    def category(self) -> str:
        return str(self).split(":", 1)[0]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise CommandError(f"invalid: duplicate field {key[:40]!r}")
        seen[key] = value
    return seen


def parse_command(payload: bytes, allow_end: bool) -> dict[str, str]:
    """Validate a lockdown command strictly. Returns the fields or raises CommandError."""
    if len(payload) > COMMAND_MAX_BYTES:
        raise CommandError(f"too large: {len(payload)} bytes (limit {COMMAND_MAX_BYTES})")
    try:
        data = json.loads(payload.decode("utf-8"), object_pairs_hook=_object)
    except CommandError:
        raise
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
    level = data.get("level", DEFAULT_LEVEL if data["action"] == "start" else "")
    if data["action"] == "start" and level not in LEVELS:
        raise CommandError(f"invalid: unknown level {level[:40]!r}; expected 'secure' or 'lockdown'")
    if data["action"] == "end" and level:
        raise CommandError("invalid: 'level' applies only to 'start' (an end ends either level)")
    if data["action"] == "end" and not allow_end:
        raise CommandError("not allowed: ending a lockdown over MQTT is disabled "
                           "(mqtt.allow_remote_lockdown_end); end it from the panel")
    return {"action": data["action"], "id": data["id"], "reason": data.get("reason", ""),
            "by": data["by"].strip(), "level": level}


@dataclass(frozen=True)
class Pending:
    """A valid command waiting for the worker, with what is needed to acknowledge it."""
    command: dict[str, str]
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    order: int


@dataclass(frozen=True)
class Rejection:
    topic: str
    reason: str
    payload: bytes
    actor: str | None = None

    def command_id(self) -> str | None:
        try:
            data = json.loads(self.payload.decode("utf-8")) if len(self.payload) <= COMMAND_MAX_BYTES else None
        except (UnicodeDecodeError, ValueError):
            return None
        return data["id"][:64] if isinstance(data, dict) and isinstance(data.get("id"), str) else None


Ack = tuple[int, int, int]          # (mid, qos, connection generation)


class CommandIntake:
    """The network-thread side: validate, keep valid commands in slots, rate-limit refusals."""

    def __init__(self, topics: tuple[str, ...], allow_end: bool,
                 monotonic: Callable[[], float] = time.monotonic):
        self.topics = topics
        self.allow_end = allow_end
        self.detail_per_interval = DETAIL_PER_INTERVAL
        self.interval_seconds = INTERVAL_SECONDS
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._slots: dict[str, Pending] = {}
        self._order = 0
        self._details: list[Rejection] = []
        self._counts: Counter[str] = Counter()
        self._interval_start = monotonic()
        self._interval_wall = datetime.now(timezone.utc)
        self._detailed = 0
        self.received = 0
        self.rejected = 0

    def offer(self, topic: str, payload: bytes, retained: bool, mid: int, qos: int,
              generation: int) -> list[Ack]:
        """One arriving message. Returns the messages the caller may acknowledge at once."""
        self.received += 1
        try:
            if topic not in self.topics:
                raise CommandError(f"unknown topic {topic[:120]!r}")
            if retained:
                raise CommandError("retained: retained commands are never acted on")
            command = parse_command(payload, self.allow_end)
        except CommandError as exc:
            self.reject(topic, str(exc), payload)
            return [(mid, qos, generation)]
        with self._lock:
            self._order += 1
            previous = self._slots.get(command["action"])
            self._slots[command["action"]] = Pending(command, topic, payload, mid, qos, generation, self._order)
        if previous is None:
            return []
        self.reject(previous.topic, f"superseded: a newer {command['action']!r} command "
                    f"({command['id'][:64]}) arrived before this one was handled",
                    previous.payload, previous.command["by"])
        return [(previous.mid, previous.qos, previous.generation)]

    def reject(self, topic: str, reason: str, payload: bytes, actor: str | None = None) -> None:
        """Detailed up to the rate, counted beyond it. Bounded memory either way."""
        with self._lock:
            self.rejected += 1
            if self._detailed < self.detail_per_interval:
                self._detailed += 1
                self._details.append(Rejection(topic[:200], reason[:300], payload[:COMMAND_MAX_BYTES + 1], actor))
            else:
                self._counts[CommandError(reason).category[:40]] += 1

    def take_commands(self) -> list[Pending]:
        with self._lock:
            pending, self._slots = sorted(self._slots.values(), key=lambda p: p.order), {}
        return pending

    def take_rejections(self) -> list[Rejection]:
        with self._lock:
            details, self._details = self._details, []
        return details

    def take_summary(self, force: bool = False) -> dict[str, Any] | None:
        """At the end of an interval (or when forced): the counts beyond the rate, if any."""
        now = self._monotonic()
        with self._lock:
            if not force and now - self._interval_start < self.interval_seconds:
                return None
            counts, self._counts = self._counts, Counter()
            since, seconds = self._interval_wall, now - self._interval_start
            self._interval_start, self._interval_wall = now, datetime.now(timezone.utc)
            self._detailed = 0
        if not counts:
            return None
        return {"reasons": dict(sorted(counts.items())), "total": sum(counts.values()),
                "since": since.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "seconds": round(seconds, 1)}
