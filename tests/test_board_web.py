"""The district board over HTTP (Flask test client on the real app), against a real PostgreSQL,
a real Mosquitto, the real recorder and real campus controllers: roles, CSRF, sign-in
throttling, bad input (clear 4xx, never a 500 or a trace), search paging and CSV, the
lockdown confirmation and its audit, and that no route or topic can unlock a door."""

from __future__ import annotations

import csv
import io
import json
import re
import time

import pytest

from controller import events as ev
from tests.support_board import PASSWORDS, csrf_of, sign_in, wait_for
from tests.support_mqtt import Subscriber

pytestmark = [pytest.mark.postgres, pytest.mark.broker]


@pytest.fixture(scope="module")
def doors(district):
    return {"n1": district.door("north-high", "main-entrance"), "s1": district.door("south-elem", "front")}


@pytest.fixture
def viewer(district):
    c = district.app.test_client()
    assert sign_in(c, "victor").status_code == 303
    return c


@pytest.fixture
def operator(district):
    c = district.app.test_client()
    assert sign_in(c, "olivia").status_code == 303
    return c


def test_anonymous_is_sent_to_sign_in_and_api_gets_401(district):
    c = district.app.test_client()
    page = c.get("/")
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    assert c.get("/api/grid").status_code == 401
    assert c.get("/live").status_code == 401
    assert c.get("/search.csv").status_code == 401


def test_wrong_password_is_refused_and_audited(district):
    c = district.app.test_client()
    r = sign_in(c, "victor", "not-the-password-at-all")
    assert r.status_code == 401
    assert "Wrong username or password" in r.get_data(as_text=True)
    rows = district.sql("SELECT username, action FROM audit WHERE action = 'login_failed'")
    assert ("victor", "login_failed") in rows


def test_an_unknown_username_costs_what_a_real_account_does(district, monkeypatch):
    """No user-exists oracle: for an unknown name the board checks the panel's dummy hash, of the
    production scrypt cost (the board's own dummy had n=2**10, 1/16 of a real account's)."""
    import hashlib

    from web.store import SCRYPT_N
    costs: list[int] = []
    real = hashlib.scrypt
    monkeypatch.setattr(hashlib, "scrypt", lambda *a, **k: costs.append(k["n"]) or real(*a, **k))
    assert district.store.authenticate("nobody-here", "not-the-password-at-all") is None
    assert costs == [SCRYPT_N]


def test_security_headers_and_cookie_flags(district):
    c = district.app.test_client()
    r = sign_in(c, "victor")
    cookie = r.headers["Set-Cookie"]
    assert "district_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = c.get("/")
    assert page.status_code == 200
    for header in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"):
        assert header in page.headers
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


def test_grid_shows_campuses_and_doors_from_the_recorder(district, doors, viewer):
    wait_for(lambda: district.grid_door("south-elem", "front"), what="the recorder to file south-elem/front")
    grid = viewer.get("/api/grid").get_json()
    by = {c["campus"]: c for c in grid["campuses"]}
    assert by["north-high"]["name"] == "North High"                       # from the board's config
    assert by["north-high"]["panel_url"] == "https://north-high.example.org/"
    door = wait_for(lambda: next((d for d in viewer.get("/api/grid").get_json()["campuses"][0]["doors"]
                                  if d["door"] == "main-entrance" and d["online"]), None), what="north door online")
    assert door["state"] == "locked" and door["ring"] is None and door["lockdown"] is None


def test_viewer_cannot_start_a_lockdown(district, doors, viewer):
    assert viewer.get("/lockdown?campus=north-high&action=start").status_code == 403
    r = viewer.post("/lockdown", data={"action": "start", "campus": "north-high", "reason": "x", "confirm": "yes",
                                       "csrf_token": csrf_of(viewer)})
    assert r.status_code == 403
    assert "operator" in r.get_data(as_text=True)
    assert not doors["n1"].controller.core.status()["lockdown"]


