"""The board's config (fast, in-process): the shipped example loads, every mistake names its key,
the recorder's [database] dsn is the default, no password in a DSN, and lockdown commands are
only ever the contract's lockdown JSON on a door's cmd/lockdown topic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.config import ConfigError
from district.board import config as bcfg
from district.board.publisher import command, command_topic, district_topic

EXAMPLE = Path(__file__).resolve().parent.parent / "district" / "board" / "board.example.toml"


def test_the_shipped_example_loads():
    s = bcfg.load(EXAMPLE)
    assert s.database.dsn == "dbname=district user=entry-district"
    assert s.mqtt.username == "district-operator" and s.mqtt_accounts["jrivera"].username == "district-op-jrivera"
    assert s.campuses["lincoln-elementary"].panel_url.startswith("https://")
    assert s.ring_alert_seconds == 30.0 and s.web.listen == "unix"


@pytest.mark.parametrize("text, key", [
    ("[board]\nring_alert_second = 5\n", "board.ring_alert_second: unknown key"),
    ("[board]\nring_alert_seconds = 'soon'\n", "board.ring_alert_seconds: expected float"),
    ("[board]\nring_alert_seconds = 0\n", "board.ring_alert_seconds: use 1 to 3600"),
    ("[board.web]\nlisten = 'udp'\n", "board.web.listen"),
    ("[board.web]\nport = 70000\n", "board.web.port"),
    ("[board.mqtt]\nprefix = 'Entry/#'\n", "board.mqtt.prefix"),
    ("[board.database]\ndsn = 'dbname=x password=hunter2'\n", "board.database.dsn: no password"),
    ("[board.campuses.all]\nname = 'x'\n", "board.campuses.all"),
    ("[board.campuses.north]\npanel_url = 'javascript:alert(1)'\n", "board.campuses.north.panel_url"),
    ("[board.mqtt_accounts.olivia]\nusername = 'x'\n", "board.mqtt_accounts.olivia: give username and password_file"),
    ("board = 3\n", "board: expected a table"),
    ("[board\n", "not valid TOML"),
])
def test_config_errors_name_the_key(tmp_path, text, key):
    path = tmp_path / "district.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        bcfg.load(path)
    assert any(key in line for line in exc.value.errors), exc.value.errors


def test_recorder_dsn_is_the_default_and_a_board_dsn_wins():
    assert bcfg.from_file_dict({"database": {"dsn": "dbname=a"}}).database.dsn == "dbname=a"
    s = bcfg.from_file_dict({"database": {"dsn": "dbname=a"}, "board": {"database": {"dsn": "dbname=b"}}})
    assert s.database.dsn == "dbname=b"


def test_commands_are_only_lockdown_json_on_a_doors_topic():
    assert command_topic("entry", "north", "main") == "entry/north/main/cmd/lockdown"
    assert district_topic("entry") == "entry/all/cmd/lockdown"          # every door subscribes to it
    for prefix in ("", "+", "#", "a/b"):
        with pytest.raises(ValueError):
            district_topic(prefix)
    for campus, door in (("all", "x"), ("north", "+"), ("north", "#"), ("../x", "y"), ("north", "a/b")):
        with pytest.raises(ValueError):
            command_topic("entry", campus, door)
    body = json.loads(command("start", "board-1", "Olivia (district)", "drill"))
    assert body == {"action": "start", "id": "board-1", "by": "Olivia (district)", "reason": "drill"}
    assert json.loads(command("start", "i", "b", "", "secure"))["level"] == "secure"
    assert "level" not in json.loads(command("end", "i", "b", "", "secure"))
    for bad in (("unlock", "lockdown"), ("start", "open")):
        with pytest.raises(ValueError):
            command(bad[0], "i", "b", "", bad[1])
    assert len(json.loads(command("start", "x" * 100, "y" * 300, "z" * 500))["by"]) == 100


def test_only_http_links_reach_the_grid():
    from district.board.grid import safe_url
    assert safe_url("https://north.example.org/") == "https://north.example.org/"
    for bad in ("javascript:alert(1)", "data:text/html,x", "//evil", "", None, "http://"):
        assert safe_url(bad) == ""


def test_notifications_name_doors_or_ask_for_a_rebuild():
    from district.board.live import doors_named
    assert doors_named("board_door", "north/main") == {("north", "main")}
    assert doors_named("board_door", "north/") is None
    assert doors_named("district", '{"doors": ["a/x", "b/y"]}') == {("a", "x"), ("b", "y")}
    assert doors_named("district", '{"gaps": ["a/x"]}') == {("a", "x")}
    for whole in ('{"doors": "*"}', '{"doors": ["a/*"]}', "not json", '{"doors": [1]}', "[]"):
        assert doors_named("district", whole) is None, whole
