"""Two-tier MQTT topology for the bridge tests: the shipped example configs, rendered for a test.

Why a renderer and not hand-written test configs: the tests must prove that what an installer
copies from systemd/mosquitto/ works. So each broker runs the shipped file with only paths,
ports, passwords and (for the second campus) the campus slug replaced, the way an installer
does it; every replaced text must still be found in the shipped file, so an edit that would
silently change what the test covers fails here first. Certificates are throwaway ones made
at test time (tests.support_mqtt.make_certs), never committed.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support_mqtt import EXAMPLE_ACCOUNTS, EXAMPLES, Broker, Tls, free_port

SHIPPED_CAMPUS = "lincoln-elementary"
OTHER_CAMPUS = "washington-middle"
DISTRICT_ACCOUNTS = {"bridge-lincoln-elementary": "pw-bridge-lincoln", "bridge-washington-middle": "pw-bridge-wash",
                     "district-ro": "pw-ro", "district-operator": "pw-op"}


def _render(text: str, replacements: list[tuple[str, str]], what: str) -> str:
    for old, new in replacements:
        assert old in text, f"{what} changed: {old!r} not found"
        text = text.replace(old, new)
    return text


def _as_root(conf: str) -> str:
    return ("user root\n" if os.geteuid() == 0 else "") + conf + "log_dest stderr\nlog_type all\n"


def example_district_broker(directory: Path, tls: Tls) -> Broker:
    """systemd/mosquitto/district.conf + district.acl: TLS listener on a free port (``port``)."""
    broker = Broker(directory, acl=(EXAMPLES / "district.acl").read_text(), accounts=DISTRICT_ACCOUNTS)
    conf = _render((EXAMPLES / "district.conf").read_text(), [
        ("/etc/mosquitto/entry/passwd", str(broker.dir / "passwd")),
        ("/etc/mosquitto/entry/acl", str(broker.dir / "acl")),
        ("/etc/mosquitto/certs/ca.crt", str(tls.ca)),
        ("/etc/mosquitto/certs/district-broker.crt", str(tls.server_cert)),
        ("/etc/mosquitto/certs/district-broker.key", str(tls.server_key)),
        ("/var/lib/mosquitto/", f"{broker.dir}/"),
        ("listener 8883", f"listener {broker.port} 127.0.0.1"),
    ], "district.conf")
    broker.conf.write_text(_as_root(conf))
    return broker


def bridge_conf(campus: str, district_port: int, ca: Path) -> str:
    """systemd/mosquitto/district-bridge.conf for ``campus`` pointing at the test district broker."""
    password = DISTRICT_ACCOUNTS[f"bridge-{campus}"]
    text = _render((EXAMPLES / "district-bridge.conf").read_text(), [
        ("district-mqtt.example.org:8883", f"127.0.0.1:{district_port}"),
        ("remote_password CHANGE-ME-AT-INSTALL", f"remote_password {password}"),
        ("/etc/mosquitto/certs/district-ca.crt", str(ca)),
        ("restart_timeout 2 30", "restart_timeout 1 3"),   # the tests wait for reconnects: keep them short
    ], "district-bridge.conf")
    return text.replace(SHIPPED_CAMPUS, campus)


def example_bridged_campus(directory: Path, campus: str, tls: Tls, district: Broker,
                           bridge_ca: Path | None = None) -> Broker:
    """systemd/mosquitto/campus.conf + campus.acl (campus slug replaced) + the district bridge.

    ``port`` is the campus's local plaintext listener (the controllers in the tests use it);
    the TLS listener gets its own free port. ``bridge_ca`` overrides the CA the bridge trusts
    (a wrong one must keep the bridge down)."""
    acl = (EXAMPLES / "campus.acl").read_text().replace(SHIPPED_CAMPUS, campus)
    broker = Broker(directory, acl=acl, accounts=EXAMPLE_ACCOUNTS)
    conf = _render((EXAMPLES / "campus.conf").read_text(), [
        ("/etc/mosquitto/entry/passwd", str(broker.dir / "passwd")),
        ("/etc/mosquitto/entry/acl", str(broker.dir / "acl")),
        ("/etc/mosquitto/certs/ca.crt", str(tls.ca)),
        ("/etc/mosquitto/certs/campus-broker.crt", str(tls.server_cert)),
        ("/etc/mosquitto/certs/campus-broker.key", str(tls.server_key)),
        ("/var/lib/mosquitto/", f"{broker.dir}/"),
        ("listener 8883", f"listener {free_port()} 127.0.0.1"),
        ("listener 1883 127.0.0.1", f"listener {broker.port} 127.0.0.1"),
    ], "campus.conf")
    conf += "\n" + bridge_conf(campus, district.port, bridge_ca or tls.ca)
    broker.conf.write_text(_as_root(conf))
    return broker
