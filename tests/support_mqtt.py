"""A private Mosquitto for the MQTT tests, plus subscriber and waiting helpers.

Real broker, never the one on 127.0.0.1:1883: each Broker writes its own
mosquitto.conf (free port on 127.0.0.1, no anonymous access, a password file
made with mosquitto_passwd, an ACL shaped like systemd/mosquitto/campus.acl),
and can be stopped and restarted on the same port for outage tests.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import wait_for  # noqa: F401  (re-exported for the tests)

MOSQUITTO = "/usr/sbin/mosquitto"
SCHEMAS = Path(__file__).resolve().parent.parent / "controller" / "schemas"

# account -> password; ACL below. 'admin' exists only to prove the controller ignores
# topics no ACL would let anyone else write (e.g. made-up unlock topics).
ACCOUNTS = {"ctl": "ctl-secret", "district": "district-secret", "operator": "operator-secret",
            "admin": "admin-secret"}

ACL = """\
user ctl
topic write entry/+/+/status
topic write entry/+/+/state
topic write entry/+/+/events
topic write entry/+/+/snapshot/+
topic read entry/+/+/cmd/lockdown
topic read entry/all/cmd/lockdown

user district
topic read entry/#

user operator
topic read entry/#
topic write entry/+/+/cmd/lockdown
topic write entry/all/cmd/lockdown

user admin
topic readwrite #
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Tls:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    wrong_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(directory: Path) -> Tls:
    """A throwaway CA, a server cert for 127.0.0.1 (SAN), a client cert and an unrelated CA."""
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("ca", "wrong-ca"):
        _openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
                 "-subj", f"/CN=Entry test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                  "extendedKeyUsage=clientAuth\n")
    for name, cn in (("server", "127.0.0.1"), ("client", "entry-controller")):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return Tls(ca=d / "ca.crt", server_cert=d / "server.crt", server_key=d / "server.key",
               client_cert=d / "client.crt", client_key=d / "client.key", wrong_ca=d / "wrong-ca.crt")


