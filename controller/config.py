"""TOML configuration -> typed, validated settings.

Why so strict: this file decides which GPIO drives a door strike. A typo must
never silently fall back to a default, so unknown keys are errors, every value
is range-checked, and every error names the key and says why. All errors are
collected, not just the first, so a technician fixes the file in one pass.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import secret_files

UNLOCK_CAP_SECONDS = 30.0
"""Hard cap on strike on-time. Not configurable: a config cannot raise it."""

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# BCM pins 0-8 are pulled up at power-on, 14/15 are the UART and toggle during
# boot. A strike on any of them could unlock while the Pi boots.
STRIKE_UNSAFE_PINS = set(range(0, 9)) | {14, 15}


DEFAULT_CONFIG = "/etc/entry-buzzer/config.toml"
"""The installed config (deploy/install.sh): every command's --config defaults to it."""

MAX_CONFIG_BYTES = 1024 * 1024
"""A real config is a few KB; anything near this is not a config (and must not cost memory)."""


def _show(value: Any, limit: int = 60) -> str:
    """repr() for error lines: bounded in length, and safe on absurdly nested values."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply>"
    return text if len(text) <= limit else text[:limit] + "...(truncated)"


class ConfigError(ValueError):
    """One or more configuration errors; ``errors`` holds 'key: reason' lines."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class SiteSettings:
    campus: str = "demo-elementary"
    door: str = "main-entrance"
    campus_name: str = "Demo Elementary"
    door_name: str = "Main entrance"


@dataclass(frozen=True)
class GpioSettings:
    buzzer_pin: int = 27
    buzzer_active_low: bool = True          # button to ground, internal pull-up
    strike_pin: int = 17
    strike_active_high: bool = True         # must stay true, see validation
    door_contact_pin: int | None = None
    door_open_level: str = "high"           # reed to ground: open door -> pin high
    tamper_pin: int | None = None
    tamper_active_level: str = "high"       # NC tamper loop to ground: opened -> high
    exit_request_pin: int | None = None     # request-to-exit sensor (PIR/button to ground)
    led_ringing_pin: int | None = None
    led_approved_pin: int | None = None
    led_denied_pin: int | None = None


@dataclass(frozen=True)
class DoorSettings:
    unlock_seconds: float = 5.0
    ring_timeout_seconds: float = 60.0
    held_open_seconds: float = 30.0
    debounce_ms: int = 50
    repeat_press_journal_seconds: float = 2.0
    denied_indicator_seconds: float = 5.0
    relock_on_close: bool = True
    exit_request_seconds: float = 10.0      # a door opening this soon after request-to-exit is egress


@dataclass(frozen=True)
class CameraSettings:
    kind: str = "simulated"                 # "simulated" | "picamera2"
    width: int = 1280
    height: int = 720
    jpeg_quality: int = 85
    capture_timeout_seconds: float = 3.0


@dataclass(frozen=True)
class StorageSettings:
    state_dir: Path = Path("/var/lib/entry-buzzer")
    snapshot_retention_days: float = 30.0
    snapshot_max_mb: float = 500.0


@dataclass(frozen=True)
class MqttSettings:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "entry"
    client_id: str = ""
    keepalive_seconds: int = 30
    username: str = ""
    password_file: str = ""
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    publish_snapshots: bool = True
    outbox_alarm_depth: int = 1000
    allow_remote_lockdown_end: bool = False
    tls_min_version: str = "1.2"            # TLS is on when tls_ca_file is set; never below 1.2
    reconnect_min_seconds: float = 1.0      # backoff doubles from here, with random jitter
    reconnect_max_seconds: float = 5.0      # cap: the district sees the door again within seconds
    session_expiry_seconds: int = 86400     # broker keeps the session (and queued commands) this long


@dataclass(frozen=True)
class WebSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    secret_key_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    session_idle_minutes: int = 30
    threads: int = 32
    session_max_hours: float = 12.0         # absolute session lifetime, even for an open dashboard
    streams_per_session: int = 4            # live dashboards (SSE streams) one sign-in may hold open
    streams_per_user: int = 8               # ... and one staff account, across its sessions
    # "unix": serve only on socket_path, behind the shipped nginx front (deploy/nginx/), which
    # terminates TLS and holds off hostile clients; "tcp": serve host:port directly (simulated
    # campus, localhost, or a direct HTTPS setup).
    listen: str = "tcp"
    socket_path: str = "/run/entry-buzzer/panel.sock"
    allow_plain_http: bool = False          # plain HTTP on a non-loopback address: refused unless true