def test_post_without_csrf_is_refused_and_changes_nothing(district, doors, operator):
    before = district.sql("SELECT count(*) FROM audit WHERE action LIKE 'lockdown_%'")[0][0]
    r = operator.post("/lockdown", data={"action": "start", "campus": "north-high", "reason": "drill",
                                         "confirm": "yes"})
    assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)
    r = operator.post("/lockdown", data={"action": "start", "campus": "north-high", "reason": "drill",
                                         "confirm": "yes", "csrf_token": "forged"})
    assert r.status_code == 400
    assert district.sql("SELECT count(*) FROM audit WHERE action LIKE 'lockdown_%'")[0][0] == before
    assert not doors["n1"].controller.core.status()["lockdown"]


def test_login_without_its_csrf_cookie_is_refused(district):
    c = district.app.test_client()
    r = c.post("/login", data={"username": "victor", "password": PASSWORDS["victor"], "csrf_token": "x"})
    assert r.status_code == 400


@pytest.mark.parametrize("form, words", [
    ({"action": "unlock", "campus": "north-high"}, "action"),
    ({"action": "start", "campus": "nowhere-campus"}, "not a campus of this district"),
    ({"action": "start", "campus": "../etc"}, "campus"),
    ({"action": "start", "campus": "north-high", "reason": ""}, "reason"),
    ({"action": "start", "campus": "north-high", "reason": "x" * 201}, "reason"),
    ({"action": "start", "campus": "north-high", "reason": "drill", "confirm": "no"}, "confirm"),
])
def test_bad_lockdown_requests_get_a_clear_400(district, doors, operator, form, words):
    data = {"confirm": "yes", "csrf_token": csrf_of(operator), **form}
    r = operator.post("/lockdown", data=data)
    assert r.status_code == 400, r.get_data(as_text=True)
    assert words in r.get_data(as_text=True)
    assert "Traceback" not in r.get_data(as_text=True)
    assert not doors["n1"].controller.core.status()["lockdown"]


@pytest.mark.parametrize("path, status", [
    ("/search?since=yesterday", 400), ("/search?type=door_unlocked_please", 400),
    ("/search?campus=UPPER", 400), ("/search?campus=not-here", 400), ("/search?before=garbage", 400),
    ("/search?since=2026-11-30&until=2026-11-01", 400), ("/search.csv?since=" + "9" * 50, 400),
    ("/door/north-high/no-such-door", 404), ("/door/North/x", 400), ("/door/north-high/main-entrance?before=x", 400),
    ("/snapshot/999999999", 404), ("/snapshot/99999999999999999999999", 404), ("/unlock", 404),
    ("/api/unlock", 404),
])
def test_bad_input_gets_a_clear_4xx(district, doors, viewer, path, status):
    r = viewer.get(path)
    assert r.status_code == status, (path, r.status_code, r.get_data(as_text=True)[:300])
    assert "Traceback" not in r.get_data(as_text=True)


def test_oversized_body_is_413_not_500(district, operator):
    r = operator.post("/lockdown", data={"reason": "x" * 40_000, "csrf_token": csrf_of(operator)})
    assert r.status_code == 413


def test_no_route_unlocks_a_door(district):
    rules = {str(r) for r in district.app.url_map.iter_rules()}
    assert not any("unlock" in r or "approve" in r or "open" in r for r in rules), rules


