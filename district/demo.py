"""The district demo: ``entry-buzzer simulate --district N`` (or ``bash scripts/district-demo.sh``).

One command shows a newcomer the district side on real parts: a private Mosquitto (the
district broker), a private PostgreSQL (initdb in a temp dir, a free port), N simulated
campuses with two doors each (the real daemon on gpiozero's mock pins with the simulated
camera, in this process; each campus's main entrance serves its panel), the recorder
(``district.recorder``) and the board. A little visitor traffic keeps the grid alive; some
rings are left unanswered so the board's highlight can be seen. Everything is stopped by
PID and its temp directory removed on Ctrl-C.
"""

from __future__ import annotations

import logging
import random
import secrets
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from controller import config as cfg
from controller.facade import Controller
from controller.simulate import SimulatedPin, SimulatedStation, simulated_settings

from .demo_services import DemoBroker, DemoError, DemoPostgres, door_account, free_port, render_acl

log = logging.getLogger("district.demo")

CAMPUS_NAMES = ["lincoln-elementary", "washington-middle", "roosevelt-high", "jefferson-elementary",
                "adams-middle", "madison-high", "monroe-elementary", "jackson-middle", "grant-high", "hayes-elementary"]
DOORS = ("main-entrance", "gym-door")
STAFF = "Front Office (simulated)"


class DemoDoor:
    """One simulated door running the real daemon in a thread, linked to the demo broker."""

    def __init__(self, root: Path, campus: str, door: str, broker: DemoBroker, web_port: int | None):
        self.campus, self.door = campus, door
        base = cfg.with_overrides(cfg.Settings(), site={"campus": campus, "door": door,
                                                         "campus_name": campus.replace("-", " ").title()})
        s = simulated_settings(base, root / f"{campus}-{door}", web_port=web_port or 0, mqtt=True,
                               mqtt_port=broker.port, web=web_port is not None)
        account = door_account(campus, door)      # its own broker account, as in the shipped campus ACL
        self.settings = cfg.with_overrides(s, mqtt={
            "enabled": True, "host": "127.0.0.1", "port": broker.port, "username": account,
            "password_file": str(broker.password_file(account)), "client_id": f"entry-{campus}-{door}",
            "allow_remote_lockdown_end": True, "reconnect_min_seconds": 0.5, "reconnect_max_seconds": 2.0})
        self.factory = MockFactory(pin_class=SimulatedPin)
        self.station = SimulatedStation(self.factory, self.settings.gpio)
        self.controller: Controller | None = None
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.admin_password = ""
        self.thread = threading.Thread(target=self._run, name=f"door-{campus}-{door}", daemon=True)

    @property
    def panel_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.web.port}/" if self.settings.web.enabled else ""

    def _ready(self, controller: Controller) -> None:
        self.controller = controller
        if self.settings.web.enabled:
            from web.cli import ensure_sim_admin
            self.admin_password = ensure_sim_admin(self.settings)
        self.ready.set()

    def _run(self) -> None:
        try:
            # the composition root's run: the door's MQTT link and panel (with this /sim station)
            from entry_buzzer.compose import run
            run(self.settings, pin_factory=self.factory, simulated=True, station=self.station,
                on_ready=self._ready, on_built=lambda _c: self.station.settle(), stop_event=self.stop)
        finally:
            self.ready.set()

    def start(self) -> "DemoDoor":
        self.thread.start()
        return self


class Traffic(threading.Thread):
    """Visitors ring now and then; the office answers most rings, but not all of them."""

    def __init__(self, doors: list[DemoDoor], stop: threading.Event, every: float = 20.0):
        super().__init__(name="demo-traffic", daemon=True)
        self.doors, self.stop, self.every = doors, stop, every
        self.rng = random.Random()

    def run(self) -> None:
        while not self.stop.wait(self.rng.uniform(self.every / 2, self.every * 1.5)):
            door = self.rng.choice(self.doors)
            if door.controller is None:
                continue
            door.station.press()
            if self.rng.random() < 0.6:      # answered after a few seconds; otherwise left ringing
                threading.Timer(self.rng.uniform(4, 12), self._answer, args=(door,)).start()

    def _answer(self, door: DemoDoor) -> None:
        if self.stop.is_set() or door.controller is None:
            return
        ring = door.controller.status().get("ring")
        if ring:
            act = door.controller.approve if self.rng.random() < 0.7 else door.controller.deny
            act(ring["request_id"], STAFF)