@dataclass(frozen=True)
class IntercomSettings:
    """Live video and two-way audio (intercom/, its own thread; see docs/design.md)."""
    enabled: bool = True
    webrtc: bool = True                     # false: the dashboard uses the MJPEG live view (video only)
    width: int = 640
    height: int = 480
    fps: int = 15
    max_viewers: int = 4                    # the oldest idle (not talking) viewer is dropped first
    max_sdp_bytes: int = 20000
    offers_per_minute: int = 12             # per signed-in session
    connect_timeout_seconds: float = 15.0   # ICE + DTLS must complete within this, or it is freed
    stun_servers: str = ""                  # comma-separated stun:/turn: URLs for routed networks
    audio_in: str = "alsa"                  # visitor microphone: "alsa" | "synthetic" (simulated) | "none"
    audio_out: str = "alsa"                 # door speaker: "alsa" | "meter" (the simulated station)
    alsa_capture_device: str = "default"
    alsa_playback_device: str = "default"
    mjpeg_fps: int = 5


@dataclass(frozen=True)
class Settings:
    site: SiteSettings = field(default_factory=SiteSettings)
    gpio: GpioSettings = field(default_factory=GpioSettings)
    door: DoorSettings = field(default_factory=DoorSettings)
    camera: CameraSettings = field(default_factory=CameraSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    web: WebSettings = field(default_factory=WebSettings)
    intercom: IntercomSettings = field(default_factory=IntercomSettings)
    source: str = "<defaults>"

    def summary(self) -> str:
        g, d = self.gpio, self.door
        lines = [
            f"config: {self.source}",
            f"site: {self.site.campus}/{self.site.door} ({self.site.campus_name}, {self.site.door_name})",
            f"gpio: buzzer={g.buzzer_pin} strike={g.strike_pin} door_contact={g.door_contact_pin} "
            f"tamper={g.tamper_pin} leds={g.led_ringing_pin}/{g.led_approved_pin}/{g.led_denied_pin}",
            f"door: unlock {d.unlock_seconds:g}s (cap {UNLOCK_CAP_SECONDS:g}s), ring timeout "
            f"{d.ring_timeout_seconds:g}s, held-open alarm {d.held_open_seconds:g}s",
            f"camera: {self.camera.kind} {self.camera.width}x{self.camera.height} q{self.camera.jpeg_quality}",
            f"storage: {self.storage.state_dir} (snapshots {self.storage.snapshot_retention_days:g} days, "
            f"{self.storage.snapshot_max_mb:g} MB)",
            f"mqtt: {'on ' + self.mqtt.host + ':' + str(self.mqtt.port) if self.mqtt.enabled else 'off'}",
            f"web: {self._web_summary()}",
        ]
        return "\n".join(lines)

    def _web_summary(self) -> str:
        w = self.web
        if not w.enabled:
            return "off"
        if w.listen == "unix":
            return f"on unix:{w.socket_path} (behind the nginx front)"
        scheme = "https" if w.tls_cert_file and w.tls_key_file else "http"
        return f"on {scheme}://{w.host}:{w.port}"


# ---------------------------------------------------------------- validation

Check = Callable[[Any], str | None]  # returns the reason, or None when fine


def _between(lo: float, hi: float, unit: str = "") -> Check:
    def check(v: Any) -> str | None:
        if not lo <= v <= hi:
            return f"{_show(v)} is out of range; use {lo:g} to {hi:g}{unit}"
        return None
    return check


def _one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"{_show(v)} is not one of {', '.join(map(repr, choices))}"
    return check


def _slug(v: str) -> str | None:
    return None if SLUG.match(v) else (
        f"{_show(v)} is not a slug; use lowercase letters, digits, '-' or '_' (it becomes an MQTT topic level)")


def _nonempty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _gpio_pin(v: int | None) -> str | None:
    if v is None:
        return None
    return None if 2 <= v <= 27 else f"{_show(v)} is not a usable BCM GPIO; use 2-27"


def _strike_pin(v: int) -> str | None:
    if v in STRIKE_UNSAFE_PINS:
        return (f"{v} is pulled high or toggles at boot; use a pin in 9-27 other than 14/15")
    return None if 9 <= v <= 27 else f"{_show(v)} is not a BCM GPIO; use a pin in 9-27 other than 14/15"


def _strike_active_high(v: bool) -> str | None:
    return None if v else (
        "false is refused: an active-low strike driver energizes while the Pi boots or when the "
        "process dies; use an active-high driver with an external pull-down (see hardware.md)")


def _port(v: int) -> str | None:
    return None if 1 <= v <= 65535 else f"{_show(v)} is not a TCP port; use 1-65535"


def _socket_path(v: str) -> str | None:
    if not v.startswith("/"):
        return f"{v!r} is not an absolute path"
    return None if len(v.encode()) <= 100 else f"{v!r} is too long for a Unix socket (at most 100 bytes)"


def _ice_urls(v: str) -> str | None:
    for url in filter(None, (u.strip() for u in v.split(","))):
        if not re.match(r"^(stun|turn|turns):[A-Za-z0-9.:\[\]_-]+(\?transport=(udp|tcp))?$", url):
            return f"{_show(url)} is not a stun:/turn: URL (comma-separated, e.g. stun:stun.example.org:3478)"
    return None


def is_loopback(host: str) -> bool:
    """True for a host name or address that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


CHECKS: dict[str, dict[str, list[Check]]] = {
    "site": {"campus": [_slug], "door": [_slug], "campus_name": [_nonempty], "door_name": [_nonempty]},
    "gpio": {
        "buzzer_pin": [_gpio_pin], "strike_pin": [_strike_pin], "strike_active_high": [_strike_active_high],
        "door_contact_pin": [_gpio_pin], "tamper_pin": [_gpio_pin], "exit_request_pin": [_gpio_pin],
        "led_ringing_pin": [_gpio_pin],
        "led_approved_pin": [_gpio_pin], "led_denied_pin": [_gpio_pin],
        "door_open_level": [_one_of("high", "low")], "tamper_active_level": [_one_of("high", "low")],
    },
    "door": {
        "unlock_seconds": [_between(0.5, UNLOCK_CAP_SECONDS, " s (hard cap)")],
        "ring_timeout_seconds": [_between(5, 600, " s")],
        "held_open_seconds": [_between(3, 3600, " s")],
        "debounce_ms": [_between(0, 1000, " ms")],
        "repeat_press_journal_seconds": [_between(0, 60, " s")],
        "denied_indicator_seconds": [_between(0, 60, " s")],
        "exit_request_seconds": [_between(1, 120, " s")],
    },
    "camera": {
        "kind": [_one_of("simulated", "picamera2")],
        "width": [_between(64, 4608, " px")], "height": [_between(48, 2592, " px")],
        "jpeg_quality": [_between(1, 95)], "capture_timeout_seconds": [_between(0.1, 30, " s")],
    },
    "storage": {
        "snapshot_retention_days": [_between(0.01, 3650, " days")],
        "snapshot_max_mb": [_between(1, 1_000_000, " MB")],
    },
    "mqtt": {
        "port": [_port], "prefix": [_slug], "keepalive_seconds": [_between(5, 3600, " s")],
        "outbox_alarm_depth": [_between(1, 10_000_000)],
        "tls_min_version": [_one_of("1.2", "1.3")],
        "reconnect_min_seconds": [_between(0.1, 60, " s")],
        "reconnect_max_seconds": [_between(1, 3600, " s")],
        "session_expiry_seconds": [_between(0, 30 * 86400, " s")],
    },
    "web": {
        "port": [_port], "session_idle_minutes": [_between(1, 24 * 60, " min")],
        "threads": [_between(4, 256)],
        "session_max_hours": [_between(0.25, 7 * 24, " h")],
        "streams_per_session": [_between(1, 64)], "streams_per_user": [_between(1, 256)],
        "listen": [_one_of("tcp", "unix")], "socket_path": [_socket_path],
    },
    "intercom": {
        "width": [_between(64, 1920, " px")], "height": [_between(48, 1080, " px")],
        "fps": [_between(1, 30, " fps")], "max_viewers": [_between(1, 16)],
        "max_sdp_bytes": [_between(2000, 60000, " bytes")], "offers_per_minute": [_between(1, 120)],
        "connect_timeout_seconds": [_between(2, 120, " s")], "stun_servers": [_ice_urls],
        "audio_in": [_one_of("synthetic", "alsa", "none")], "audio_out": [_one_of("meter", "alsa")],
        "alsa_capture_device": [_nonempty], "alsa_playback_device": [_nonempty],
        "mjpeg_fps": [_between(1, 15, " fps")],
    },
}

SECTIONS = {f.name: f.type for f in dataclasses.fields(Settings) if f.name != "source"}
SECTION_CLASSES = {
    "site": SiteSettings, "gpio": GpioSettings, "door": DoorSettings, "camera": CameraSettings,
    "storage": StorageSettings, "mqtt": MqttSettings, "web": WebSettings, "intercom": IntercomSettings,
}


def _type_name(t: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            Path: "a path string"}.get(t, str(t))


def _coerce(key: str, value: Any, annotation: str, errors: list[str]) -> Any:
    """Check a TOML value against the dataclass annotation (as a string)."""
    optional = annotation.endswith("| None")
    base = annotation.replace("| None", "").strip()
    py = {"int": int, "float": float, "bool": bool, "str": str, "Path": Path}[base]
    if value is None and optional:
        return None
    if py is bool:
        ok = isinstance(value, bool)
    elif py is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif py is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        errors.append(f"{key}: {_show(value)} is not {_type_name(py)}")
        return dataclasses.MISSING
    return Path(value) if py is Path else value


def from_dict(data: dict[str, Any], source: str = "<dict>") -> Settings:
    """Validate a parsed TOML document into Settings, raising ConfigError with every problem."""
    errors: list[str] = []
    sections: dict[str, Any] = {}
    for name in data:
        if name not in SECTION_CLASSES:
            errors.append(f"{_show(name)[1:-1]}: unknown section; expected one of {', '.join(SECTION_CLASSES)}")
    for name, cls in SECTION_CLASSES.items():
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            errors.append(f"{name}: must be a table ([{name}])")
            raw = {}
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            full = f"{name}.{_show(key)[1:-1]}"
            if key not in known:
                errors.append(f"{full}: unknown key; expected one of {', '.join(known)}")
                continue
            coerced = _coerce(full, value, str(known[key].type), errors)
            if coerced is dataclasses.MISSING:
                continue
            reasons = [r for check in CHECKS.get(name, {}).get(key, []) if (r := check(coerced))]
            errors.extend(f"{full}: {r}" for r in reasons)
            if not reasons:
                values[key] = coerced
        sections[name] = cls(**values)
    settings = Settings(**sections, source=source)
    errors.extend(_cross_checks(settings, data))
    if errors:
        raise ConfigError(errors)
    return settings


def _cross_checks(s: Settings, data: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    pins = {k: getattr(s.gpio, k) for k in
            ("buzzer_pin", "strike_pin", "door_contact_pin", "tamper_pin", "exit_request_pin",
             "led_ringing_pin", "led_approved_pin", "led_denied_pin")}
    seen: dict[int, str] = {}
    for key, pin in pins.items():
        if pin is None:
            continue
        if pin in seen:
            errors.append(f"gpio.{key}: pin {pin} is already used by gpio.{seen[pin]}")
        else:
            seen[pin] = key
    if s.door.unlock_seconds >= s.door.ring_timeout_seconds:
        errors.append("door.unlock_seconds: must be shorter than door.ring_timeout_seconds")
    for key in ("password_file", "tls_ca_file", "tls_cert_file", "tls_key_file"):
        value = getattr(s.mqtt, key)
        if s.mqtt.enabled and value and (problem := secret_files.check(f"mqtt.{key}", value, key in PRIVATE)):
            errors.append(problem)
    if bool(s.mqtt.tls_cert_file) != bool(s.mqtt.tls_key_file):
        errors.append("mqtt.tls_cert_file: a client certificate needs mqtt.tls_key_file too (and vice versa)")
    if s.mqtt.reconnect_min_seconds > s.mqtt.reconnect_max_seconds:
        errors.append("mqtt.reconnect_min_seconds: must not exceed mqtt.reconnect_max_seconds")
    if s.site.campus == "all":
        errors.append("site.campus: 'all' is reserved for district-wide MQTT commands ({prefix}/all/cmd/...)")
    if s.mqtt.username and not s.mqtt.password_file:
        errors.append("mqtt.password_file: mqtt.username is set but no password file; "
                      "passwords are never written inline")
    for key in ("secret_key_file", "tls_cert_file", "tls_key_file"):
        value = getattr(s.web, key)
        if s.web.enabled and value and (problem := secret_files.check(f"web.{key}", value, key in PRIVATE)):
            errors.append(problem)
    if bool(s.web.tls_cert_file) != bool(s.web.tls_key_file):
        errors.append("web.tls_cert_file: HTTPS needs both web.tls_cert_file and web.tls_key_file")
    errors.extend(_web_front_checks(s))
    for section, keys in (("mqtt", ("password",)), ("web", ("secret_key", "password"))):
        raw = data.get(section, {}) if isinstance(data.get(section), dict) else {}
        for k in keys:
            if k in raw:
                errors.append(f"{section}.{k}: secrets are never inline; use {section}.{k}_file "
                              "or a systemd credential ('credential:NAME')")
    return errors


PRIVATE = {"password_file", "secret_key_file", "tls_key_file"}
"""Settings naming private files: no links, mode 0600 (see controller/secret_files.py)."""
def _web_front_checks(s: Settings) -> list[str]:
    """Passwords and session cookies never cross the network in clear text by accident.

    Behind nginx (web.listen = "unix") nginx terminates TLS; served directly, a non-loopback
    address needs HTTPS or an explicit web.allow_plain_http = true (warned at every start).
    """
    w = s.web
    if not w.enabled:
        return []
    if w.listen == "unix":
        if w.tls_cert_file or w.tls_key_file:
            return ["web.tls_cert_file: with web.listen = \"unix\" nginx terminates TLS (its site "
                    "config names the certificate); leave web.tls_cert_file and web.tls_key_file empty"]
        return []
    if plain_http_exposed(s) and not w.allow_plain_http:
        return [f"web.host: {w.host!r} would serve the panel as plain HTTP on the network (passwords "
                "and session cookies in clear text); use web.listen = \"unix\" behind the shipped "
                "nginx front, set web.tls_cert_file and web.tls_key_file, listen on 127.0.0.1, or set "
                "web.allow_plain_http = true to accept the risk"]
    return []


def plain_http_exposed(s: Settings) -> bool:
    """The panel would answer plain HTTP on an address other machines can reach."""
    w = s.web
    return (w.enabled and w.listen == "tcp" and not (w.tls_cert_file and w.tls_key_file)
            and not is_loopback(w.host))


def _secret_path(value: str) -> Path:
    """Resolve 'credential:NAME' ($CREDENTIALS_DIRECTORY, else the installed credentials), else a path."""
    return secret_files.secret_path(value)


def read_secret(value: str) -> str:
    """Read a secret from a file or systemd credential. The value is never logged."""
    return _secret_path(value).read_text(encoding="utf-8").strip()


def read_text(path: str | os.PathLike[str]) -> str:
    """Read a config file's text, turning anything hostile into one ConfigError line.

    Refused: not a regular file (a FIFO would block relock forever), larger than
    MAX_CONFIG_BYTES, NUL bytes, not UTF-8.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read config file ({exc.strerror or exc})"]) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError([f"{p}: not a regular file"])
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError([f"{p}: too large ({st.st_size} bytes; a config is a few KB, "
                               f"the limit is {MAX_CONFIG_BYTES} bytes)"])
        with os.fdopen(os.dup(fd), "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read config file ({exc.strerror or exc})"]) from None
    finally:
        os.close(fd)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{p}: too large (over {MAX_CONFIG_BYTES} bytes)"])
    if b"\x00" in raw:
        raise ConfigError([f"{p}: contains NUL bytes (offset {raw.find(0)}): not a text config file"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{p}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"]) from None


def _read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and parse a config file: errors, including nesting so deep that the parser runs
    out of stack (RecursionError), are one ConfigError line naming the file and the problem."""
    p = Path(path)
    text = read_text(p)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{p}: not valid TOML ({str(exc).splitlines()[0][:200]})"]) from None
    except RecursionError:
        raise ConfigError([f"{p}: not valid TOML (arrays or tables nested too deeply)"]) from None


def load(path: str | os.PathLike[str]) -> Settings:
    """Load and validate a TOML config file. Raises ConfigError (a ValueError)."""
    data = _read_toml(path)
    try:
        return from_dict(data, source=str(Path(path)))
    except RecursionError:
        raise ConfigError([f"{path}: values nested too deeply"]) from None


def load_sections(path: str | os.PathLike[str], sections: tuple[str, ...]) -> Settings:
    """Load only some sections of a config file (others keep their defaults), still strictly.

    For the hardware-only commands (``relock``, ``selftest``): they must work where the
    panel's and broker's secrets are not readable (outside systemd, or in ExecStopPost).
    """
    data = _read_toml(path)
    try:
        return from_dict({k: v for k, v in data.items() if k in sections}, source=str(Path(path)))
    except RecursionError:
        raise ConfigError([f"{path}: values nested too deeply"]) from None


def with_overrides(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """Return a copy with some section fields replaced (used by simulate and tests)."""
    changes = {name: dataclasses.replace(getattr(settings, name), **values)
               for name, values in sections.items()}
    return dataclasses.replace(settings, **changes)
