"""TOML configuration -> typed, validated settings.

Why so strict: this file decides which GPIO drives a door strike. A typo must
never silently fall back to a default, so unknown keys are errors, every value
is range-checked, and every error names the key and says why. All errors are
collected, not just the first, so a technician fixes the file in one pass.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import secret_files
from .config_checks import CHECKS, _cross_checks, _show, is_loopback, plain_http_exposed  # noqa: F401  (API)
from .door_settings import DoorSettings  # the [door] section: one class, the core runs on it
from .vocabulary import UNLOCK_CAP_SECONDS  # the hard cap on strike on-time; a config cannot raise it

DEFAULT_CONFIG = "/etc/entry-buzzer/config.toml"
"""The installed config (deploy/install.sh): every command's --config defaults to it."""

MAX_CONFIG_BYTES = 1024 * 1024
"""A real config is a few KB; anything near this is not a config (and must not cost memory)."""


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
    panic_pin: int | None = None            # desk panic (duress) button to ground, debounced like the buzzer


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
    publish_visitor_names: bool = True      # false: a visitor's name stays in the journal, off MQTT
    tls_min_version: str = "1.2"            # TLS is on when tls_ca_file is set; never below 1.2
    reconnect_min_seconds: float = 1.0      # backoff doubles from here, with random jitter
    reconnect_max_seconds: float = 5.0      # cap: the district sees the door again within seconds
    session_expiry_seconds: int = 86400     # broker keeps the session (and queued commands) this long
    home_assistant: bool = False            # publish Home Assistant discovery configs (read-only entities)
    home_assistant_prefix: str = "homeassistant"   # Home Assistant's discovery prefix


@dataclass(frozen=True)
class PanicSettings:
    starts_lockdown: bool = True            # the panic (duress) button also starts a lockdown


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
    # live video encoder: "hardware" = the Pi camera's H.264 encoder (Pi 4: bcm2835-codec,
    # /dev/video11) fed by the camera's lores stream; "software" = one shared VP8 encode in
    # PyAV (Pi 5, which has no video encoder, and the simulated camera); "auto" picks hardware
    # when the camera is picamera2 and the encoder device exists.
    encoder: str = "auto"


@dataclass(frozen=True)
class Settings:
    site: SiteSettings = field(default_factory=SiteSettings)
    gpio: GpioSettings = field(default_factory=GpioSettings)
    door: DoorSettings = field(default_factory=DoorSettings)
    camera: CameraSettings = field(default_factory=CameraSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    web: WebSettings = field(default_factory=WebSettings)
    panic: PanicSettings = field(default_factory=PanicSettings)
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


SECTION_CLASSES = {
    "site": SiteSettings, "gpio": GpioSettings, "door": DoorSettings, "camera": CameraSettings,
    "storage": StorageSettings, "mqtt": MqttSettings, "web": WebSettings, "panic": PanicSettings,
    "intercom": IntercomSettings,
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


def secret_path(value: str) -> Path:
    """Resolve 'credential:NAME' ($CREDENTIALS_DIRECTORY, else the installed credentials), else a path."""
    return secret_files.secret_path(value)


def read_secret(value: str) -> str:
    """Read a secret from a file or systemd credential. The value is never logged."""
    return secret_path(value).read_text(encoding="utf-8").strip()


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