def test_lockdown_confirmation_publishes_audits_and_reaches_the_door(district, doors, operator):
    spy = Subscriber(district.broker, user="district", topics=("entry/+/+/cmd/lockdown",))
    try:
        page = operator.get("/lockdown?campus=south-elem&action=start")
        assert page.status_code == 200 and "1 door" in page.get_data(as_text=True)
        assert not spy.messages                               # the confirmation page sends nothing
        token = csrf_of(operator)
        r = operator.post("/lockdown", data={"action": "start", "campus": "south-elem", "reason": "police nearby",
                                             "confirm": "yes", "csrf_token": token})
        assert r.status_code == 200, r.get_data(as_text=True)
        door = doors["s1"]
        wait_for(lambda: door.controller.core.status()["lockdown"], what="the door to apply the lockdown")
        started = door.events_of(ev.LOCKDOWN_STARTED)[-1]
        assert started.data["source"] == "mqtt" and started.actor == "Olivia Operator (district)"
        msgs = wait_for(lambda: spy.on("entry/south-elem/front/cmd/lockdown"), what="the spy to see the command")
        assert len(msgs) == 1 and not msgs[0].retain
        cmd = msgs[0].json()
        assert cmd["action"] == "start" and cmd["reason"] == "police nearby"
        assert started.data["command_id"] == cmd["id"]
        assert not doors["n1"].controller.core.status()["lockdown"]       # only that campus
        audit = district.sql("SELECT username, campus, detail FROM audit WHERE action = 'lockdown_start' "
                             "ORDER BY id DESC LIMIT 1")[0]
        assert audit[0] == "olivia" and audit[1] == "south-elem"
        assert audit[2]["command_id"] == cmd["id"] and audit[2]["acknowledged"] == 1
        wait_for(lambda: (district.grid_door("south-elem", "front") or {}).get("lockdown") == "lockdown",
                 what="the grid to show the lockdown")
        assert all("unlock" not in m.topic for m in spy.messages)
    finally:
        spy.close()
        doors["s1"].controller.end_lockdown("test", source="panel")


def test_search_pages_and_csv_escape_formulas(district, doors, viewer):
    door = doors["n1"]
    for _ in range(3):
        door.station.press()
    wait_for(lambda: len(viewer.get("/search.csv?type=buzzer_pressed&campus=north-high").get_data(as_text=True)
                         .strip().splitlines()) >= 2, what="presses to be recorded")
    # A hostile actor name as a campus could have journaled it: the CSV must not run it.
    door.controller.start_lockdown("=HYPERLINK(\"http://x\")", reason="@SUM(1)", source="panel")
    door.controller.end_lockdown("+cmd", source="panel")
    wait_for(lambda: "lockdown_ended" in viewer.get("/search.csv?campus=north-high").get_data(as_text=True),
             what="the lockdown events to be recorded")
    text = viewer.get("/search.csv?campus=north-high&type=lockdown_started&type=lockdown_ended").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:4] == ["time", "campus", "door", "event"]
    cells = [cell for row in rows[1:] for cell in row]
    assert "'=HYPERLINK(\"http://x\")" in cells and "'+cmd" in cells
    assert not any(cell.startswith(("=", "+", "@")) for cell in cells)
    assert {r[1] for r in rows[1:]} == {"north-high"}
    # paging: one row per page would need a tiny page; use the cursor from a CSV row instead
    page = viewer.get("/search?campus=north-high&campus=south-elem")
    assert page.status_code == 200 and "main-entrance" in page.get_data(as_text=True)
    only_south = viewer.get("/search.csv?campus=south-elem").get_data(as_text=True)
    assert "north-high" not in only_south


def quiesce(district, door):
    """Stop the door writing and wait until the recorder holds everything it wrote.

    A door writes on its own only while a ring is pending (photos, then the ring's expiry
    60 s after the press) or a photo is being taken; denying the ring ends it. Then the door
    is idle, and once its outbox is empty and its last journal seq is a row, nothing more is
    coming for it: a count taken now stays true (the paging test once counted a ring expiry
    that arrived under load while it was paging)."""
    ring = door.controller.core.status()["ring"]
    if ring is not None:
        door.controller.deny(ring["request_id"], "test")
    wait_for(lambda: door.controller.core.status()["ring"] is None and not door.controller.snapshots._threads,
             what="the door to finish its ring and photos")
    door.wait_delivered()
    epoch, seq = door.controller.journal_position()
    wait_for(lambda: district.sql("SELECT 1 FROM events WHERE campus = %s AND door = %s AND epoch = %s AND seq = %s",
                                  (door.settings.site.campus, door.door, epoch, seq)),
             what="the recorder to commit the door's last event")


