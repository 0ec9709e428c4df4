"""Panel access control with Flask's test client: every route, anonymous / expired / wrong role,
CSRF on every POST, login throttling, sign-out revocation, security headers."""

from __future__ import annotations

import re
import time

import pytest

from controller import events as ev
from tests.support_web import (CSRF_INPUT, PASSWORDS, Signed, admin, app, controller, login,  # noqa: F401
                               ring, staff)

SNAP = "/snapshot/0b4f8a52-8c4f-4f39-9a55-6f1e0c3a9d11"
# (method, path, role) for every route but sign-in and static files
ROUTES = [
    ("GET", "/", "staff"), ("GET", "/api/status", "staff"), ("GET", "/events", "staff"),
    ("GET", "/history", "staff"), ("GET", "/history.csv", "staff"), ("GET", SNAP, "staff"),
    ("GET", "/sim", "staff"), ("GET", "/sim/state", "staff"), ("GET", "/admin", "admin"),
    ("POST", "/logout", "staff"), ("POST", "/api/approve", "staff"), ("POST", "/api/deny", "staff"),
    ("POST", "/api/unlock", "staff"), ("POST", "/api/lockdown/start", "staff"),
    ("POST", "/api/lockdown/end", "staff"), ("POST", "/api/alarm/ack", "staff"),
    ("POST", "/sim/press", "staff"), ("POST", "/sim/door", "staff"), ("POST", "/sim/exit", "staff"),
    ("POST", "/admin/users", "admin"), ("POST", "/admin/users/sam/remove", "admin"),
    ("POST", "/admin/users/sam/password", "admin"), ("POST", "/admin/sessions/abc/revoke", "admin"),
    ("POST", "/admin/journal/accept", "admin"),
]
ADMIN_ROUTES = [r for r in ROUTES if r[2] == "admin"]
POSTS = [r for r in ROUTES if r[0] == "POST"]


def test_route_table_covers_every_route(app):
    """If someone adds a route, this test makes them add it to the access matrix."""
    rules = {(m, r.rule) for r in app.url_map.iter_rules() for m in r.methods - {"HEAD", "OPTIONS"}
             if r.endpoint not in ("static", "auth.login", "auth.login_post")}
    listed = {(m, p.replace(SNAP, "/snapshot/<request_id>").replace("/sam/", "/<username>/")
               .replace("/abc/", "/<session_id>/")) for m, p, _ in ROUTES}
    assert rules == listed


def _assert_rejected_anonymous(resp, method):
    if method == "GET" and resp.status_code == 302:
        assert resp.headers["Location"].startswith("/login")
    else:
        assert resp.status_code == 401, resp.get_data(as_text=True)


@pytest.mark.parametrize("method,path,role", ROUTES)
def test_anonymous_is_rejected(app, controller, method, path, role):
    client = app.test_client()
    resp = client.open(path, method=method, data={"request_id": "x", "confirm": "yes"})
    _assert_rejected_anonymous(resp, method)
    assert controller.station.strike_on is False


@pytest.mark.parametrize("method,path,role", ROUTES)
def test_expired_session_is_rejected(app, controller, method, path, role):
    user = Signed(app.test_client(), "admin")
    store = app.extensions["panel_store"]
    later = time.time() + store.idle_seconds + 60
    store.now = lambda: later
    resp = user.post(path, {"confirm": "yes"}) if method == "POST" else user.get(path)
    _assert_rejected_anonymous(resp, method)
    assert controller.status()["lockdown"] is None


@pytest.mark.parametrize("method,path,role", ADMIN_ROUTES)
def test_staff_cannot_use_admin_routes(staff, app, method, path, role):
    resp = staff.post(path, {"username": "eve", "password": "long-enough-pw", "role": "admin"}) \
        if method == "POST" else staff.get(path)
    assert resp.status_code == 403
    assert [u.username for u in app.extensions["panel_store"].users()] == ["admin", "sam"]


@pytest.mark.parametrize("token", [None, "", "wrong-token", "x" * 5000])
@pytest.mark.parametrize("method,path,role", POSTS)
def test_csrf_is_enforced_on_every_post(admin, app, controller, method, path, role, token):
    headers = {} if token is None else {"X-CSRF-Token": token}
    resp = admin.client.post(path, data={"request_id": "x", "confirm": "yes", "open": "1",
                                         "alarm": "tamper", "username": "eve", "role": "admin",
                                         "password": "long-enough-pw"}, headers=headers)
    assert resp.status_code == 400
    assert "CSRF" in resp.get_data(as_text=True)
    # nothing changed: no press, no unlock, no lockdown, no account, still signed in
    status = controller.status()
    assert status["ring"] is None and status["lockdown"] is None and status["door"] == "locked"
    assert [u.username for u in app.extensions["panel_store"].users()] == ["admin", "sam"]
    assert admin.get("/api/status").status_code == 200


