"""The district board's configuration: one TOML file, strictly checked.

Why strict: a typo such as ``ring_alert_second`` must not silently leave the default in
place on a security console. Every unknown key and every wrong type is refused with a
line that names the key (``ConfigError.errors``), the same rule as the campus config.
Secrets (database and broker passwords, the session key) are never in the file: only
the path of a file or a systemd credential (``credential:NAME``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from controller.config import ConfigError, read_secret

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class DatabaseSettings:
    dsn: str = "dbname=district"       # libpq; by default [database] dsn of the district config
    password_file: str = ""          # empty: the DSN (or peer authentication) is enough
    pool_size: int = 8


@dataclass(frozen=True)
class WebSettings:
    listen: str = "unix"             # "unix" behind nginx (deploy/nginx/district-board.conf) or "tcp"
    socket_path: str = "/run/entry-buzzer-district/board.sock"
    host: str = "127.0.0.1"
    port: int = 8090
    secret_key_file: str = ""
    session_idle_minutes: float = 30.0
    session_max_hours: float = 12.0
    threads: int = 32


@dataclass(frozen=True)
class MqttSettings:
    """The district broker, used only to publish lockdown commands (the grid reads PostgreSQL)."""
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "entry"
    username: str = ""               # the broker account allowed to publish cmd/lockdown
    password_file: str = ""
    tls_ca_file: str = ""
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class Campus:
    name: str = ""
    panel_url: str = ""


@dataclass(frozen=True)
class BrokerAccount:
    """A board operator's own broker account (``[board.mqtt_accounts.<board-username>]``), so the
    broker's log and ACL see the person, not a shared account."""
    username: str = ""
    password_file: str = ""


@dataclass(frozen=True)
class BoardSettings:
    ring_alert_seconds: float = 30.0     # a pending ring older than this is highlighted
    refresh_seconds: float = 10.0        # full grid refresh even without a notification
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    web: WebSettings = field(default_factory=WebSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    campuses: dict[str, Campus] = field(default_factory=dict)
    mqtt_accounts: dict[str, BrokerAccount] = field(default_factory=dict)

    def password(self) -> str:
        return read_secret(self.database.password_file) if self.database.password_file else ""

    def conninfo(self) -> str:
        pw = self.password()
        return self.database.dsn + (f" password='{_quote(pw)}'" if pw else "")


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


SECTIONS = {"database": DatabaseSettings, "web": WebSettings, "mqtt": MqttSettings}
TOP = {"ring_alert_seconds", "refresh_seconds"}


def _typed(key: str, value: Any, default: Any, errors: list[str]) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        errors.append(f"{key}: expected {type(default).__name__}, got {type(value).__name__}")
        return default
    return value


def _section(name: str, cls: type, raw: Any, errors: list[str]) -> Any:
    if not isinstance(raw, dict):
        errors.append(f"{name}: expected a table")
        return cls()
    defaults = cls()
    known = {f.name for f in fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            errors.append(f"{name}.{key}: unknown key")
            continue
        values[key] = _typed(f"{name}.{key}", value, getattr(defaults, key), errors)
    return replace(defaults, **values)


def _check(s: BoardSettings, errors: list[str]) -> None:
    if not 1.0 <= s.ring_alert_seconds <= 3600.0:
        errors.append("ring_alert_seconds: use 1 to 3600")
    if not 1.0 <= s.refresh_seconds <= 300.0:
        errors.append("refresh_seconds: use 1 to 300")
    if s.web.listen not in ("unix", "tcp"):
        errors.append("web.listen: use 'unix' (behind nginx) or 'tcp'")
    if not 0 <= s.web.port <= 65535:
        errors.append("web.port: use 0 to 65535")
    if not 4 <= s.web.threads <= 256:
        errors.append("web.threads: use 4 to 256")
    if not 1 <= s.database.pool_size <= 64:
        errors.append("database.pool_size: use 1 to 64")
    if not 1 <= s.mqtt.port <= 65535:
        errors.append("mqtt.port: use 1 to 65535")
    if not SLUG.match(s.mqtt.prefix):
        errors.append("mqtt.prefix: use lowercase letters, digits, '-' or '_'")
    if not 1.0 <= s.mqtt.timeout_seconds <= 120.0:
        errors.append("mqtt.timeout_seconds: use 1 to 120")
    if "password" in s.database.dsn.lower():
        errors.append("database.dsn: no password in the DSN; use database.password_file")


def _campuses(raw: Any, errors: list[str]) -> dict[str, Campus]:
    if not isinstance(raw, dict):
        errors.append("campuses: expected a table of campus slugs")
        return {}
    out = {}
    for slug, entry in raw.items():
        if not SLUG.match(slug) or slug == "all":
            errors.append(f"campuses.{slug}: not a campus slug (lowercase letters, digits, '-', '_'; not 'all')")
            continue
        campus = _section(f"campuses.{slug}", Campus, entry, errors)
        if campus.panel_url:
            parts = urlsplit(campus.panel_url)
            if parts.scheme not in ("https", "http") or not parts.netloc:
                errors.append(f"campuses.{slug}.panel_url: use an http(s):// URL")
        out[slug] = campus
    return out


def _accounts(raw: Any, errors: list[str]) -> dict[str, BrokerAccount]:
    if not isinstance(raw, dict):
        errors.append("mqtt_accounts: expected a table of board usernames")
        return {}
    out = {}
    for user, entry in raw.items():
        account = _section(f"mqtt_accounts.{user}", BrokerAccount, entry, errors)
        if not account.username or not account.password_file:
            errors.append(f"mqtt_accounts.{user}: give username and password_file")
        out[user] = account
    return out


def from_dict(raw: dict[str, Any]) -> BoardSettings:
    errors: list[str] = []
    values: dict[str, Any] = {}
    defaults = BoardSettings()
    for key, value in raw.items():
        if key in SECTIONS:
            values[key] = _section(key, SECTIONS[key], value, errors)
        elif key == "campuses":
            values[key] = _campuses(value, errors)
        elif key == "mqtt_accounts":
            values[key] = _accounts(value, errors)
        elif key in TOP:
            values[key] = _typed(key, value, getattr(defaults, key), errors)
        else:
            errors.append(f"{key}: unknown key")
    settings = replace(defaults, **values)
    _check(settings, errors)
    if errors:
        raise ConfigError(errors)
    return settings


def from_file_dict(raw: dict[str, Any]) -> BoardSettings:
    """The board's part of the shared district config: the ``[board]`` table (with its
    ``[board.web]``, ``[board.mqtt]``, ``[board.database]`` and ``[board.campuses.<slug>]``);
    the database DSN defaults to the recorder's ``[database] dsn``. Other top-level tables
    belong to the recorder and are checked by its loader (district/config.py)."""
    board = raw.get("board", {})
    if not isinstance(board, dict):
        raise ConfigError(["board: expected a table"])
    board = dict(board)
    shared = raw.get("database", {})
    if isinstance(shared, dict) and isinstance(shared.get("dsn"), str):
        db = board.get("database", {})
        if isinstance(db, dict) and "dsn" not in db:
            board["database"] = {**db, "dsn": shared["dsn"]}
    try:
        return from_dict(board)
    except ConfigError as exc:
        raise ConfigError([f"board.{line}" for line in exc.errors]) from None


def load(path: str | Path) -> BoardSettings:
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read ({exc.strerror or exc})"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML ({exc})"]) from None
    return from_file_dict(raw)
