"""Turns one MQTT message into a row to write or a reason to reject it.

Every payload is checked against the contract's own JSON Schemas (controller/schemas, read
from the installed controller package, never copied) and against its topic: a payload must
name the campus and door of the topic it came on. Pure functions, no I/O beyond loading the
schemas once.
"""

from __future__ import annotations

import json
import json.scanner
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs

import controller

SCHEMAS = Path(controller.__file__).resolve().parent / "schemas"


# The rows made per message are plain slotted dataclasses, not frozen ones: a frozen
# dataclass sets each field through object.__setattr__ (1.7 us for an Event against 0.3 us),
# paid for every message of a drain on the recorder's busiest thread. Nothing mutates them.

@dataclass(slots=True)
class Event:
    campus: str
    door: str
    id: str
    epoch: str
    seq: int
    type: str
    ts: datetime
    request_id: str | None
    actor: str | None
    text: str                 # the payload as JSON text (stored as jsonb)


@dataclass(slots=True)
class State:
    campus: str
    door: str
    ts: datetime
    epoch: str | None
    text: str


@dataclass(slots=True)
class Status:
    campus: str
    door: str
    online: bool
    since: datetime | None = None   # retained copy: applies only if no status arrived since then


@dataclass(frozen=True)
class Bridge:
    """Mosquitto's bridge notification for one campus ({prefix}/bridges/{campus}/state)."""
    campus: str
    online: bool


@dataclass(slots=True)
class Snapshot:
    """A JPEG to keep. Its SHA-256 is computed by PostgreSQL as the row is inserted (store.py),
    not here: hashing 30 KB takes the recorder's classifier 30-65 us and, since hashlib
    releases the GIL meanwhile, then up to a switch interval (5 ms) to get it back from the
    network thread; the database hashes it in its own process, beside the events' statement."""
    campus: str
    door: str
    request_id: str
    data: bytes


@dataclass(frozen=True)
class Rejected:
    topic: str
    reason: str               # short code: counted per reason
    detail: str
    payload: bytes


Item = Event | State | Status | Snapshot | Bridge | Rejected


@lru_cache(maxsize=None)
def validator(name: str) -> Any:
    """The reference validator (python-jsonschema): exact error messages, slow (~0.3 ms)."""
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@lru_cache(maxsize=None)
def fast_validator(name: str) -> Any:
    """The same schema compiled by jsonschema-rs (~1 us): answers "valid?" on the hot path."""
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def _schema_error(name: str, instance: Any) -> str | None:
    """First schema error, or None. An unknown event ``type`` alone is accepted: the contract
    says new types may be added and consumers keep what they do not know. Valid payloads take
    the fast validator only; the reference one explains (and forgives) the rest."""
    if fast_validator(name).is_valid(instance):
        return None
    for error in validator(name).iter_errors(instance):
        if name == "event" and list(error.absolute_path) == ["type"] and error.validator == "enum" \
                and isinstance(instance.get("type"), str) and 0 < len(instance["type"]) <= 64:
            continue
        where = "/".join(str(p) for p in error.absolute_path) or "(payload)"
        return f"{where}: {error.message}"[:300]
    return None


_scan_json = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # (the stub wants a scanner)


def _loads(text: str) -> Any:
    """``json.loads(text)`` for a str, minus the wrapper's two whitespace regex matches and
    calls (a third of its cost on the feed's small payloads): the C scanner is called
    directly and anything it does not consume whole (leading or trailing whitespace, an
    error) goes through ``json.loads`` itself, which gives the same value or error."""
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value)        # Python 3.11 reads the trailing "Z" itself


def classify(topic: str, payload: bytes, prefix: str, known: frozenset[str] | set[str],
             snapshot_max: int) -> Item:
    """The row this message becomes, or why it is refused."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != prefix:
        return Rejected(topic, "bad_topic", "not {prefix}/{campus}/{door}/...", payload)
    _, campus, door, kind, *rest = parts
    if campus == "bridges" and kind == "state" and not rest:
        if door not in known:
            return Rejected(topic, "unknown_campus", f"bridge of campus {door!r} (not registered)", payload)
        if payload not in (b"0", b"1"):
            return Rejected(topic, "schema", "bridge state is not 0 or 1", payload)
        return Bridge(door, payload == b"1")
    if campus not in known:
        return Rejected(topic, "unknown_campus", f"campus {campus!r} is not registered", payload)
    if kind == "snapshot" and len(rest) == 1 and rest[0]:
        return _snapshot(topic, campus, door, rest[0], payload, snapshot_max)
    if rest or kind not in ("events", "state", "status"):
        return Rejected(topic, "bad_topic", f"unexpected topic kind {kind!r}", payload)
    if kind == "status":
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            return Rejected(topic, "schema", "status is not text", payload)
        if (err := _schema_error("status", text)) is not None:
            return Rejected(topic, "schema", err, payload)
        return Status(campus, door, text == "online")
    try:            # decoded once: the text is both what is parsed and what is stored
        text = payload.decode()
        data = _loads(text)
    except (ValueError, UnicodeDecodeError) as exc:   # not UTF-8 (the contract's encoding) or not JSON
        return Rejected(topic, "invalid_json", str(exc)[:200], payload)
    if "\\u0000" in text:
        return Rejected(topic, "schema", "NUL character (not storable as jsonb)", payload)
    name = "event" if kind == "events" else "state"
    if (err := _schema_error(name, data)) is not None:
        return Rejected(topic, "schema", err, payload)
    payload_door = data.get("door") if kind == "events" else data.get("door_id")
    if data.get("campus") != campus or payload_door != door:
        return Rejected(topic, "topic_mismatch", "payload campus/door differ from the topic", payload)
    try:
        ts = _parse_ts(data["ts"])
    except ValueError as exc:
        return Rejected(topic, "schema", f"ts: {exc}", payload)
    if ts.tzinfo is None:
        return Rejected(topic, "schema", "ts: no time zone", payload)
    if kind == "state":
        return State(campus, door, ts, data.get("epoch"), text)
    actor = data.get("actor")
    return Event(campus, door, data["id"], data["epoch"], data["seq"], data["type"], ts,
                 data.get("request_id"), actor if isinstance(actor, str) else None, text)


def _snapshot(topic: str, campus: str, door: str, request_id: str, payload: bytes, limit: int) -> Item:
    if len(payload) > limit:
        return Rejected(topic, "oversized", f"{len(payload)} bytes > {limit}", payload)
    if len(request_id) > 64:
        return Rejected(topic, "bad_topic", "request id longer than 64", payload)
    if not payload.startswith(b"\xff\xd8"):
        return Rejected(topic, "not_jpeg", "snapshot is not a JPEG", payload)
    return Snapshot(campus, door, request_id, payload)