class Broker:
    """One private mosquitto process; stop()/start() keep the same port and files."""

    def __init__(self, directory: Path, tls: Tls | None = None, persistence: bool = False,
                 acl: str = ACL, accounts: dict[str, str] | None = None):
        accounts = accounts or ACCOUNTS
        self.accounts = accounts
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "mosquitto.log"
        passwd = self.dir / "passwd"
        for i, (user, password) in enumerate(accounts.items()):
            subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwd), user, password],
                           check=True, capture_output=True)
        (self.dir / "acl").write_text(acl)
        for user, password in accounts.items():
            (self.dir / f"{user}.pass").write_text(password + "\n")
            (self.dir / f"{user}.pass").chmod(0o600)      # secret files must be private
        lines = [
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwd}",
            f"acl_file {self.dir / 'acl'}",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {self.dir}/",
            "autosave_interval 0",
            "log_dest stderr",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            f"listener {self.port} 127.0.0.1",
        ]
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.server_cert}", f"keyfile {tls.server_key}",
                      "tls_version tlsv1.2", "require_certificate true"]
        if os.geteuid() == 0:
            lines.insert(0, "user root")   # keeps it simple: no chown of temp files to 'mosquitto'
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def password_file(self, user: str) -> Path:
        return self.dir / f"{user}.pass"

    def start(self) -> None:
        assert self.proc is None, "broker already running"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"mosquitto exited at start:\n{self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def start_broker(directory: Path, **kwargs: Any) -> Broker:
    if not Path(MOSQUITTO).is_file() or shutil.which("mosquitto_passwd") is None:
        pytest.fail("mosquitto is not installed; run scripts/bootstrap.sh")
    broker = Broker(directory, **kwargs)
    broker.start()
    return broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    b = start_broker(tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """An independent MQTT client (a district user) recording every message it gets."""

    def __init__(self, broker: Broker, user: str = "district", topics: tuple[str, ...] = ("entry/#",),
                 client_id: str | None = None, clean: bool = True, tls: Tls | None = None,
                 password: str | None = None, connect: bool = True):
        self.broker = broker
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.refused: list[str] = []
        self.topics = topics
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"test-{uuid.uuid4().hex[:10]}",
                                  clean_session=clean, protocol=mqtt.MQTTv311)
        if user:
            self.client.username_pw_set(user, password if password is not None else broker.accounts[user])
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls.ca), certfile=str(tls.client_cert), keyfile=str(tls.client_key))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        if connect:
            self.client.connect_async("127.0.0.1", broker.port, keepalive=30)
            self.client.loop_start()
            ready = self.subscribed if topics else self.connected
            wait_for(lambda: ready.is_set() or self.refused, what="the test client to connect and subscribe")

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.refused.append(str(reason))
            return
        self.connected.set()
        if self.topics:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on(self, topic: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def events(self, root: str) -> list[dict[str, Any]]:
        return [m.json() for m in self.on(f"{root}/events")]

    def publish(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=15)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def load_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.json").read_text())


def dedupe(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a consumer does: keep the first copy of each id."""
    seen: set[str] = set()
    out = []
    for e in events:
        if e["id"] not in seen:
            seen.add(e["id"])
            out.append(e)
    return out


class Linked:
    """A real controller (MockFactory GPIO, simulated camera) with its MQTT link, in this process."""

    def __init__(self, broker: Broker, state_dir: Path, clock: Any = None, door: str | None = None,
                 user: str = "ctl", campus: str = "test-campus", **mqtt_overrides: Any):
        from gpiozero.pins.mock import MockFactory

        from controller import config as cfg
        from controller import daemon
        from controller.mqtt import MqttLink
        from controller.simulate import SIM_GPIO, SimulatedStation

        self.door = door or "d" + uuid.uuid4().hex[:8]
        mqtt_settings = {"enabled": True, "host": "127.0.0.1", "port": broker.port, "username": user,
                         "password_file": str(broker.password_file(user) if user in broker.accounts else ""),
                         "reconnect_min_seconds": 0.1, "reconnect_max_seconds": 1.0, "keepalive_seconds": 10,
                         "client_id": f"ctl-{self.door}"}
        mqtt_settings.update(mqtt_overrides)
        self.settings = cfg.with_overrides(
            cfg.Settings(), site={"campus": campus, "door": self.door}, gpio=SIM_GPIO,
            camera={"kind": "simulated", "width": 160, "height": 120, "capture_timeout_seconds": 5.0},
            storage={"state_dir": Path(state_dir)}, mqtt=mqtt_settings, web={"enabled": False})
        self.root = f"{self.settings.mqtt.prefix}/{campus}/{self.door}"
        self.factory = MockFactory()
        self._daemon = daemon
        self.controller = daemon.build(self.settings, pin_factory=self.factory, clock=clock)
        self.station = SimulatedStation(self.factory, self.settings.gpio)
        self.station.settle()            # door closed, enclosure shut, as on a real installation
        daemon.start(self.controller)
        self.link = MqttLink(self.controller)
        self.controller.services.append(self.link)
        self.link.start()
        self.stopped = False

    @property
    def journal(self) -> Any:
        return self.controller.journal

    def events_of(self, type_: str) -> list[Any]:
        return list(reversed(self.journal.query(types=[type_], limit=1000)))

    def ready(self) -> "Linked":
        """Wait until connected and the command subscriptions are granted (commands sent earlier are lost)."""
        wait_for(lambda: self.link.health()["connected"] and self.link.health()["subscribed"],
                 what="the link to connect and subscribe")
        return self

    def wait_delivered(self, timeout: float = 30.0) -> None:
        wait_for(lambda: self.journal.outbox_depth() == 0, timeout, "the outbox to drain")

    def close(self) -> None:
        if not self.stopped:
            self.stopped = True
            self._daemon.stop(self.controller, "test finished")
            self.factory.reset()


_VALIDATORS: dict[str, Any] = {}


def validator(name: str) -> Any:
    """A compiled, cached validator (jsonschema.validate re-checks the schema on every call: slow)."""
    import jsonschema

    if name not in _VALIDATORS:
        schema = load_schema(name)
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        _VALIDATORS[name] = cls(schema, format_checker=jsonschema.FormatChecker())
    return _VALIDATORS[name]


def validate(instance: Any, name: str) -> None:
    validator(name).validate(instance)


def validate_all(sub: Subscriber) -> int:
    """Validate every status/state/events message a subscriber got against the JSON Schemas."""
    names = {"status": "status", "state": "state", "events": "event"}
    checked = 0
    with sub.lock:
        messages = list(sub.messages)
    for m in messages:
        kind = m.topic.rsplit("/", 1)[-1]
        if kind not in names or "/cmd/" in m.topic or not m.payload:
            continue
        validate(m.payload.decode() if kind == "status" else json.loads(m.payload), names[kind])
        checked += 1
    return checked


EXAMPLES = Path(__file__).resolve().parent.parent / "systemd" / "mosquitto"
EXAMPLE_ACCOUNTS = {"entry-main-entrance": "pw-main", "entry-gym-door": "pw-gym", "district-ro": "pw-ro",
                    "district-operator": "pw-op", "home-assistant": "pw-ha"}


def example_campus_broker(directory: Path, tls: Tls | None = None) -> Broker:
    """A Broker running systemd/mosquitto/campus.conf and campus.acl as shipped, only paths and
    ports moved into the test's directory. ``port`` is the plaintext local listener; the TLS
    listener gets its own free port (``tls_port``), with throwaway certificates."""
    tls = tls or make_certs(Path(directory) / "certs")
    broker = Broker(directory, acl=(EXAMPLES / "campus.acl").read_text(), accounts=EXAMPLE_ACCOUNTS)
    broker.tls_port = free_port()  # type: ignore[attr-defined]
    conf = (EXAMPLES / "campus.conf").read_text()
    for old, new in (("/etc/mosquitto/entry/passwd", str(broker.dir / "passwd")),
                     ("/etc/mosquitto/entry/acl", str(broker.dir / "acl")),
                     ("/etc/mosquitto/certs/ca.crt", str(tls.ca)),
                     ("/etc/mosquitto/certs/campus-broker.crt", str(tls.server_cert)),
                     ("/etc/mosquitto/certs/campus-broker.key", str(tls.server_key)),
                     ("/var/lib/mosquitto/", f"{broker.dir}/"),
                     ("listener 8883", f"listener {broker.tls_port} 127.0.0.1"),  # type: ignore[attr-defined]
                     ("listener 1883 127.0.0.1", f"listener {broker.port} 127.0.0.1")):
        assert old in conf, f"example config changed: {old} not found"
        conf = conf.replace(old, new)
    conf += "log_dest stderr\nlog_type all\n"
    broker.conf.write_text(("user root\n" if os.geteuid() == 0 else "") + conf)
    return broker


class TcpProxy:
    """A TCP relay between a client and the broker, so a test can cut one client's network path
    (``cut``: every relayed connection reset, new ones refused) while the broker keeps running,
    and restore it (``restore``) on the same port."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def restore(self) -> "TcpProxy":
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(8)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        if self._server is not None:
            try:
                self._server.shutdown(socket.SHUT_RDWR)     # wakes the blocked accept()
            except OSError:
                pass
            self._server.close()
            self._server = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.fixture
def linked(broker: Any, tmp_path: Path, clock: Any) -> Iterator[Callable[..., Linked]]:
    """Make controllers linked to the module's broker; all closed at the end."""
    made: list[Linked] = []

    def make(state_dir: Path | None = None, **kwargs) -> Linked:
        kwargs.setdefault("clock", clock)
        lc = Linked(broker, state_dir or tmp_path / f"state{len(made)}", **kwargs)
        made.append(lc)
        return lc

    yield make
    for lc in made:
        lc.close()


@pytest.fixture
def subscriber(broker: Any) -> Iterator[Callable[..., Subscriber]]:
    """Make subscribers on the module's broker; all closed at the end."""
    subs: list[Subscriber] = []

    def make(**kwargs) -> Subscriber:
        s = Subscriber(broker, **kwargs)
        subs.append(s)
        return s

    yield make
    for s in subs:
        s.close()
    for s in subs:
        validate_all(s)      # every status/state/event message any test client saw is schema-valid