def test_search_keyset_paging_has_no_gaps_or_repeats(district, doors, viewer, monkeypatch):
    from district.board import search
    monkeypatch.setattr(search, "PAGE_SIZE", 3)
    quiesce(district, doors["n1"])
    count = "SELECT count(*) FROM events WHERE campus = 'north-high'"
    before = int(district.sql(count)[0][0])
    seen: list[str] = []
    url = "/search?campus=north-high"
    for _ in range(50):
        html = viewer.get(url).get_data(as_text=True)
        seen += [line for line in html.splitlines() if 'data-campus="north-high"' in line]
        if 'id="older"' not in html:
            break
        url = html.split('id="older" href="')[1].split('"')[0].replace("&amp;", "&")
    total = int(district.sql(count)[0][0])
    assert total == before, "a writer was still adding north-high events while the test paged"
    assert len(seen) == total and len(set(seen)) == total


def test_door_timeline_shows_snapshots_from_postgres(district, doors, viewer):
    door = doors["n1"]
    door.station.press()
    wait_for(lambda: district.sql("SELECT id FROM snapshots WHERE campus = 'north-high'"),
             what="a snapshot to be recorded")
    html = wait_for(lambda: (lambda h: h if "/snapshot/" in h else None)(
        viewer.get("/door/north-high/main-entrance").get_data(as_text=True)), what="the timeline thumbnail")
    sid = html.split('src="/snapshot/')[1].split('"')[0]
    img = viewer.get(f"/snapshot/{sid}")
    assert img.status_code == 200 and img.mimetype == "image/jpeg" and img.data[:2] == b"\xff\xd8"


def test_board_user_cli_adds_and_refuses(district, tmp_path, capsys):
    from district.board import cli
    conf = tmp_path / "district.toml"
    conf.write_text(f'[database]\ndsn = "{district.pg.dsn}"\n')
    pw = tmp_path / "pw"
    pw.write_text("correct-orbit-lantern-quietly-77\n")
    assert cli.main(["--config", str(conf), "user", "add", "nora", "--role", "operator",
                     "--password-file", str(pw)]) == 0
    assert district.store.authenticate("nora", "correct-orbit-lantern-quietly-77").role == "operator"
    pw.write_text("short\n")
    assert cli.main(["--config", str(conf), "user", "add", "weak", "--password-file", str(pw)]) == 2
    assert "password" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[board]\nring_alert_second = 5\n')
    with pytest.raises(SystemExit) as exc:
        cli.main(["--config", str(bad), "check-config"])
    assert exc.value.code == 2
    assert "board.ring_alert_second: unknown key" in capsys.readouterr().err


def test_sign_in_is_throttled_per_address_and_user(district):
    c = district.app.test_client()
    for _ in range(5):
        assert sign_in(c, "olivia", "wrong-wrong-wrong-wrong").status_code == 401
    r = sign_in(c, "olivia")
    assert r.status_code == 429 and "Retry-After" in r.headers
    assert district.sql("SELECT count(*) FROM audit WHERE action = 'login_throttled'")[0][0] >= 1
    district.app.extensions["board_throttle"].clear_all()
    assert json.loads("{}") == {}


