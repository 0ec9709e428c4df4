"""History (filters, paging, CSV), snapshot files by id only, admin account pages, and
garbage input that must never produce a 500."""

from __future__ import annotations

import csv
import io

import pytest

from controller import events as ev
from tests.support_web import NAMES, login, ring, wait_snapshot


def test_history_lists_visits_newest_first_with_outcome_and_thumbnail(staff, controller):
    first = ring(controller)
    wait_snapshot(controller, first)
    staff.post("/api/deny", {"request_id": first})
    second = ring(controller)
    wait_snapshot(controller, second)
    staff.post("/api/approve", {"request_id": second})
    html = staff.get("/history").get_data(as_text=True)
    assert html.index(second) < html.index(first)                     # newest first
    assert f"approved by {NAMES['sam']}" in html and f"denied by {NAMES['sam']}" in html
    assert f'src="/snapshot/{second}"' in html


def test_history_type_and_date_filters(staff, controller):
    rid = ring(controller)
    wait_snapshot(controller, rid)      # the page names a ring by its snapshot link
    staff.post("/api/approve", {"request_id": rid})
    html = staff.get("/history?type=entry_approved").get_data(as_text=True)
    assert "Entry approved</td>" in html and "Buzzer pressed</td>" not in html
    today = controller.clock.now().date().isoformat()
    assert rid in staff.get(f"/history?since={today}&until={today}").get_data(as_text=True)
    assert rid not in staff.get("/history?until=2000-01-01").get_data(as_text=True)


def test_history_paging(staff, controller):
    for i in range(60):
        controller.journal.append(ev.ALARM_CLEARED, alarm=f"test{i}")
    page1 = staff.get("/history?type=alarm_cleared").get_data(as_text=True)
    assert "test59" in page1 and "test9<" not in page1
    older = page1.split('id="older" href="')[1].split('"')[0].replace("&amp;", "&")
    page2 = staff.get(older).get_data(as_text=True)
    assert "test9<" in page2 and "test59" not in page2 and 'id="older"' not in page2


def test_csv_export(staff, controller):
    rid = ring(controller)
    staff.post("/api/approve", {"request_id": rid})
    controller.journal.append(ev.ACTION_REFUSED, actor="=HYPERLINK(\"x\")", action="approve", reason="test")
    resp = staff.get("/history.csv")
    assert resp.mimetype == "text/csv" and "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    approved = [r for r in rows if r["type"] == "entry_approved"][0]
    assert approved["request_id"] == rid and approved["staff"] == NAMES["sam"]
    visit = [r for r in rows if r["type"] == "buzzer_pressed"][0]
    assert visit["request_id"] == rid and visit["outcome"] == "approved" and visit["outcome_by"] == NAMES["sam"]
    assert visit["staff"] == "" and visit["event"] == "Buzzer pressed"     # nobody acted on the press itself
    assert [r for r in rows if r["type"] == "action_refused"][0]["staff"].startswith("'=")  # no formula
    only = list(csv.DictReader(io.StringIO(staff.get("/history.csv?type=buzzer_pressed").get_data(as_text=True))))
    assert [r["type"] for r in only] == ["buzzer_pressed"]


def test_snapshot_is_served_by_id_only(staff, controller, app):
    rid = ring(controller)
    wait_snapshot(controller, rid)
    resp = staff.get(f"/snapshot/{rid}")
    assert resp.status_code == 200 and resp.mimetype == "image/jpeg" and resp.data[:2] == b"\xff\xd8"
    assert "no-store" in resp.headers["Cache-Control"]
    for bad in ("../journal.sqlite3", "..%2F..%2Fpanel.sqlite3", "%2e%2e", rid + ".jpg", rid.upper(),
                "0b4f8a52-8c4f-4f39-9a55-6f1e0c3a9d11"):
        assert staff.get(f"/snapshot/{bad}").status_code == 404
    assert app.test_client().get(f"/snapshot/{rid}").status_code == 401


def test_admin_manages_users(admin, app, controller):
    store = app.extensions["panel_store"]
    resp = admin.post("/admin/users", {"username": "kim", "display_name": "Kim Office", "role": "staff",
                                       "password": "harbor-violet-tundra-3"})
    assert resp.status_code == 200 and store.get_user("kim").display_name == "Kim Office"
    assert admin.post("/admin/users", {"username": "kim", "password": "harbor-violet-tundra-3"}).status_code == 400
    assert admin.post("/admin/users", {"username": "Bad Name!", "password": "x" * 12}).status_code == 400
    assert admin.post("/admin/users", {"username": "lee", "password": "short"}).status_code == 400
    assert admin.post("/admin/users", {"username": "lee", "password": "x" * 12, "role": "root"}).status_code == 400
    client = app.test_client()
    assert login(client, "kim", "harbor-violet-tundra-3").status_code == 303
    assert admin.post("/admin/users/kim/password", {"password": "short"}).status_code == 400
    assert admin.post("/admin/users/kim/password", {"password": "pebble-orchard-mosaic-9"}).status_code == 200
    assert client.get("/api/status").status_code == 401          # password change ends sessions
    assert admin.post("/admin/users/kim/remove").status_code == 200
    assert store.get_user("kim") is None
    assert admin.post("/admin/users/kim/remove").status_code == 404
    assert admin.post("/admin/users/admin/remove").status_code == 400     # not yourself
    actions = [e.data["action"] for e in controller.journal.query(types=[ev.ACCOUNT_CHANGED])]
    assert actions == ["remove", "password", "add"]


