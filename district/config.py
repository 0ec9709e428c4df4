"""District configuration: one TOML file for the recorder (and the board's own section).

Strict on purpose: an unknown or mistyped key is an error that names it (``recorder.gap_dealy``
would otherwise silently keep the default). Sections the recorder does not own (``board``)
are passed through untouched for their own loader.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A bad configuration; the message names the key."""


@dataclass(frozen=True)
class Database:
    dsn: str = "dbname=district"             # libpq connection string (unix socket by default)


@dataclass(frozen=True)
class Broker:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password_file: str = ""                  # one line; never the password itself in this file
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    prefix: str = "entry"                    # mqtt.prefix of the campuses
    client_id: str = "district-recorder-1"   # unique per instance; keeps its session across restarts
    share_group: str = "recorders"           # instances with the same group share the events
    keepalive_seconds: int = 30
    session_expiry_seconds: int = 86400      # broker keeps unacknowledged messages this long
    receive_maximum: int = 2000              # messages in flight to this instance (two full batches)
    retained_catchup_seconds: float = 5.0    # fresh session: how long to take retained state/status


@dataclass(frozen=True)
class Recorder:
    campuses: tuple[str, ...] = ()           # known campuses (added to the database at start)
    batch_max: int = 1000                    # messages written per transaction at most (README: measured)
    snapshot_max_bytes: int = 2_000_000      # bigger snapshots are rejected (reason: oversized)
    rejected_keep_bytes: int = 2048          # bytes of each rejected payload kept for inspection
    rejected_keep_rows: int = 10_000         # newest rejected payloads kept (counts are exact)
    gap_delay_seconds: float = 30.0          # a missing seq is a gap once its successor is this old
    gap_scan_seconds: float = 5.0
    maintenance_seconds: float = 3600.0      # retention runs this often


@dataclass(frozen=True)
class Retention:
    events_months: int = 24                  # whole monthly partitions older than this are dropped
    snapshots_days: int = 90
    snapshots_max_bytes: int = 20_000_000_000


@dataclass(frozen=True)
class Settings:
    database: Database = field(default_factory=Database)
    broker: Broker = field(default_factory=Broker)
    recorder: Recorder = field(default_factory=Recorder)
    retention: Retention = field(default_factory=Retention)
    extra: dict[str, Any] = field(default_factory=dict)   # sections owned by others (board)


SECTIONS = {"database": Database, "broker": Broker, "recorder": Recorder, "retention": Retention}
PASS_THROUGH = ("board",)
POSITIVE = {"broker.port", "broker.keepalive_seconds", "broker.receive_maximum", "broker.retained_catchup_seconds",
            "recorder.batch_max",
            "recorder.snapshot_max_bytes", "recorder.rejected_keep_rows", "recorder.gap_scan_seconds",
            "recorder.maintenance_seconds", "retention.events_months", "retention.snapshots_days",
            "retention.snapshots_max_bytes"}
SLUG_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


def _coerce(key: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    raise ConfigError(f"{key}: unsupported")  # pragma: no cover


def from_dict(data: dict[str, Any]) -> Settings:
    settings = Settings()
    extra: dict[str, Any] = {}
    for section, values in data.items():
        if section in PASS_THROUGH:
            extra[section] = values
            continue
        if section not in SECTIONS:
            raise ConfigError(f"{section}: unknown section (known: {', '.join([*SECTIONS, *PASS_THROUGH])})")
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a table")
        current = getattr(settings, section)
        known = {f.name for f in fields(current)}
        changes = {}
        for key, value in values.items():
            name = f"{section}.{key}"
            if key not in known:
                raise ConfigError(f"{name}: unknown key (known: {', '.join(sorted(known))})")
            value = _coerce(name, getattr(current, key), value)
            if name in POSITIVE and value <= 0:
                raise ConfigError(f"{name}: must be positive, got {value!r}")
            changes[key] = value
        settings = replace(settings, **{section: replace(current, **changes)})
    for campus in settings.recorder.campuses:
        if not campus or campus == "all" or not set(campus) <= SLUG_CHARS or campus[0] in "-_":
            raise ConfigError(f"recorder.campuses: {campus!r} is not a campus slug "
                              "(lowercase letters, digits, - and _)")
    if settings.recorder.gap_delay_seconds < 0:
        raise ConfigError("recorder.gap_delay_seconds: must not be negative")
    return replace(settings, extra=extra)


def to_dict(settings: Settings) -> dict[str, Any]:
    """The inverse of from_dict (tuples as lists), for overriding single keys."""
    out: dict[str, Any] = {name: {f.name: (list(v) if isinstance(v := getattr(getattr(settings, name), f.name), tuple)
                                           else v) for f in fields(getattr(settings, name))} for name in SECTIONS}
    out.update(settings.extra)
    return out


def load(path: str | Path) -> Settings:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return from_dict(data)


def read_secret(path: str) -> str:
    """First line of a secret file ('' when no file is configured)."""
    if not path:
        return ""
    try:
        return Path(path).read_text().splitlines()[0].strip() if Path(path).stat().st_size else ""
    except OSError as exc:
        raise ConfigError(f"broker.password_file: cannot read {path} ({exc.strerror})") from None
