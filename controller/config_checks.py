"""Config validation: the per-key checks (each names the key and says what to use instead) and
the checks across keys (pin clashes, secrets never inline, no plain HTTP on the network by
accident). Moved from config.py, which keeps the settings classes and loading.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Any, Callable

from . import secret_files
from .vocabulary import UNLOCK_CAP_SECONDS

if TYPE_CHECKING:
    from .config import Settings

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# BCM pins 0-8 are pulled up at power-on, 14/15 are the UART and toggle during
# boot. A strike on any of them could unlock while the Pi boots.
STRIKE_UNSAFE_PINS = set(range(0, 9)) | {14, 15}


def _show(value: Any, limit: int = 60) -> str:
    """repr() for error lines: bounded in length, and safe on absurdly nested values."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply>"
    return text if len(text) <= limit else text[:limit] + "...(truncated)"


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
        "led_approved_pin": [_gpio_pin], "led_denied_pin": [_gpio_pin], "panic_pin": [_gpio_pin],
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
        "home_assistant_prefix": [_slug],
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
        "mjpeg_fps": [_between(1, 15, " fps")], "encoder": [_one_of("auto", "hardware", "software")],
    },
}

def _cross_checks(s: Settings, data: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    pins = {k: getattr(s.gpio, k) for k in
            ("buzzer_pin", "strike_pin", "door_contact_pin", "tamper_pin", "exit_request_pin",
             "led_ringing_pin", "led_approved_pin", "led_denied_pin", "panic_pin")}
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
    if s.site.campus == "bridges":
        errors.append("site.campus: 'bridges' is reserved for the campus bridges' link state at the district "
                      "({prefix}/bridges/{campus}/state)")
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
    if s.intercom.enabled and s.intercom.encoder == "hardware" and s.camera.kind != "picamera2":
        errors.append("intercom.encoder: 'hardware' is the Pi camera's H.264 encoder and needs "
                      "camera.kind = 'picamera2'; use 'auto' or 'software'")
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