def test_grid_shows_alarms_gaps_levels_and_a_dark_campus_link(district, viewer):
    """Rows as the recorder writes them (a door in alarm, an open gap, a campus bridge down): the
    trigger notifies the board, which rebuilds the grid without being asked."""
    hub = district.hub
    before = hub.notifications
    state = {"door": "open", "alarms": ["forced_open", "held_open", "panic", "journal_failure"],
             "lockdown": {"since": "2026-11-30T07:00:00.000Z", "actor": "x", "reason": "", "source": "panel",
                          "level": "secure"}, "ringing": None, "fault": "journal: disk full"}
    district.sql("INSERT INTO campuses (campus, name, panel_url) VALUES ('east-mid', 'East Middle', "
                 "'javascript:alert(1)') ON CONFLICT DO NOTHING")
    district.sql("INSERT INTO doors (campus, door, online, status_at, last_seen, state, state_at) "
                 "VALUES ('east-mid', 'side', true, now(), now(), %s, now())", (json.dumps(state),))
    district.sql("INSERT INTO gaps (campus, door, epoch, from_seq, to_seq, missing) "
                 "VALUES ('east-mid', 'side', 'e0', 5, 7, 3)")
    district.sql("UPDATE campuses SET bridge_online = false, bridge_at = now() WHERE campus = 'east-mid'")
    wait_for(lambda: hub.notifications > before and hub.latest and
             any(c["campus"] == "east-mid" and c["link_down"] for c in hub.latest["campuses"]),
             what="the trigger's notification to rebuild the grid")
    campus = next(c for c in viewer.get("/api/grid").get_json()["campuses"] if c["campus"] == "east-mid")
    door = campus["doors"][0]
    assert set(door["alarms"]) == {"forced_open", "held_open", "panic", "journal_failure", "gap"}
    words = " | ".join(door["alarm_words"])
    for text in ("forced open", "held open", "panic", "journal fault", "gap: 3 events missing", "fault: journal"):
        assert text in words
    assert door["lockdown"] == "secure" and campus["lockdown"] == "secure" and campus["link_down"] is True
    assert campus["panel_url"] == "" and campus["name"] == "East Middle"     # never a javascript: link
    def settled() -> bool:     # nothing in flight: a burst that also names a whole campus rebuilds instead
        seen = hub.notifications
        time.sleep(0.5)
        return hub.notifications == seen
    wait_for(settled, what="the grid's notifications to settle")
    patches = hub.patches
    district.sql("UPDATE gaps SET closed_at = now(), missing = 0 WHERE campus = 'east-mid'")
    wait_for(lambda: hub.latest and "gap" not in next(
        d for c in hub.latest["campuses"] if c["campus"] == "east-mid" for d in c["doors"])["alarms"],
        what="the gap to clear by a patch of that door")
    assert hub.patches > patches                     # one door re-read, not the whole district


def test_secure_level_and_the_operators_own_broker_account(district, doors, tmp_path):
    from district.board.config import BrokerAccount
    from district.board.publisher import LockdownPublisher, PublishError
    spy = Subscriber(district.broker, user="district", topics=("entry/+/+/cmd/lockdown",))
    try:
        own = LockdownPublisher(district.settings.mqtt, {"olivia": BrokerAccount("admin", str(
            district.broker.password_file("admin")))})
        assert own.account_for("olivia")[0] == "admin" and own.account_for("someone")[0] == "operator"
        result = own.publish("start", [("north-high", "main-entrance")], by="Olivia", reason="drill",
                             level="secure", board_user="olivia")
        assert result.acknowledged == ["entry/north-high/main-entrance/cmd/lockdown"]
        msg = wait_for(lambda: spy.on("entry/north-high/main-entrance/cmd/lockdown"), what="the command")[0].json()
        assert msg["level"] == "secure" and msg["action"] == "start"
        bad = tmp_path / "bad.pass"
        bad.write_text("wrong\n")
        wrong = LockdownPublisher(district.settings.mqtt, {"olivia": BrokerAccount("operator", str(bad))})
        with pytest.raises(PublishError, match="refused the account 'operator'"):
            wrong.publish("start", [("north-high", "main-entrance")], by="Olivia", reason="x", board_user="olivia")
        with pytest.raises(ValueError):
            own.publish("unlock", [("north-high", "main-entrance")], by="Olivia", reason="x")
    finally:
        spy.close()
        wait_for(lambda: doors["n1"].events_of("lockdown_started") or doors["n1"].events_of("command_rejected"),
                 what="the door to answer the secure command")
        if doors["n1"].controller.core.status()["lockdown"]:
            doors["n1"].controller.end_lockdown("test", source="panel")