def _recorder_settings(pg: DemoPostgres, broker: DemoBroker, campuses: list[str]) -> Any:
    from district import config as dcfg
    return dcfg.Settings(
        database=dcfg.Database(dsn=pg.dsn),
        broker=dcfg.Broker(host="127.0.0.1", port=broker.port, username="district-ro",
                           password_file=str(broker.password_file("district-ro")), client_id="demo-recorder-1"),
        recorder=dcfg.Recorder(campuses=tuple(campuses), gap_delay_seconds=10.0))


def _board_settings(pg: DemoPostgres, broker: DemoBroker, port: int, doors: list[DemoDoor]) -> Any:
    from district.board import config as bcfg
    campuses = {d.campus: {"name": d.campus.replace("-", " ").title(), "panel_url": d.panel_url}
                for d in doors if d.panel_url}
    return bcfg.from_dict({
        "database": {"dsn": pg.dsn},
        "web": {"listen": "tcp", "host": "127.0.0.1", "port": port, "threads": 24},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "username": "district-operator",
                 "password_file": str(broker.password_file("district-operator"))},
        "campuses": campuses})


def run_demo(campuses: int = 3, port: int = 8080, duration: float | None = None, traffic: bool = True) -> int:
    """Start everything, print where to look, run until Ctrl-C (or ``duration``), stop everything."""
    if not 1 <= campuses <= len(CAMPUS_NAMES):
        print(f"error: --district: use 1 to {len(CAMPUS_NAMES)} campuses")
        return 2
    root = Path(tempfile.mkdtemp(prefix="entry-district-demo-"))
    stop = threading.Event()
    names = CAMPUS_NAMES[:campuses]
    accounts = [door_account(c, d) for c in names for d in DOORS] + ["district-ro", "district-operator"]
    passwords = {u: secrets.token_urlsafe(12) for u in accounts}
    broker = pg = recorder = board = None
    doors: list[DemoDoor] = []
    try:
        broker = DemoBroker(root / "broker", passwords, render_acl(names, DOORS)).start()
        pg = DemoPostgres().start()
        from district.recorder.service import Recorder
        recorder = Recorder(_recorder_settings(pg, broker, names))
        recorder.start()
        for campus in names:
            for i, door in enumerate(DOORS):
                doors.append(DemoDoor(root, campus, door, broker, free_port() if i == 0 else None).start())
        for d in doors:
            d.ready.wait(60)
        from district.board.accounts import BoardStore
        from district.board.server import BoardServer
        from web.store import generate_password
        board = BoardServer(_board_settings(pg, broker, port, doors)).start()
        store: BoardStore = board.app.extensions["board_store"]
        users = {"operator": generate_password(), "viewer": generate_password()}
        for user, pw in users.items():
            store.add_user(user, pw, user, f"Demo {user.title()}")
        if traffic:
            Traffic(doors, stop).start()
        print(f"district demo: {campuses} simulated campuses, {len(doors)} doors", flush=True)
        print(f"board: {board.url}/  sign in as operator / {users['operator']}  or  viewer / {users['viewer']}",
              flush=True)
        for d in doors:
            if d.panel_url:
                print(f"campus panel {d.campus}: {d.panel_url}  (admin / {d.admin_password})", flush=True)
        print(f"district broker: mosquitto_sub -h 127.0.0.1 -p {broker.port} -u district-ro -P "
              f"'{passwords['district-ro']}' -v -t 'entry/#'", flush=True)
        print(f"district database: psql '{pg.dsn}'", flush=True)
        print("Ctrl-C stops everything.", flush=True)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
        stop.wait(duration)
        return 0
    except DemoError as exc:
        print(f"error: {exc}")
        return 1
    finally:
        stop.set()
        if board is not None:
            board.stop()
        for d in doors:
            d.stop.set()
        for d in doors:
            d.thread.join(timeout=15)
        if recorder is not None:
            recorder.stop()
        if pg is not None:
            pg.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(root, ignore_errors=True)
