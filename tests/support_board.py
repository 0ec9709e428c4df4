"""A whole district for the board tests: a private Mosquitto, a private PostgreSQL, the real
recorder (district.recorder) and the real board server (cheroot), all started by the suite.

Campus doors are real controllers on MockFactory with the simulated camera and their MQTT
link (tests.support_mqtt.Linked), so "a campus publishes" is the real controller publishing
and "a lockdown reaches a door" is the real controller applying the command.

The board's clock is injectable (``District.shift``): the grid and the browser compute ring
ages from the server's time, so a test moves the board 60 s ahead instead of sleeping 30 s.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from district import config as dcfg
from district.board import config as bcfg
from district.board.server import BoardServer
from tests.conftest import wait_for as wait_for  # re-exported for the board tests
from tests.support_mqtt import Linked, start_broker
from tests.support_pg import PgCluster, start_pg

CAMPUSES = ("north-high", "south-elem")
PASSWORDS = {"olivia": "harbor-velvet-quince-92-lamp", "victor": "maple-kettle-sparrow-4"}
NAMES = {"olivia": "Olivia Operator", "victor": "Victor Viewer"}
ROLES = {"olivia": "operator", "victor": "viewer"}
TEST_CONFIG = {"TESTING": True, "SSE_HEARTBEAT_SECONDS": 0.5, "PASSWORD_SCRYPT_N": 2 ** 10, "DB_WAIT_SECONDS": 1.0}
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]*)"')


class District:
    def __init__(self, root: Path):
        self.root = root
        self.shift = timedelta(0)
        self.pg: PgCluster = start_pg()
        self.broker = start_broker(root / "broker")
        self.doors: list[Linked] = []
        from district.recorder.service import Recorder
        rec_settings = dcfg.Settings(
            database=dcfg.Database(dsn=self.pg.dsn),
            broker=dcfg.Broker(host="127.0.0.1", port=self.broker.port, username="district",
                               password_file=str(self.broker.password_file("district")),
                               client_id="board-test-recorder", session_expiry_seconds=60),
            recorder=dcfg.Recorder(campuses=CAMPUSES, gap_delay_seconds=2.0, gap_scan_seconds=0.5))
        self.recorder = Recorder(rec_settings)
        self.recorder.start()
        self.settings = bcfg.from_dict({
            "database": {"dsn": self.pg.dsn, "pool_size": 6},
            "web": {"listen": "tcp", "host": "127.0.0.1", "port": 0, "threads": 16},
            "mqtt": {"host": "127.0.0.1", "port": self.broker.port, "username": "operator",
                     "password_file": str(self.broker.password_file("operator")), "timeout_seconds": 10.0},
            "campuses": {"north-high": {"name": "North High", "panel_url": "https://north-high.example.org/"}},
        })
        self.server = BoardServer(self.settings, test_config=TEST_CONFIG, now=self.now).start()
        store = self.store
        for user, password in PASSWORDS.items():
            store.add_user(user, password, ROLES[user], NAMES[user])

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def app(self) -> Any:
        return self.server.app

    @property
    def store(self) -> Any:
        return self.app.extensions["board_store"]

    @property
    def hub(self) -> Any:
        return self.app.extensions["board_hub"]

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.shift

    def door(self, campus: str, door: str) -> Linked:
        linked = Linked(self.broker, self.root / f"{campus}-{door}", campus=campus, door=door).ready()
        self.doors.append(linked)
        return linked

    def grid_door(self, campus: str, door: str) -> dict[str, Any] | None:
        grid = self.hub.refresh() or {}
        for c in grid.get("campuses", []):
            for d in c["doors"]:
                if c["campus"] == campus and d["door"] == door:
                    return d
        return None

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.pg.connect(autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        for d in self.doors:
            d.close()
        self.server.stop()
        self.recorder.stop()
        self.broker.stop()
        self.pg.destroy()


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Iterator[District]:
    d = District(tmp_path_factory.mktemp("district"))
    try:
        yield d
    finally:
        d.close()


def sign_in(client: Any, username: str, password: str | None = None) -> Any:
    """A Flask test client signed in as ``username``; returns the sign-in response."""
    page = client.get("/login")
    token = CSRF_INPUT.search(page.get_data(as_text=True)).group(1)
    return client.post("/login", data={"username": username, "password": password or PASSWORDS[username],
                                       "csrf_token": token, "next": "/"})


def csrf_of(client: Any) -> str:
    return CSRF_INPUT.search(client.get("/search").get_data(as_text=True)).group(1)