def test_broker_down_is_a_clear_503_and_audited_as_not_sent(district, doors, operator):
    district.broker.stop()
    try:
        r = operator.post("/lockdown", data={"action": "start", "campus": "north-high", "reason": "drill",
                                             "confirm": "yes", "csrf_token": csrf_of(operator)})
        assert r.status_code == 503 and "NOT sent" in r.get_data(as_text=True)
        row = district.sql("SELECT detail FROM audit WHERE action = 'lockdown_start' ORDER BY id DESC LIMIT 1")[0][0]
        assert row["outcome"] == "not_sent" and "cannot be reached" in row["error"]
    finally:
        district.broker.start()
        for d in doors.values():
            d.ready()


def test_signing_out_ends_an_open_live_stream(district, doors):
    c = district.app.test_client()
    sign_in(c, "victor")
    token = c.get_cookie("district_session").value
    resp = c.get("/live", buffered=False)
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    chunks = iter(resp.response)
    assert next(chunks).startswith(b"event: grid")
    district.store.end_session(token)
    seen = []
    for chunk in chunks:            # heartbeats every 0.5 s; the session check ends the stream
        seen.append(chunk)
        assert len(seen) < 40, "the stream outlived its session"
    assert seen[-1].startswith(b"event: signed_out")
    resp.close()


def answers_of(client, command_id):
    """(answered {campus/door: verdict}, waiting [campus/door]) from the board's answers page."""
    page = client.get(f"/lockdown/{command_id}")
    assert page.status_code == 200, page.get_data(as_text=True)
    html = page.get_data(as_text=True)
    answered = dict(re.findall(r'data-answered="([^"]+)" data-verdict="([^"]+)"', html))
    return answered, re.findall(r'data-waiting="([^"]+)"', html)


