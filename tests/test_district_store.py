"""The batch writer on a real PostgreSQL: the guards that keep newer data from being undone by
older copies (late states, retained statuses from a catch-up), and door rows kept from a
flood of offline last wills alone."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from district.recorder.messages import State, Status
from district.recorder.store import write_batch
from tests.support_recorder import rows

pytestmark = [pytest.mark.postgres]


def _write(pg, items) -> None:
    with pg.connect() as conn:
        write_batch(conn, items, 64, set())


def _state(ts: str, door: str) -> State:
    payload = {"campus": "lincoln", "door_id": "main", "door": door, "ts": ts}
    return State("lincoln", "main", datetime.fromisoformat(ts.replace("Z", "+00:00")), None, json.dumps(payload))


@pytest.fixture
def lincoln(pg):
    with pg.connect() as conn:
        conn.execute("INSERT INTO campuses (campus) VALUES ('lincoln')")
    return pg


def test_an_older_state_never_overwrites_a_newer_one(lincoln) -> None:
    _write(lincoln, [_state("2026-11-30T07:00:02.000Z", "open")])
    _write(lincoln, [_state("2026-11-30T07:00:01.000Z", "locked")])          # late copy of an older one
    assert rows(lincoln, "SELECT state->>'door' FROM doors") == [("open",)]
    _write(lincoln, [_state("2026-11-30T07:00:03.000Z", "locked"), _state("2026-11-30T07:00:02.500Z", "unlocked")])
    assert rows(lincoln, "SELECT state->>'door' FROM doors") == [("locked",)]   # newest of the batch


def test_a_retained_status_never_undoes_a_newer_live_one(lincoln) -> None:
    catchup_began = datetime.now(timezone.utc) - timedelta(seconds=5)
    _write(lincoln, [Status("lincoln", "main", False)])                        # live: the door went offline
    _write(lincoln, [Status("lincoln", "main", True, since=catchup_began)])    # retained copy from before
    assert rows(lincoln, "SELECT online FROM doors") == [(False,)]
    later = datetime.now(timezone.utc) + timedelta(seconds=5)
    _write(lincoln, [Status("lincoln", "main", True, since=later)])            # no live status since: applies
    assert rows(lincoln, "SELECT online FROM doors") == [(True,)]


def test_an_offline_will_is_not_a_sign_of_life(lincoln) -> None:
    _write(lincoln, [Status("lincoln", "main", False)])
    assert rows(lincoln, "SELECT online, last_seen FROM doors") == [(False, None)]
    _write(lincoln, [Status("lincoln", "main", True)])
    assert rows(lincoln, "SELECT online, last_seen IS NOT NULL FROM doors") == [(True, True)]


def test_rejected_command_lists_totals_and_newest(lincoln, tmp_path, capsys) -> None:
    from district.cli import main
    from district.recorder.messages import Rejected

    config = tmp_path / "d.toml"
    config.write_text(f'[database]\ndsn = "{lincoln.dsn}"\n')
    assert main(["rejected", "--config", str(config)]) == 0
    assert "nothing refused" in capsys.readouterr().out
    _write(lincoln, [Rejected("entry/x/y/events", "unknown_campus", "campus 'x' is not registered", b"{\"a\": 1}")] * 3)
    assert main(["rejected", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "unknown_campus" in out and " 3 " in out and "entry/x/y/events" in out and '{"a": 1}' in out


def test_every_commit_that_touches_a_door_notifies_the_board(lincoln) -> None:
    """The board's live grid listens on 'district': each commit names the doors it changed."""
    with lincoln.connect(autocommit=True) as listener:
        listener.execute("LISTEN district")
        _write(lincoln, [Status("lincoln", "main", True), _state("2026-11-30T07:00:02.000Z", "open")])
        got = [json.loads(n.payload) for n in listener.notifies(timeout=10, stop_after=1)]
    assert got == [{"doors": ["lincoln/main"]}]


def test_schema_is_applied_once_per_version(pg) -> None:
    """A recorder starting next to one already writing must not run DDL (table locks would
    stall or deadlock the other): the schema records its version, and a current one is skipped."""
    from district import SCHEMA_SQL, SCHEMA_VERSION, db

    assert f"VALUES ('version', '{SCHEMA_VERSION}')" in SCHEMA_SQL.read_text()
    assert db.apply_schema(pg.dsn) is False                 # the fixture applied it already
    with pg.connect() as conn:
        conn.execute("UPDATE schema_info SET value = 'old' WHERE key = 'version'")
    assert db.apply_schema(pg.dsn) is True
    assert rows(pg, "SELECT value FROM schema_info") == [(SCHEMA_VERSION,)]