def test_login_needs_its_csrf_token(app):
    client = app.test_client()
    client.get("/login")
    resp = client.post("/login", data={"username": "sam", "password": PASSWORDS["sam"]})
    assert resp.status_code == 400
    assert client.get("/api/status").status_code == 401


def test_login_sets_a_strict_httponly_cookie_and_logout_revokes_it(app, controller):
    client = app.test_client()
    resp = login(client, "sam")
    assert resp.status_code == 303 and resp.headers["Location"] == "/"
    cookie = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith("eb_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    user = Signed.__new__(Signed)
    user.client, user.csrf = client, CSRF_INPUT.search(client.get("/").get_data(as_text=True)).group(1)
    assert user.post("/logout").status_code == 303
    # the old token is dead on the server, even if a copy of the cookie is replayed
    assert app.extensions["panel_store"].session(token) is None
    replay = app.test_client()
    replay.set_cookie("eb_session", token)
    assert replay.get("/api/status").status_code == 401
    assert [e.type for e in controller.journal.query(types=[ev.LOGIN_SUCCEEDED])] == [ev.LOGIN_SUCCEEDED]


def test_cookie_is_secure_under_https(app):
    client = app.test_client()
    page = client.get("/login", base_url="https://localhost")
    token = CSRF_INPUT.search(page.get_data(as_text=True)).group(1)
    resp = client.post("/login", base_url="https://localhost",
                       data={"username": "sam", "password": PASSWORDS["sam"], "csrf_token": token})
    cookie = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith("eb_session=")][0]
    assert "Secure" in cookie
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


def test_wrong_password_is_refused_and_journaled(app, controller):
    resp = login(app.test_client(), "sam", "not-the-password")
    assert resp.status_code == 401
    failed = controller.journal.query(types=[ev.LOGIN_FAILED])
    assert len(failed) == 1 and failed[0].data["username"] == "sam"


def test_login_is_throttled_per_username(app, controller):
    limit = app.config["LOGIN_LIMIT_PER_USER"]
    for i in range(limit):
        # from different addresses: the per-user limit must still apply
        client = app.test_client()
        page = client.get("/login", environ_base={"REMOTE_ADDR": f"10.0.0.{i + 1}"})
        token = CSRF_INPUT.search(page.get_data(as_text=True)).group(1)
        resp = client.post("/login", data={"username": "sam", "password": "guess-%d" % i, "csrf_token": token},
                           environ_base={"REMOTE_ADDR": f"10.0.0.{i + 1}"})
        assert resp.status_code == 401
    # even the right password is now refused for that user
    resp = login(app.test_client(), "sam")
    assert resp.status_code == 429
    assert "Retry-After" in resp.headers
    throttled = controller.journal.query(types=[ev.LOGIN_THROTTLED])
    assert len(throttled) == 1 and "user" in throttled[0].data["limits"]
    # another user from the same test address is not blocked by sam's limit
    assert login(app.test_client(), "admin").status_code == 303
    assert len(controller.journal.query(types=[ev.LOGIN_FAILED])) == limit


def test_login_is_throttled_per_address(app, controller):
    limit = app.config["LOGIN_LIMIT_PER_ADDRESS"]
    client = app.test_client()
    for i in range(limit):
        assert login(client, f"nobody{i}", "wrong-password").status_code == 401
    assert login(client, "sam").status_code == 429
    assert login(client, "admin").status_code == 429
    throttled = controller.journal.query(types=[ev.LOGIN_THROTTLED])
    assert throttled and "address" in throttled[0].data["limits"]


@pytest.mark.parametrize("path", ["/login", "/", "/history", "/api/status", "/nope"])
def test_security_headers(staff, path):
    resp = staff.get(path)
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in resp.headers     # plain HTTP: no HSTS


def test_pages_have_no_inline_script(staff, admin):
    for user, path in ((staff, "/"), (staff, "/history"), (staff, "/sim"), (admin, "/admin")):
        html = user.get(path).get_data(as_text=True)
        for tag in html.split("<script")[1:]:
            assert tag.lstrip().startswith("src="), f"inline script on {path}"
        assert " on" + "click=" not in html
        assert not re.search(r'(src|href)="(https?:)?//', html), f"external asset on {path}"


def test_admin_revokes_a_session(app, admin, staff):
    store = app.extensions["panel_store"]
    sam = [s for s in store.sessions() if s.user.username == "sam"][0]
    assert admin.post(f"/admin/sessions/{sam.id}/revoke").status_code == 200
    assert staff.get("/api/status").status_code == 401
    assert admin.post(f"/admin/sessions/{sam.id}/revoke").status_code == 404


def test_open_redirect_is_refused(app):
    client = app.test_client()
    page = client.get("/login?next=//evil.example/")
    token = CSRF_INPUT.search(page.get_data(as_text=True)).group(1)
    resp = client.post("/login", data={"username": "sam", "password": PASSWORDS["sam"], "csrf_token": token,
                                       "next": "//evil.example/"})
    assert resp.headers["Location"] == "/"