GARBAGE = ["", "\x00", "%00", "%ff%fe", "' OR 1=1 --", "<script>alert(1)</script>", "../" * 20, "x" * 3000,
           "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"), "９９", "-1", "1e309", "[]", "{}"]


@pytest.mark.parametrize("value", GARBAGE)
def test_garbage_query_strings_never_500(staff, value):
    from urllib.parse import quote
    q = quote(value, safe="%")
    for url in (f"/history?since={q}", f"/history?until={q}", f"/history?type={q}", f"/history?before={q}",
                f"/history.csv?since={q}&type={q}", f"/api/status?{q}={q}", f"/?next={q}",
                f"/snapshot/{quote(value, safe='')}", f"/login?next={q}"):
        resp = staff.get(url)
        assert resp.status_code < 500, (url, resp.status_code)
        if "history" in url and resp.status_code == 400:
            assert "error" in resp.get_data(as_text=True).lower() or "not" in resp.get_data(as_text=True)


@pytest.mark.parametrize("value", GARBAGE)
def test_garbage_forms_never_500(staff, admin, controller, value):
    for user, path in ((staff, "/api/approve"), (staff, "/api/deny"), (staff, "/api/unlock"),
                       (staff, "/api/lockdown/start"), (staff, "/api/alarm/ack"), (staff, "/sim/door"),
                       (admin, "/admin/users"), (admin, "/admin/users/sam/password"),
                       (admin, "/admin/throttles/clear")):
        fields = {k: value for k in ("request_id", "confirm", "note", "reason", "alarm", "open", "username",
                                     "password", "role", "display_name", "kind", "address", "all")}
        resp = user.post(path, fields)
        assert resp.status_code < 500, (path, resp.status_code)
    assert controller.station.strike_on is False


@pytest.mark.parametrize("headers", [
    {"Content-Type": "multipart/form-data"},                  # no boundary
    {"Content-Type": "multipart/form-data; boundary=zz"},
    {"Content-Type": "application/json"},
    {"Content-Type": "application/x-www-form-urlencoded; charset=bogus-9"},
    {"Cookie": "eb_session=" + "A" * 5000},
    {"Cookie": "eb_session=\x7f\x00;;;=="},
    {"Accept": "*/*;q=nonsense, text/html;q=2"},
    {"X-CSRF-Token": "\u00ff" * 10},
    {"Content-Length": "99999999"},
    {"Host": "[::1"},
])
def test_malformed_headers_never_500(staff, controller, headers):
    resp = staff.client.post("/api/approve", data=b"request_id=%ZZ&&==&", headers={"X-CSRF-Token": staff.csrf,
                                                                                   **headers})
    assert resp.status_code < 500, resp.get_data(as_text=True)
    resp = staff.client.get("/history", headers=headers)
    assert resp.status_code < 500
    assert controller.station.strike_on is False


def test_oversized_body_is_413(staff):
    resp = staff.post("/api/approve", {"request_id": "x" * 100_000})
    assert resp.status_code == 413


def test_login_garbage_never_500(app):
    client = app.test_client()
    for data in ({}, {"username": "\x00" * 100}, {"username": ["a", "b"]}, {"password": "p" * 10_000},
                 {"csrf_token": "\x00"}):
        assert client.post("/login", data=data).status_code in (400, 401, 413)


@pytest.mark.parametrize("lead", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_escapes_every_column_including_request_id(staff, controller, lead):
    """Finding 7 (CSV): a request id such as '=cmd|...' must not reach the file as a formula."""
    evil = lead + "cmd|' /C calc'!A0"
    controller.journal.append(ev.CAMERA_FAILED, request_id=evil, actor=lead + "SUM(1)", reason=lead + "x")
    text = staff.get("/history.csv").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    row = [r for r in body if r[header.index("type")] == ev.CAMERA_FAILED][0]
    assert row[header.index("request_id")] == "'" + evil
    for name, cell in zip(header, row, strict=True):
        assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), (name, cell)