def test_whole_district_lockdown_and_an_end_the_doors_refuse(district, doors, operator):
    """One message on the district-wide topic: every door gets it, also one the database does
    not know (its row lost; the old board published per known door and never reached it, the
    wait for the stranger's lockdown timed out). The answers page lists each door's answer and
    the known doors not answered yet. Ending over MQTT is refused by doors that do not allow it
    (mqtt.allow_remote_lockdown_end = false, the default): the lockdown stays until the campus ends it."""
    stranger = district.door("north-high", "new-annex")
    stranger.wait_delivered()
    wait_for(lambda: district.grid_door("north-high", "new-annex"), what="the recorder to file the new door")
    district.sql("DELETE FROM doors WHERE campus = 'north-high' AND door = 'new-annex'")    # its row is lost
    assert district.grid_door("north-high", "new-annex") is None
    spy = Subscriber(district.broker, user="district", topics=("entry/+/+/cmd/lockdown", "entry/all/cmd/lockdown"))
    try:
        page = operator.get("/lockdown?campus=all&action=start").get_data(as_text=True)
        assert "the whole district" in page and "including doors the district has not heard from" in page
        r = operator.post("/lockdown", data={"action": "start", "campus": "all", "reason": "district drill",
                                             "confirm": "yes", "csrf_token": csrf_of(operator)})
        assert r.status_code == 200, r.get_data(as_text=True)
        command_id = re.search(r'id="command-id">([^<]+)<', r.get_data(as_text=True)).group(1)
        wait_for(lambda: all(d.controller.core.status()["lockdown"] for d in [*doors.values(), stranger]),
                 what="every door, the unknown one too, to lock down")
        started = stranger.events_of(ev.LOCKDOWN_STARTED)[-1]
        assert started.data["command_id"] == command_id and started.data["source"] == "mqtt"
        msgs = wait_for(lambda: spy.on("entry/all/cmd/lockdown"), what="the district-wide command")
        assert len(msgs) == 1 and not msgs[0].retain and msgs[0].json()["id"] == command_id
        assert [m.topic for m in spy.messages] == ["entry/all/cmd/lockdown"]       # one message, no per-door copies
    finally:
        spy.close()
    audit = district.sql("SELECT username, campus, detail FROM audit WHERE action = 'lockdown_start' "
                         "ORDER BY id DESC LIMIT 1")[0]
    assert audit[0] == "olivia" and audit[1] is None and audit[2]["command_id"] == command_id
    assert audit[2]["topics"] == ["entry/all/cmd/lockdown"] and audit[2]["acknowledged"] == 1
    assert audit[2]["outcome"] == "sent" and audit[2]["doors"] >= 2
    want = {"north-high/main-entrance", "south-elem/front", "north-high/new-annex"}
    answered, waiting = wait_for(lambda: (lambda a: a if want <= set(a[0]) else None)(answers_of(operator, command_id)),
                                 what="the board to show every door's answer")
    assert {answered[d] for d in want} == {"applied"}
    assert not want & set(waiting)
    # a known door that has not answered is listed as waiting
    district.sql("INSERT INTO doors (campus, door) VALUES ('south-elem', 'silent-door') ON CONFLICT DO NOTHING")
    wait_for(lambda: "south-elem/silent-door" in answers_of(operator, command_id)[1],
             what="a known door without an answer to be listed as waiting")
    district.sql("DELETE FROM doors WHERE campus = 'south-elem' AND door = 'silent-door'")
    assert operator.get("/lockdown/board-0000").status_code == 404
    assert operator.get("/lockdown/x%20y").status_code == 400
    r = operator.post("/lockdown", data={"action": "end", "campus": "all", "confirm": "yes",
                                         "csrf_token": csrf_of(operator)})
    assert r.status_code == 200
    door = doors["n1"]
    wait_for(lambda: [e for e in door.events_of("command_rejected") if "not allowed" in e.data.get("reason", "")],
             what="the door to refuse ending the lockdown over MQTT")
    assert all(d.controller.core.status()["lockdown"] for d in [*doors.values(), stranger])
    for d in [*doors.values(), stranger]:
        d.controller.end_lockdown("test", source="panel")
    stranger.close()


def test_database_down_is_a_clear_503_and_the_board_recovers(district, doors, viewer):
    """The district database refuses every connection (and drops the open ones): every page is
    a clear 503, the signed-in user stays signed in, and the board recovers on its own."""
    admin = district.pg.dsn.replace("dbname=district", "dbname=postgres")
    import psycopg
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("ALTER DATABASE district ALLOW_CONNECTIONS false")
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'district'")
    try:
        for path in ("/api/grid", "/search", "/door/north-high/main-entrance", "/"):
            r = viewer.get(path)
            assert r.status_code == 503, (path, r.status_code)
            assert "Traceback" not in r.get_data(as_text=True)
            assert viewer.get_cookie("district_session") is not None      # an outage signs nobody out
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("ALTER DATABASE district ALLOW_CONNECTIONS true")
    wait_for(lambda: viewer.get("/api/grid").status_code == 200, what="the board to reconnect")


