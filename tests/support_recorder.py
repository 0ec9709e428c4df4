"""District recorder fixtures: a district broker (real Mosquitto, queueing without limit for
offline persistent sessions, as the shipped district broker config should), recorder
settings pointing at the private PostgreSQL, and the recorder run in-process or as a real
``entry-buzzer-district recorder`` process (for SIGKILL tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest

from bench.district_campus import SimDoor
from district import config as dcfg
from tests.conftest import wait_for
from tests.support_mqtt import Broker
from tests.support_pg import PgCluster

REPO = Path(__file__).resolve().parent.parent
CAMPUSES = ("lincoln", "washington", "jefferson")


def district_broker(directory: Path) -> Broker:
    broker = Broker(directory)
    # unlimited queue for persistent sessions (mosquitto's default keeps 1000 and drops the rest)
    broker.conf.write_text(broker.conf.read_text() + "max_queued_messages 0\nmax_inflight_messages 0\n")
    broker.start()
    return broker


@pytest.fixture(scope="module")
def dbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = district_broker(tmp_path_factory.mktemp("district-broker"))
    yield b
    b.stop()


def recorder_settings(pg: PgCluster, broker: Broker, client_id: str = "rec-1",
                      receive_maximum: int = dcfg.Broker.receive_maximum,
                      **recorder: Any) -> dcfg.Settings:
    s = dcfg.from_dict({
        "database": {"dsn": pg.dsn},
        "broker": {"host": "127.0.0.1", "port": broker.port, "username": "district",
                   "password_file": str(broker.password_file("district")), "client_id": client_id,
                   "session_expiry_seconds": 600, "receive_maximum": receive_maximum,
                   "retained_catchup_seconds": 1.0},
        "recorder": {"campuses": list(CAMPUSES), "gap_scan_seconds": 0.3, "gap_delay_seconds": 1.0,
                     **recorder},
    })
    return s


@pytest.fixture
def recorder(pg: PgCluster, dbroker: Broker) -> Iterator[Any]:
    """A recorder in this process, subscribed, on a fresh client id (retired at the end)."""
    from district.recorder.service import Recorder

    r = Recorder(recorder_settings(pg, dbroker, client_id=f"rec-{uuid.uuid4().hex[:6]}"))
    r.start()
    wait_for(r.link.subscribed.is_set, what="the recorder to subscribe")
    yield r
    r.stop(retire=True)


def write_config(path: Path, settings: dcfg.Settings) -> Path:
    b, r = settings.broker, settings.recorder
    campuses = ", ".join(f'"{c}"' for c in r.campuses)
    path.write_text(f"""
[database]
dsn = "{settings.database.dsn}"
[broker]
host = "{b.host}"
port = {b.port}
username = "{b.username}"
password_file = "{b.password_file}"
client_id = "{b.client_id}"
session_expiry_seconds = {b.session_expiry_seconds}
receive_maximum = {b.receive_maximum}
retained_catchup_seconds = {b.retained_catchup_seconds}
[recorder]
campuses = [{campuses}]
gap_scan_seconds = {r.gap_scan_seconds}
gap_delay_seconds = {r.gap_delay_seconds}
batch_max = {r.batch_max}
""")
    return path


class RecorderProcess:
    """``entry-buzzer-district recorder`` as a real process (so it can be SIGKILLed)."""

    def __init__(self, config_path: Path, log: Path):
        self.config_path, self.log = config_path, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "RecorderProcess":
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "district.cli", "recorder", "--config",
                                          str(self.config_path)], cwd=REPO, stdout=fh, stderr=fh,
                                         env={**os.environ, "PYTHONPATH": str(REPO)})
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def retire(self) -> None:
        """Ends this instance's broker session (else the shared subscription keeps queueing its
        share for it)."""
        subprocess.run([sys.executable, "-m", "district.cli", "retire-recorder", "--config", str(self.config_path)],
                       cwd=REPO, check=True, capture_output=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(REPO)})

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.proc = None


def doors(broker: Broker, *campuses: str, door: str = "main-entrance") -> list[SimDoor]:
    out = [SimDoor("127.0.0.1", broker.port, c, door, password=broker.accounts["ctl"]) for c in campuses]
    for d in out:
        wait_for(d.connected.is_set, what=f"{d.root} to connect")
    return out


def started_recorder(recorder: Any, door: SimDoor, events: int = 0, type_: str = "door_opened") -> Any:
    """Starts an in-process ``Recorder``, waits for its subscription and its retained catch-up,
    then has ``door`` publish ``events`` events and waits until the broker has them all."""
    recorder.start()
    wait_for(recorder.link.subscribed.is_set, what="the recorder to subscribe")
    wait_for(recorder.link.catchup_done.is_set, what="the retained catch-up to end")
    for _ in range(events):
        door.event(type_)
    door.flush()
    return recorder


def count(pg: PgCluster, sql: str, *params: Any) -> Any:
    with pg.connect() as conn:
        return conn.execute(sql, params).fetchone()[0]


def rows(pg: PgCluster, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with pg.connect() as conn:
        return conn.execute(sql, params).fetchall()


def with_recorder(settings: dcfg.Settings, **changes: Any) -> dcfg.Settings:
    return replace(settings, recorder=replace(settings.recorder, **changes))


def kill_mid_load(pg: PgCluster, broker: Broker, tmp_path: Path, name: str, load: Any, per_door: int,
                  under_way: int) -> tuple["RecorderProcess", Path, Path, list[SimDoor], threading.Event]:
    """A recorder process on the three campuses, SIGKILLed once ``under_way`` events are
    recorded while ``load(sims, per_door, done)`` keeps publishing on its own thread; the kill
    must come before the load is recorded, or it proves nothing. Returns the killed process
    (start it again), its config and log, the doors and the load's ``done`` event."""
    settings = recorder_settings(pg, broker, client_id=f"rec-{name}-{uuid.uuid4().hex[:6]}", batch_max=50)
    config = write_config(tmp_path / "district.toml", settings)
    log = tmp_path / "recorder.log"
    proc = RecorderProcess(config, log).start()
    wait_for(lambda: log.exists() and "subscribed" in log.read_text(), what="the recorder to subscribe")
    sims = doors(broker, *CAMPUSES)
    done = threading.Event()
    threading.Thread(target=load, args=(sims, per_door, done), daemon=True).start()
    wait_for(lambda: count(pg, "SELECT count(*) FROM events") > under_way, what="the load to be under way")
    proc.kill()                                       # mid-load, with messages in flight
    recorded = count(pg, "SELECT count(*) FROM events")
    assert recorded < len(CAMPUSES) * per_door, "the kill came too late to prove anything"
    return proc, config, log, sims, done