def test_sessions_end_when_idle_at_their_lifetime_and_on_a_password_change(district):
    from district.board.accounts import BoardStore
    t = [1_000_000.0]
    store = BoardStore(district.app.extensions["board_pool"], idle_seconds=10, max_seconds=100, scrypt_n=2 ** 10,
                       now=lambda: t[0])
    user = store.user("victor")
    token, _ = store.create_session(user, "127.0.0.1", "test")
    t[0] += 9
    assert store.session(token) is not None
    t[0] += 11
    assert store.session(token) is None                      # idle for longer than 10 s
    token, _ = store.create_session(user, "127.0.0.1", "test")
    start = t[0]
    while t[0] - start < 99:                                 # active every 9 s: kept alive ...
        assert store.session(token) is not None, t[0] - start
        t[0] += 9
    t[0] = start + 97
    assert store.session(token) is not None                  # touched at 97 s: not idle ...
    t[0] = start + 101
    assert store.session(token) is None                      # ... but past the 100 s lifetime
    token, _ = store.create_session(user, "127.0.0.1", "test")
    store.set_password("victor", "new-orbit-lantern-quietly-55")
    assert store.session(token) is None                      # a new password ends every session
    store.set_password("victor", PASSWORDS["victor"])


def test_the_recorders_own_notify_also_moves_the_grid(district, viewer):
    """district-rec's recorder announces each commit on 'district' ({"doors": [...]}): with the
    board's trigger switched off, that alone patches the grid."""
    district.sql("INSERT INTO campuses (campus, name) VALUES ('west-el', 'West') ON CONFLICT DO NOTHING")
    district.sql("INSERT INTO doors (campus, door, online, state) VALUES ('west-el', 'front', true, %s) "
                 "ON CONFLICT DO NOTHING", (json.dumps({"door": "locked"}),))
    wait_for(lambda: district.hub.latest and any(c["campus"] == "west-el" and c["doors"]
                                                 for c in district.hub.latest["campuses"]), what="west-el on the grid")
    patches = district.hub.patches
    district.sql("ALTER TABLE doors DISABLE TRIGGER board_doors_changed")
    try:
        with district.pg.connect() as conn:
            conn.execute("UPDATE doors SET state = %s WHERE campus = 'west-el'", (json.dumps({"door": "open"}),))
            conn.execute("""SELECT pg_notify('district', '{"doors": ["west-el/front"]}')""")
            conn.commit()
        wait_for(lambda: next(d for c in district.hub.latest["campuses"] if c["campus"] == "west-el"
                              for d in c["doors"])["state"] == "open", timeout=5.0,     # < refresh_seconds
                 what="the recorder's NOTIFY to patch the door")
        assert district.hub.patches > patches
    finally:
        district.sql("ALTER TABLE doors ENABLE TRIGGER board_doors_changed")


def test_the_audit_row_comes_first_and_a_sent_lockdown_is_never_called_unsent(district, doors, operator,
                                                                                monkeypatch):
    """The audit row is written before anything is published. If the database then fails after
    the command is out, the page says it WAS sent and the row says "sending" (the old board
    audited only after publishing, so that failure was a 503 "nothing was changed")."""
    import psycopg

    def lost(*_a, **_k):
        raise psycopg.OperationalError("server closed the connection unexpectedly")
    monkeypatch.setattr(district.store, "audit_update", lost)
    door = doors["n1"]
    try:
        r = operator.post("/lockdown", data={"action": "start", "campus": "north-high", "reason": "drill",
                                             "confirm": "yes", "csrf_token": csrf_of(operator)})
        html = r.get_data(as_text=True)
        assert r.status_code == 200 and 'id="audit-error"' in html and "The command was sent" in html
        command_id = re.search(r'id="command-id">([^<]+)<', html).group(1)
        wait_for(lambda: door.controller.core.status()["lockdown"], what="the door to apply the lockdown")
        row = district.sql("SELECT username, campus, detail FROM audit WHERE detail->>'command_id' = %s",
                           (command_id,))
        assert len(row) == 1 and row[0][:2] == ("olivia", "north-high") and row[0][2]["outcome"] == "sending"
    finally:
        wait_for(lambda: door.events_of(ev.LOCKDOWN_STARTED), what="the door to answer")
        if door.controller.core.status()["lockdown"]:
            door.controller.end_lockdown("test", source="panel")
